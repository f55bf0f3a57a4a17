// Quarry+Invariants: whole-heap checks: the page allocator, every cache, and the
// accounting between them. Neighbours: PageAllocator, SlabCache+Invariants.

import Synchronization

extension Quarry {
    /// Traps on the first broken invariant:
    /// - the page allocator's own invariants (see PageAllocator)
    /// - every cache's invariants (see SlabCache.checkInvariants)
    /// - `pagesInUse == Σ pages held by caches` (every used page belongs to a slab)
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
        heap.pointee.pages.checkInvariants()
        precondition(heap.pointee.bumpLimit.load(ordering: .relaxed) == heap.pointee.pages.bump.raw,
                     "Quarry: published bump disagrees")
        precondition(heap.pointee.pages.pagesInUse == slabPages, "Quarry: pages in use != pages held by caches")
        heap.pointee.pageLock.release(P.self, saved)
        precondition(caches == heap.pointee.cacheCount, "Quarry: cache registry count")
    }
}
