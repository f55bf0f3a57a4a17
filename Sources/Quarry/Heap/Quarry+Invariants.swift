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
    ///   from the magazine cache; the per-CPU budget's `charged ==` Σ magazines held ×
    ///   their cache's magazine charge `<= budget` (ReclaimState)
    /// - `bumpLimit == bump`, `usedLimit == highWater`; `cacheCount ==` caches in the
    ///   registry; no CPU holds a lock
    /// Quiescence only (see SlabCache.checkInvariants). Not interrupt-safe.
    public func checkInvariants() {
        heap.pointee.requireNotReentrant(P.self)
        var slabPages = 0
        var caches = 0
        var magazines = 0
        var charged = 0
        forEachCache { cache in
            let held = cache.checkInvariantsCountingMagazines()
            magazines += held
            charged += held * cache.magazineCharge
            slabPages += cache.pagesHeld
            caches += 1
        }
        precondition(magazines == magazineCache.activeObjects, "Quarry: magazines held != magazines allocated")
        precondition(
            charged == heap.pointee.reclaim.charged.load(ordering: .relaxed),
            "Quarry: per-CPU budget charged != magazines held")
        precondition(
            charged <= heap.pointee.reclaim.budget
                && charged <= heap.pointee.reclaim.highWater.load(ordering: .relaxed),
            "Quarry: per-CPU budget exceeded")
        heap.pointee.pages.withLock(P.self) { pages in
            let walked = pages.checkInvariants()
            let spans = pages.spans
            precondition(
                heap.pointee.bumpLimit.load(ordering: .relaxed) == pages.bump.raw,
                "Quarry: published bump disagrees")
            precondition(
                heap.pointee.usedLimit.load(ordering: .relaxed) == pages.highWater.raw,
                "Quarry: published high-water mark disagrees")
            precondition(
                walked.spans == spans.live && walked.spanPages == spans.pages,
                "Quarry: spans on the page walk != span counters")
            precondition(
                pages.pagesInUse == slabPages + spans.pages,
                "Quarry: pages in use != pages held by caches and spans")
        }
        precondition(caches == cacheCount, "Quarry: cache registry count")
        var i = 0
        while i < heap.pointee.maxCPUs {
            precondition(heap.pointee.cpuState(i).pointee.locksHeld == 0, "Quarry: a CPU holds a lock at quiescence")
            i += 1
        }
        front.checkInvariants()
    }
}

/// The first thing `Quarry.validate` found wrong: the error it stands for (a
/// corruption kind, or `.accountingMismatch` for a broken invariant), where (see
/// ValidationFinding), and in which cache (empty for the heap's own page count).
public struct ValidationFailure: Sendable {
    /// The kind of damage (see ``ValidationReport`` for what each kind means).
    public var error: QuarryError
    /// Where: as ``ValidationFinding/address``, or the arena's first data byte for the
    /// heap's page count.
    public var address: UInt
    /// The cache the finding is in (an empty name for the heap's page count).
    public var cache: CacheName
}

extension Quarry {
    /// `checkInvariants` that reports instead of trapping: walks every cache
    /// (`SlabCache.validate`: free lists, poison, red zones, slab lists, the bitmap and
    /// the counters) in registry order, then checks `pagesInUse == Σ pages held by
    /// caches + span pages`, and returns the first finding, or nil when there is none.
    /// Slabs quarantined after a detected corruption are not findings (they are
    /// consistent, and counted in the statistics). The page allocator's free runs and
    /// the malloc front's tables are checked only by `checkInvariants`. Changes
    /// nothing, reports nothing. Quiescence only; not interrupt-safe.
    public func validate() -> ValidationFailure? {
        heap.pointee.requireNotReentrant(P.self)
        var failure: ValidationFailure? = nil
        var slabPages = 0
        forEachCache { cache in
            slabPages += cache.pagesHeld
            guard failure == nil, let first = cache.validateUnchecked().first else { return }
            failure = ValidationFailure(error: first.error, address: first.address, cache: cache.name)
        }
        if failure != nil { return failure }
        let consistent = heap.pointee.pages.withLock(P.self) { pages in
            pages.pagesInUse == slabPages + pages.spans.pages
        }
        if !consistent {
            return ValidationFailure(
                error: .accountingMismatch, address: heap.pointee.arena.dataStart,
                cache: CacheName(utf8: UnsafeBufferPointer(start: nil, count: 0)))
        }
        return nil
    }
}
