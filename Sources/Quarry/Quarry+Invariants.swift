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
    /// - magazines held by all caches (CPU slots and depots) `==` objects allocated
    ///   from the magazine cache
    /// - `bumpLimit == bump`; `cacheCount ==` caches in the registry; no CPU holds a lock
    /// Quiescence only (see SlabCache.checkInvariants). Not interrupt-safe.
    public func checkInvariants() {
        heap.pointee.requireNotReentrant(P.self)
        var slabPages = 0
        var caches = 0
        var magazines = 0
        forEachCache { cache in
            magazines += cache.checkInvariantsCountingMagazines()
            slabPages += cache.pagesHeld
            caches += 1
        }
        precondition(magazines == magazineCache.activeObjects, "Quarry: magazines held != magazines allocated")
        let saved = heap.pointee.acquireBlocking(heap.pointee.pageLock, P.self)
        let pages = heap.pointee.pages
        let walked = pages.pointee.checkInvariants()
        let spans = pages.pointee.spans
        precondition(heap.pointee.bumpLimit.load(ordering: .relaxed) == pages.pointee.bump.raw,
                     "Quarry: published bump disagrees")
        precondition(walked.spans == spans.live && walked.spanPages == spans.pages,
                     "Quarry: spans on the page walk != span counters")
        precondition(pages.pointee.pagesInUse == slabPages + spans.pages,
                     "Quarry: pages in use != pages held by caches and spans")
        heap.pointee.release(heap.pointee.pageLock, P.self, saved)
        precondition(caches == cacheCount, "Quarry: cache registry count")
        var i = 0
        while i < heap.pointee.maxCPUs {
            precondition(heap.pointee.cpuState(i).pointee.locksHeld == 0, "Quarry: a CPU holds a lock at quiescence")
            i += 1
        }
        front.checkInvariants()
    }
}
