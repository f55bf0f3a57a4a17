// EpochReclaimer+Malloc: deferred freeing of malloc blocks (the C ABI's
// quarry_epoch_retire_block). A block of a size class is retired to its class cache like
// any cache object; a span (above the largest class, or aligned beyond a page) is retired
// as itself and goes back through the malloc front. Neighbours: EpochReclaimer (the
// backlog and its contract), MallocFront (resolve, free), Span.

import Synchronization

extension EpochReclaimer {
    /// `retire(block:from:using:)` with a reservation taken now: throws `.reclaimStalled`
    /// (the caller keeps `block`) when this CPU's backlog is full and cannot be freed
    /// because a CPU stays inside a critical section.
    public func retire(block: UnsafeMutableRawPointer, from front: MallocFront<P>) throws(QuarryError) {
        let reservation = try reserve()
        try retire(block: block, from: front, using: reservation)
    }

    /// Hands the malloc block at `block` (from `front.malloc`, `calloc`, `realloc` or
    /// `alignedAlloc`), already unlinked from every shared structure, to the reclaimer:
    /// it is freed as `front.free(block)` would free it once the global epoch has
    /// advanced twice past now. Until then it stays allocated and untouched.
    ///
    /// Throws, keeping the reservation's slot free, when `block` is not a live block of
    /// `front` (the reason `front.free` would give: `.doubleFree`, `.interiorPointer`,
    /// `.outsideArena`, ...; counted and reported to the error hook as a refused free
    /// is). `front` must be the malloc front of the Quarry that created this reclaimer.
    public func retire(
        block: UnsafeMutableRawPointer, from front: MallocFront<P>,
        using reservation: consuming Reservation
    ) throws(QuarryError) {
        precondition(front.heap == state.pointee.heap, "EpochReclaimer: a block of another Quarry")
        let address = UInt(bitPattern: block)
        switch try front.resolve(address, live: true) {
        case .object(let cache, _):
            enqueue(address, cache: cache.state, cpu: reservation.take())
        case .span:
            enqueue(address, cache: nil, cpu: reservation.take())
        }
    }
}

extension MallocFront {
    /// Whether a live span starts at `address` (the reclaimer's invariant walk; records
    /// no error). Lock-free, as `resolve`.
    func liveSpan(at address: UInt) -> Bool {
        let h = heap
        guard case .page(let page) = h.pointee.arena.classify(address),
            page.raw < h.pointee.bumpLimit.load(ordering: .acquiring)
        else { return false }
        return h.pointee.map[page].kind == .span && address == h.pointee.arena.address(of: page)
    }
}
