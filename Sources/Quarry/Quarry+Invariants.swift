// Quarry+Invariants: whole-heap checks: the page allocator, every cache, and the
// accounting between them. Neighbours: PageAllocator, SlabCache+Invariants.

import Synchronization

extension Quarry {
    /// Traps on the first broken invariant:
    /// - the page allocator's own invariants (see PageAllocator)
    /// - every cache's invariants (see SlabCache.checkInvariants)
    /// - `pagesInUse == Σ pages held by caches + span pages` (every used page belongs
    ///   to a slab or a span)
    /// - the spans met on the page walk are exactly those counted (`SpanCounters`)
    /// - the malloc front's own invariants (see FrontState)
    /// - `bumpLimit == bump`; `cacheCount ==` caches in the registry
    public func checkInvariants() {
        var slabPages = 0
        var caches = 0
        forEachCache { cache in
            cache.checkInvariants()
            slabPages += cache.pagesHeld
            caches += 1
        }
        let saved = heap.pointee.pageLock.acquire(P.self)
        let walked = heap.pointee.pages.checkInvariants()
        let spans = heap.pointee.spans
        precondition(heap.pointee.bumpLimit.load(ordering: .relaxed) == heap.pointee.pages.bump.raw,
                     "Quarry: published bump disagrees")
        precondition(walked.spans == spans.live && walked.spanPages == spans.pages,
                     "Quarry: spans on the page walk != span counters")
        precondition(heap.pointee.pages.pagesInUse == slabPages + spans.pages,
                     "Quarry: pages in use != pages held by caches and spans")
        heap.pointee.pageLock.release(P.self, saved)
        precondition(caches == heap.pointee.cacheCount, "Quarry: cache registry count")
        front.checkInvariants()
    }
}
