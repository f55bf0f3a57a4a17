// SlabCache+Drain: give back what the per-CPU layer and the slabs hold: drain a CPU's
// magazines, empty the depot, release empty slabs.
// Neighbours: SlabCache+PerCPU (flushes and magazine frees), SlabLayer (slab
// release), Quarry (drainAll, destroy).
//
// None of these is interrupt-safe (thread context; they trap if the CPU holds a Quarry
// lock). `drainCPU` touches only the calling CPU's slot, and `drainOwnSlot` (the
// reclaim's, Quarry+Reclaim) only a slot of the calling CPU it can claim. Draining
// another CPU's slot (`drainSlot`, used by `Quarry.drainAll` and `destroy`) is done
// only at quiescence: no CPU may be inside this cache, and the caller must have a
// happens-before edge from every CPU's last use (thread join, a lock, an IPI handshake).

extension SlabCache {
    /// Empties this CPU's magazines and reserve of this cache into the slabs and frees
    /// the magazines; the CPU is detached until its next miss attaches it again.
    public func drainCPU() {
        heap.pointee.requireNotReentrant(P.self)
        let saved = P.disableInterrupts()
        drainSlot(P.cpuIndex)
        P.restoreInterrupts(saved)
    }

    /// Empties the depot: full magazines into the slabs, every magazine freed.
    public func drainDepot() {
        heap.pointee.requireNotReentrant(P.self)
        drainDepotUnchecked()
    }

    /// Releases every empty slab, reserve included. Returns the number of pages given
    /// back. Objects held by the per-CPU layer keep their slabs: drain first. A
    /// type-stable cache keeps its slabs (returns 0): only `destroy` releases them.
    @discardableResult
    public func shrink() -> Int {
        heap.pointee.requireNotReentrant(P.self)
        return shrinkUnchecked()
    }

    /// Slot `index` into the slabs, magazines freed, slot detached. On its CPU with
    /// interrupts masked, or from any CPU at quiescence.
    func drainSlot(_ index: Int) {
        let slot = CacheState.cpu(index, of: state)
        let sentinel = heap.pointee.sentinel
        let loaded = slot.pointee.loaded
        let previous = slot.pointee.previous
        slot.pointee.loaded = sentinel
        slot.pointee.previous = sentinel
        if slot.pointee.reserveCount > 0 { flushReserve(slot) }
        if loaded != sentinel {
            flushToSlabs(loaded)
            flushToSlabs(previous)
            freeMagazine(loaded)
            freeMagazine(previous)
        }
    }

    /// CPU `index`'s slot (the calling CPU's) into the slabs, if the caller holds it
    /// `claimed` or can claim it now; a slot claimed by code the caller interrupted
    /// is left alone. No Quarry lock held, or only locks before the depot's in the order.
    func drainOwnSlot(_ index: Int, claimed: Bool) {
        let saved = P.disableInterrupts()
        let slot = cpu(index)
        if claimed {
            drainSlot(index)
        } else if slot.claim() {
            drainSlot(index)
            slot.unclaim()
        }
        P.restoreInterrupts(saved)
    }

    /// Every CPU's slot (quiescence), then the depot.
    func drainAllSlots() {
        var i = 0
        while i < P.maxCPUs {
            let saved = P.disableInterrupts()
            drainSlot(i)
            P.restoreInterrupts(saved)
            i += 1
        }
        drainDepotUnchecked()
    }

    func drainDepotUnchecked() {
        let (fulls, empties) = state.pointee.depot.withLock(P.self) { depot in depot.takeAll() }
        var m = fulls
        while let x = m {
            m = x.next
            x.next = nil
            flushToSlabs(x)
            freeMagazine(x)
        }
        m = empties
        while let x = m {
            m = x.next
            x.next = nil
            freeMagazine(x)
        }
    }

    func shrinkUnchecked() -> Int {
        if state.pointee.typeStable { return 0 }
        return releaseEmptySlabs()
    }

    /// Releases every empty slab, type-stable or not (`shrink`).
    func releaseEmptySlabs() -> Int {
        state.pointee.lock.withLock(P.self) { slabs in slabs.releaseEmptySlabs(keeping: 0, for: self) }
    }

    /// Releases every slab of a cache that holds no object (`destroy`, after draining):
    /// the empty ones and the quarantined ones, which nothing else releases.
    func releaseAllSlabs() {
        state.pointee.lock.withLock(P.self) { slabs in
            _ = slabs.releaseEmptySlabs(keeping: 0, for: self)
            slabs.releaseQuarantinedSlabs(for: self)
        }
    }
}
