// SlabCache+Slabs: the one-object entry points into the slab layer, each under one
// acquisition of the cache lock (caches without magazines, nested calls and
// fall-backs), and `slabOf`.
// Neighbours: SlabLayer (what runs under the lock), CacheState (the lock),
// SlabCache+PerCPU (its callers), CPUCache (the reserve `park` fills).

import Synchronization

extension SlabCache {
    /// The slab head of `object`, an object of this cache that is out of its slab
    /// (counted in `inUse`, so the slab cannot be released under us).
    func slabOf(_ object: UInt) -> PageNumber {
        guard case .success(.slab(let head)) = PageMap.lookup(object, in: heap) else {
            preconditionFailure("SlabCache: an object held by Quarry is not in a live slab")
        }
        return head.page
    }

    /// One object from the slabs under one acquisition of the cache lock, taken the
    /// way `mode` allows (`.outOfMemory` if it cannot be). Interrupts masked.
    func takeOne(_ mode: LockMode) -> Result<UInt, QuarryError> {
        let result = state.pointee.lock.tryWithLock(P.self, mode) { slabs in
            hook(.cacheLocked)
            return slabs.take(mode, for: self)
        }
        return result ?? .failure(.outOfMemory)
    }

    /// `takeOne`, counted as a slow-path allocation of `slot`'s CPU. Interrupts
    /// masked, on that CPU, the slot claimed (or a cache without magazines).
    func allocateOneFromSlabs(_ slot: UnsafeMutablePointer<CPUCache>, _ mode: LockMode) -> Result<UInt, QuarryError> {
        let result = takeOne(mode)
        if case .success = result { slot.counters.pointee.allocMisses.bump() }
        return result
    }

    /// Gives one freed object straight back to its slab; counted as a slow-path free of
    /// `slot`'s CPU. In `.tryOnly` mode the object is parked in the slot's reserve
    /// instead (false when that is full). Interrupts masked, on that CPU.
    func freeOneToSlabs(_ object: UInt, _ slot: UnsafeMutablePointer<CPUCache>, _ mode: LockMode) -> Bool {
        guard mode == .spin else { return park(object, slot) }
        state.pointee.lock.withLock(P.self) { slabs in
            hook(.cacheLocked)
            _ = slabs.giveBack(object, .spin, for: self)
        }
        slot.counters.pointee.freeMisses.bump()
        return true
    }

    /// Parks a freed object in `slot`'s reserve (a re-entrant free that cannot take a
    /// lock); false when the reserve is full.
    func park(_ object: UInt, _ slot: UnsafeMutablePointer<CPUCache>) -> Bool {
        guard slot.pointee.park(object) else { return false }
        slot.counters.pointee.freeMisses.bump()
        state.pointee.atomics.nolockParked.wrappingAdd(1, ordering: .relaxed)
        return true
    }
}
