// SlabCache+PerCPU: the slow path of allocate and free: swap with the previous magazine,
// exchange with the depot, refill from the slabs, flush to the slabs, and the tidy-up.
// Neighbours: SlabCache (the fast path that calls in here), CPUCache (the slot and its
// contract), Depot, Magazine, SlabLayer (the slab layer), CPUState (lock modes).
//
// Every function here runs on the slot's own CPU with interrupts masked and the slot
// claimed (`allocateSlow`/`freeSlow` mask, claim, and undo both last), or on the nested
// path, which never touches the slot. A nested call (NMI, constructor, test hook) that
// lands in here finds the slot claimed; the slot's fields are still read afresh after
// every point where one may run (a hook, a lock acquisition, a slab-layer call).

import Synchronization

extension SlabCache {
    /// What a depot exchange did.
    enum Exchange {
        /// The slot now has what the caller needs.
        case exchanged
        /// A nested call changed the slot: look again.
        case retry
        /// The depot has nothing to give (and, for free, no magazine could be made).
        case unavailable
        /// `.tryOnly` mode and a lock was held.
        case wouldBlock
    }

    // MARK: Allocate

    /// Allocation when the hit path could not serve: the loaded magazine is empty, or
    /// the slot is claimed by code this call interrupted (then the nested path).
    /// Masks interrupts for its whole length and claims the slot, so a handler (an NMI,
    /// a constructor that calls Quarry) that lands inside takes the nested path.
    /// Before it fails with `.outOfMemory` on a CPU that holds no Quarry lock, it
    /// reclaims (Quarry+Reclaim) and tries once more.
    @inline(never)
    func allocateSlow() throws(QuarryError) -> UnsafeMutableRawPointer {
        let saved = P.disableInterrupts()
        let index = P.cpuIndex
        let slot = cpu(index)
        let nested = !slot.claim()
        let mode = heap.pointee.lockMode(cpu: index)
        var result = nested ? allocateNested(mode) : allocateMissed(index, mode)
        if case .failure(.outOfMemory) = result, mode == .spin {
            // A nested call leaves the interrupted code's slot alone (it cannot claim it).
            Quarry<P>(heap: heap).reclaim(cpu: index, claimed: nested ? nil : state)
            result = nested ? allocateNested(mode) : allocateMissed(index, mode)
        }
        if !nested {
            if mode == .spin { tidy(index) }
            slot.unclaim()
        }
        P.restoreInterrupts(saved)
        switch result {
        case .success(let object):
            handOut(object)
            // Sound: an object of a live slab of this cache, out of its slab for the caller.
            return UnsafeMutableRawPointer(bitPattern: object).unsafelyUnwrapped
        case .failure(let error):
            state.pointee.atomics.failures.wrappingAdd(1, ordering: .relaxed)
            if mode == .tryOnly { state.pointee.atomics.nolockRefusals.wrappingAdd(1, ordering: .relaxed) }
            throw error
        }
    }

    /// The nested path of allocate: one object straight from the slabs, never through
    /// the slot (its owner is suspended inside it). Spins for the cache lock only if
    /// this CPU holds no Quarry lock; otherwise tries it once (`.outOfMemory` if held).
    func allocateNested(_ mode: LockMode) -> Result<UInt, QuarryError> {
        let result = takeOne(mode)
        if case .success = result { state.pointee.atomics.nestedAllocations.wrappingAdd(1, ordering: .relaxed) }
        return result
    }

    func allocateMissed(_ index: Int, _ mode: LockMode) -> Result<UInt, QuarryError> {
        hook(.allocateMiss)
        let slot = cpu(index)
        guard state.pointee.magazineCapacity > 0 else {
            if let object = slot.pointee.takeReserve() {
                slot.counters.pointee.allocMisses.bump()
                return .success(object)
            }
            return allocateOneFromSlabs(slot, mode)
        }
        while true {
            if let object = slot.pointee.popEitherMagazine() ?? slot.pointee.takeReserve() {
                slot.counters.pointee.allocMisses.bump()
                return .success(object)
            }
            if slot.pointee.loaded == heap.pointee.sentinel {
                if mode == .spin && attach(slot) { continue }
                return allocateOneFromSlabs(slot, mode)
            }
            switch exchangeEmptyForFull(slot, mode) {
            case .exchanged, .retry: continue
            case .wouldBlock: return .failure(.outOfMemory)
            case .unavailable: return refill(slot, mode)
            }
        }
    }

    /// Both magazines empty: take a full one from the depot; the empty previous goes to
    /// the depot, loaded becomes previous (Bonwick's allocation exchange).
    func exchangeEmptyForFull(_ slot: UnsafeMutablePointer<CPUCache>, _ mode: LockMode) -> Exchange {
        let result = state.pointee.depot.tryWithLock(P.self, mode) { depot -> Exchange in
            hook(.depotLocked)
            if slot.pointee.hasObjects { return .retry }
            guard let full = depot.popFull() else { return .unavailable }
            let spare = slot.pointee.previous
            slot.pointee.previous = slot.pointee.loaded
            slot.pointee.loaded = full
            depot.pushEmpty(spare)
            if depot.emptyCount > heap.pointee.tuning.depotEmptyLimit {
                state.pointee.atomics.trimNeeded.store(true, ordering: .relaxed)
            }
            slot.counters.pointee.exchanges.bump()
            return .exchanged
        }
        return result ?? .wouldBlock
    }

    /// No full magazine anywhere: fill the loaded magazine from the slabs under one
    /// acquisition of the cache lock, then pop. The magazine is reversed so that
    /// objects come out in slab order.
    func refill(_ slot: UnsafeMutablePointer<CPUCache>, _ mode: LockMode) -> Result<UInt, QuarryError> {
        var failure: QuarryError? = nil
        let locked: Void? = state.pointee.lock.tryWithLock(P.self, mode) { slabs in
            hook(.cacheLocked)
            var taken = 0
            fill: while true {
                let m = slot.pointee.loaded
                guard m.count < m.capacity else { break fill }
                switch slabs.take(mode, for: self) {
                case .success(let object):
                    // Read the slot again: a nested call may have run inside the slab layer.
                    let now = slot.pointee.loaded
                    guard now.count < now.capacity else {
                        slabs.giveBack(object, mode, for: self)
                        break fill
                    }
                    now.push(object)
                    taken += 1
                case .failure(let error):
                    failure = error
                    break fill
                }
            }
            if taken > 0 { slabs.counters.refills += 1 }
        }
        guard locked != nil else { return .failure(.outOfMemory) }
        slot.pointee.loaded.reverse()
        if let object = slot.pointee.popEitherMagazine() {
            slot.counters.pointee.allocMisses.bump()
            return .success(object)
        }
        return .failure(failure ?? .outOfMemory)
    }

    // MARK: Free

    /// Free when the hit path could not take the object: the loaded magazine is full,
    /// or the slot is claimed by code this call interrupted (then the nested path).
    /// The object passed the checks of `freeLocated`. Interrupts masked throughout.
    @inline(never)
    func freeSlow(_ address: UInt) throws(QuarryError) {
        let saved = P.disableInterrupts()
        let index = P.cpuIndex
        let slot = cpu(index)
        let mode = heap.pointee.lockMode(cpu: index)
        let done: Bool
        if !slot.claim() {
            done = freeNested(address, mode)
        } else {
            // The object enters the per-CPU layer (magazine or reserve) with its cached
            // mark, or its slab (which overwrites the mark with a link). A refusal puts
            // the caller's word back: nothing changed.
            let offset = geometry.linkOffset
            let word = FreeLink.word(of: address, offset: offset)
            setCachedMark(address)
            done = freeMissed(address, index, mode)
            if !done { FreeLink.setWord(word, of: address, offset: offset) }
            if mode == .spin { tidy(index) }
            slot.unclaim()
        }
        P.restoreInterrupts(saved)
        if !done {
            state.pointee.atomics.nolockRefusals.wrappingAdd(1, ordering: .relaxed)
            throw .busy
        }
    }

    /// The nested path of free: straight back to the slab, never through the slot.
    /// False (`.busy`, nothing changed) when the cache lock is held and this CPU holds
    /// a Quarry lock (it may be the holder).
    func freeNested(_ address: UInt, _ mode: LockMode) -> Bool {
        let locked: Void? = state.pointee.lock.tryWithLock(P.self, mode) { slabs in
            hook(.cacheLocked)
            slabs.giveBack(address, mode, for: self)
        }
        guard locked != nil else { return false }
        state.pointee.atomics.nestedFrees.wrappingAdd(1, ordering: .relaxed)
        return true
    }

    func freeMissed(_ address: UInt, _ index: Int, _ mode: LockMode) -> Bool {
        hook(.freeMiss)
        let slot = cpu(index)
        guard state.pointee.magazineCapacity > 0 else { return freeOneToSlabs(address, slot, mode) }
        while true {
            if slot.pointee.pushEitherMagazine(address) {
                slot.counters.pointee.freeMisses.bump()
                return true
            }
            if slot.pointee.loaded == heap.pointee.sentinel {
                if mode == .spin && attach(slot) { continue }
                return freeOneToSlabs(address, slot, mode)
            }
            switch exchangeFullForEmpty(slot, mode) {
            case .exchanged, .retry: continue
            case .wouldBlock: return park(address, slot)
            case .unavailable: flushPrevious(slot)  // .spin only
            }
        }
    }

    /// Both magazines full: the full previous goes to the depot, an empty magazine
    /// (from the depot, or a new one) becomes loaded, loaded becomes previous
    /// (Bonwick's free exchange). When the depot already holds `depotFullLimit` full
    /// magazines, its coldest one is first emptied into the slabs.
    func exchangeFullForEmpty(_ slot: UnsafeMutablePointer<CPUCache>, _ mode: LockMode) -> Exchange {
        let result = state.pointee.depot.tryWithLock(P.self, mode) { depot -> Exchange in
            hook(.depotLocked)
            return exchangeFullForEmpty(slot, mode, &depot)
        }
        return result ?? .wouldBlock
    }

    /// `exchangeFullForEmpty` inside the depot's lock scope.
    private func exchangeFullForEmpty(
        _ slot: UnsafeMutablePointer<CPUCache>, _ mode: LockMode,
        _ depot: inout Depot
    ) -> Exchange {
        if slot.pointee.hasRoom { return .retry }
        let tuning = heap.pointee.tuning
        if depot.fullCount >= tuning.depotFullLimit {
            guard mode == .spin else { return .wouldBlock }
            guard let cold = depot.popFull() else { return .unavailable }
            flushToSlabs(cold)
            depot.pushEmpty(cold)
        }
        var fresh = depot.popEmpty()
        if fresh == nil { fresh = allocateMagazine(mode) }
        guard let empty = fresh else { return mode == .spin ? .unavailable : .wouldBlock }
        // Read the slot again: nested calls may have run during the flush or allocation.
        if slot.pointee.hasRoom {
            depot.pushEmpty(empty)
            if depot.emptyCount > tuning.depotEmptyLimit {
                state.pointee.atomics.trimNeeded.store(true, ordering: .relaxed)
            }
            return .retry
        }
        depot.pushFull(slot.pointee.previous)
        slot.pointee.previous = slot.pointee.loaded
        slot.pointee.loaded = empty
        slot.counters.pointee.exchanges.bump()
        return .exchanged
    }

    /// Empties the previous magazine in place into the slabs (when no empty magazine
    /// can be had: `depotFullLimit == 0`, or no memory for a new magazine). `.spin` only.
    func flushPrevious(_ slot: UnsafeMutablePointer<CPUCache>) {
        state.pointee.lock.withLock(P.self) { slabs in
            hook(.flushing)
            while true {
                let m = slot.pointee.previous  // again each time: nested calls may swap the slots
                guard m.count > 0 else { break }
                slabs.giveBack(m.pop(), .spin, for: self)
            }
            slabs.counters.flushes += 1
        }
    }

    /// Empties `magazine`, which the caller owns (detached from every slot and from the
    /// depot), into the slabs under one acquisition of the cache lock. `.spin` only.
    func flushToSlabs(_ magazine: Magazine) {
        guard magazine.count > 0 else { return }
        state.pointee.lock.withLock(P.self) { slabs in
            hook(.flushing)
            while magazine.count > 0 { slabs.giveBack(magazine.pop(), .spin, for: self) }
            slabs.counters.flushes += 1
        }
    }

    // MARK: Magazines

    /// Gives a detached CPU two empty magazines. `.spin` only (a re-entrant call could
    /// not give them back if it lost a race); false when there is no memory for them.
    func attach(_ slot: UnsafeMutablePointer<CPUCache>) -> Bool {
        guard let a = allocateMagazine(.spin) else { return false }
        guard let b = allocateMagazine(.spin) else {
            freeMagazine(a)
            return false
        }
        hook(.magazineAllocated)
        if slot.pointee.loaded == heap.pointee.sentinel {
            slot.pointee.loaded = a
            slot.pointee.previous = b
        } else {
            // A nested call attached the CPU meanwhile.
            freeMagazine(a)
            freeMagazine(b)
        }
        return true
    }

    /// A new empty magazine of this cache's capacity, from the heap's magazine cache;
    /// nil when the per-CPU budget cannot pay its charge or no memory is left.
    func allocateMagazine(_ mode: LockMode) -> Magazine? {
        guard heap.pointee.reclaim.charge(magazineCharge) else { return nil }
        let magazines = SlabCache(state: heap.pointee.magazineCache)
        guard case .success(let memory) = magazines.allocateInternal(mode) else {
            heap.pointee.reclaim.uncharge(magazineCharge)
            return nil
        }
        // Sound: an object of the magazine cache is sized for `Tuning.magazineSize >=
        // magazineCapacity` rounds and cache-line aligned.
        return Magazine.initialize(
            UnsafeMutableRawPointer(bitPattern: memory).unsafelyUnwrapped,
            capacity: state.pointee.magazineCapacity)
    }

    /// Frees an empty magazine the caller owns to the magazine cache. `.spin` only.
    func freeMagazine(_ magazine: Magazine) {
        precondition(
            magazine.count == 0 && magazine != heap.pointee.sentinel, "Quarry: freeing a magazine that holds objects")
        SlabCache(state: heap.pointee.magazineCache).freeInternal(UInt(bitPattern: magazine.address))
        heap.pointee.reclaim.uncharge(magazineCharge)
    }

    /// Allocation for Quarry's own use from a cache without magazines (the magazine
    /// cache). Interrupts masked, this CPU.
    func allocateInternal(_ mode: LockMode) -> Result<UInt, QuarryError> {
        assert(state.pointee.magazineCapacity == 0, "Quarry: internal allocation from a cache with magazines")
        return allocateOneFromSlabs(cpu(P.cpuIndex), mode)
    }

    /// Allocation for Quarry's own use (cache states) from a cache without magazines,
    /// spinning: the caller holds no lock that comes after a cache lock in the lock
    /// order (at most the malloc front's lock). Counted as a slow-path allocation.
    func allocateForQuarry() throws(QuarryError) -> UnsafeMutableRawPointer {
        let saved = P.disableInterrupts()
        let result = allocateInternal(.spin)
        P.restoreInterrupts(saved)
        switch result {
        case .success(let object):
            // Sound: an object of a live slab of this cache, just marked allocated.
            return UnsafeMutableRawPointer(bitPattern: object).unsafelyUnwrapped
        case .failure(let error):
            state.pointee.atomics.failures.wrappingAdd(1, ordering: .relaxed)
            throw error
        }
    }

    /// Frees an object `allocateForQuarry` handed out.
    func freeForQuarry(_ object: UInt) {
        let saved = P.disableInterrupts()
        freeInternal(object)
        P.restoreInterrupts(saved)
    }

    /// Free for Quarry's own use to a cache without magazines. `.spin`, interrupts masked, this CPU.
    func freeInternal(_ object: UInt) {
        let returned = state.pointee.lock.withLock(P.self) { slabs in
            hook(.cacheLocked)
            return slabs.giveBack(object, .spin, for: self)
        }
        precondition(returned, "Quarry: an internal object freed twice")
        cpu(P.cpuIndex).counters.pointee.freeMisses.bump()
    }

    // MARK: Tidy

    /// End of every `.spin` slow path: returns objects that re-entrant frees parked in
    /// this CPU's reserve, trims what re-entrant calls could not (surplus empty
    /// magazines and empty slabs), and honours a flush request (Quarry+Reclaim). Cheap
    /// when there is nothing to do: one load of the reserve count, one atomic load, and
    /// a call that makes one load and one atomic load for the request.
    @inline(__always)
    func tidy(_ index: Int) {
        hook(.tidying)
        let slot = cpu(index)
        if slot.pointee.reserveCount > 0 { flushReserve(slot) }
        if state.pointee.atomics.trimNeeded.load(ordering: .relaxed) { trim() }
        if flushRequested(index) { honourFlushRequest(index) }
    }

    @inline(never)
    func flushReserve(_ slot: UnsafeMutablePointer<CPUCache>) {
        state.pointee.lock.withLock(P.self) { slabs in
            hook(.trimming)
            while let object = slot.pointee.takeReserve() { slabs.giveBack(object, .spin, for: self) }
            slabs.counters.flushes += 1
        }
    }

    /// Frees surplus empty magazines and releases surplus empty slabs. `.spin` only.
    @inline(never)
    func trim() {
        state.pointee.atomics.trimNeeded.store(false, ordering: .relaxed)
        let h = heap
        var surplus = state.pointee.depot.withLock(P.self) { depot -> Magazine? in
            hook(.trimming)
            var surplus: Magazine? = nil
            while depot.emptyCount > h.pointee.tuning.depotEmptyLimit {
                guard let m = depot.popEmpty() else { break }
                m.next = surplus
                surplus = m
            }
            return surplus
        }
        while let m = surplus {
            surplus = m.next
            m.next = nil
            freeMagazine(m)
        }
        let reserve = state.pointee.emptySlabReserve
        _ = state.pointee.lock.withLock(P.self) { slabs in slabs.releaseEmptySlabs(keeping: reserve, for: self) }
    }
}
