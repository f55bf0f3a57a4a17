// Quarry+Statistics: plain-struct snapshots of caches and pages, and the slabinfo table.
// Neighbours: CacheState (the counters), PageAllocator (page figures), ByteSink (output).

import Synchronization

/// A snapshot of one cache, taken under its depot and cache locks; the per-CPU
/// counters are summed from their atomic words (exact at quiescence, and never more
/// than a few operations stale otherwise).
public struct CacheStatistics: Sendable {
    /// The cache's name (`malloc-<size>` for a malloc class cache).
    public var name: CacheName
    /// Size the cache was created with.
    public var requestedSize: Int
    /// The stride objects are laid out at (the size rounded up to the alignment).
    public var objectSize: Int
    /// Every object's address is a multiple of this.
    public var alignment: Int
    /// Objects one slab holds.
    public var objectsPerSlab: Int
    /// Pages one slab spans.
    public var pagesPerSlab: Int
    /// Slab colours: distinct cache-line offsets of a slab's first object (Bonwick 1994).
    public var colors: Int
    /// Objects handed out and not freed.
    public var activeObjects: Int
    /// Objects out of the slabs but not handed out: in CPUs' magazines and reserves and
    /// in the depot's full magazines.
    public var cachedObjects: Int
    /// Capacity of all slabs the cache holds.
    public var totalObjects: Int
    /// Most objects out of the slabs at once (handed out or cached).
    public var highWaterObjects: Int
    /// Slabs with some objects out and some free.
    public var partialSlabs: Int
    /// Slabs with every object out of the slab.
    public var fullSlabs: Int
    /// Slabs with no object out, kept for reuse (at most `Tuning.emptySlabReserve`
    /// after a free; `shrink` releases them).
    public var emptySlabs: Int
    /// Pages held by the cache's slabs (quarantined ones included).
    public var pages: Int
    /// Successful allocations (hits + misses).
    public var allocations: UInt64
    /// Successful frees (hits + misses).
    public var frees: UInt64
    /// Allocations served by the fast path (the loaded magazine).
    public var allocationHits: UInt64
    /// Allocations served by the slow path (and by the nested path).
    public var allocationMisses: UInt64
    /// Frees taken by the fast path (pushed onto the loaded magazine).
    public var freeHits: UInt64
    /// Frees taken by the slow path (and by the nested path, or parked in a reserve).
    public var freeMisses: UInt64
    /// Magazines exchanged between CPUs and the depot.
    public var depotExchanges: UInt64
    /// Full magazines in the depot now.
    public var depotFullMagazines: Int
    /// Empty magazines in the depot now.
    public var depotEmptyMagazines: Int
    /// Magazines filled from the slabs.
    public var refills: UInt64
    /// Magazines or reserves emptied into the slabs.
    public var flushes: UInt64
    /// Rounds per magazine (0: no per-CPU layer).
    public var magazineCapacity: Int
    /// The most objects the per-CPU layer and the depot can hold for this cache:
    /// `maxCPUs * (2 * magazineCapacity + Geometry.cpuReserve) + depotFullLimit * magazineCapacity`.
    public var perCPUBoundObjects: Int
    /// The same in bytes (`perCPUBoundObjects * objectSize`), magazines themselves not included.
    public var perCPUBoundBytes: Int
    /// Allocations refused for lack of memory (or corruption).
    public var failures: UInt64
    /// Re-entrant calls refused (allocate: `.outOfMemory`; free: `.busy`).
    public var nolockRefusals: UInt64
    /// Re-entrant frees parked in their CPU's reserve (`Geometry.cpuReserve` objects)
    /// because the cache lock could not be taken.
    public var nolockParked: UInt64
    /// Slabs carved from new pages, ever.
    public var slabsCreated: UInt64
    /// Slabs whose pages went back to the page allocator, ever.
    public var slabsReleased: UInt64
    /// Refused frees and detected corruption, all kinds.
    public var errors: UInt64
    /// Slabs stay with the cache until destroy (`createCache(..., typeStable: true)`).
    public var typeStable: Bool
    /// Slabs taken out of service because their free list was found corrupt (held
    /// until destroy, counted in `slabs` and `pages`), and the objects in them that
    /// can never be handed out again (docs/design.md, "After a corruption").
    public var quarantinedSlabs: Int
    /// Objects of quarantined slabs that can never be handed out again.
    public var leakedObjects: Int
    let errorCounts: ErrorTable<UInt64>

    /// How many times `error` was reported by this cache.
    public func count(of error: QuarryError) -> UInt64 {
        guard let i = error.tableIndex else { return 0 }
        return errorCounts[i]
    }

    /// Every slab the cache holds: partial, full, empty and quarantined.
    public var slabs: Int { partialSlabs + fullSlabs + emptySlabs + quarantinedSlabs }
}

/// A snapshot of the page allocator.
public struct PageStatistics: Sendable {
    /// Data pages in the arena (the pages after the metadata).
    public var pageCount: Int
    /// Pages handed out (slabs, spans) and not given back.
    public var pagesInUse: Int
    /// Pages in free runs below the bump pointer.
    public var freeRunPages: Int
    /// The bump pointer: pages `0 ..< bump` have been used at least once.
    public var bump: Int
    /// The highest `bump` ever reached.
    public var highWater: Int
    /// Runs of pages handed out (each slab and each span is one), ever.
    public var runsAllocated: Int
    /// Runs given back, ever (an aligned request's unused lead and trail count too).
    public var runsFreed: Int
    /// Page requests refused because no run of the length asked for was free.
    public var failures: Int
    /// Bytes of metadata: header, page descriptors and allocation bitmap.
    public var metadataBytes: Int
}

/// A snapshot of the heap-wide per-CPU budget and of reclaims (Quarry+Reclaim).
public struct ReclaimStatistics: Sendable {
    /// The most bytes the per-CPU layers and depots of all caches may hold: data bytes /
    /// `Tuning.perCPUShare`. Each magazine is charged, when it is made, the bytes its
    /// rounds can hold (`magazineCapacity × objectSize`) plus its own size.
    public var budgetBytes: Int
    /// Charged now (the magazines that exist).
    public var chargedBytes: Int
    /// The most bytes ever charged at once.
    public var highWaterBytes: Int
    /// Magazines not made because the budget could not pay for them.
    public var refusedMagazines: UInt64
    /// Reclaims run (`Quarry.shrink`, and allocations that would have failed), each
    /// posting one flush request to every CPU.
    public var reclaims: UInt64
    /// Flush requests honoured on a CPU's slow path.
    public var flushesHonoured: UInt64
}

extension SlabCache {
    /// The most objects the per-CPU layer and depot of a cache can hold (see CacheStatistics).
    static func perCPUBound(magazineCapacity: Int, tuning: Tuning) -> Int {
        P.maxCPUs * (2 * magazineCapacity + Geometry.cpuReserve) + tuning.depotFullLimit * magazineCapacity
    }

    /// A snapshot of this cache (see ``CacheStatistics``), taken under the cache's depot
    /// and cache locks: thread context only, not interrupt-safe.
    public var statistics: CacheStatistics {
        var hitsA: UInt64 = 0, missesA: UInt64 = 0, hitsF: UInt64 = 0, missesF: UInt64 = 0, exchanges: UInt64 = 0
        var i = 0
        while i < P.maxCPUs {
            let slot = CacheState.counters(i, of: state)
            hitsA &+= UInt64(word: slot.pointee.allocHits.value)
            missesA &+= UInt64(word: slot.pointee.allocMisses.value)
            hitsF &+= UInt64(word: slot.pointee.freeHits.value)
            missesF &+= UInt64(word: slot.pointee.freeMisses.value)
            exchanges &+= UInt64(word: slot.pointee.exchanges.value)
            i += 1
        }
        // Calls served by the nested path count as misses.
        missesA &+= UInt64(word: state.pointee.atomics.nestedAllocations.load(ordering: .relaxed))
        missesF &+= UInt64(word: state.pointee.atomics.nestedFrees.load(ordering: .relaxed))
        let dropped = UInt64(word: state.pointee.atomics.droppedDuplicates.load(ordering: .relaxed))
        let h = heap
        return state.pointee.depot.withLock(P.self) { depot -> CacheStatistics in
            state.pointee.lock.withLock(P.self) { slabs -> CacheStatistics in
                let g = state.pointee.geometry
                let c = slabs.counters
                let slabCount = slabs.slabCount
                let capacity = state.pointee.magazineCapacity
                let bound = Self.perCPUBound(magazineCapacity: capacity, tuning: h.pointee.tuning)
                let active = Int(
                    bitPattern: UInt(truncatingIfNeeded: (hitsA &+ missesA &+ dropped) &- (hitsF &+ missesF)))
                let stats = CacheStatistics(
                    name: state.pointee.name, requestedSize: state.pointee.requestedSize,
                    objectSize: g.objectSize, alignment: g.alignment, objectsPerSlab: g.objectsPerSlab,
                    pagesPerSlab: g.slabPages, colors: g.colorCount, activeObjects: active,
                    cachedObjects: c.inUse - active,
                    totalObjects: slabCount * g.objectsPerSlab, highWaterObjects: c.highWater,
                    partialSlabs: slabs.partial.count, fullSlabs: slabs.full.count,
                    emptySlabs: slabs.empty.count, pages: slabCount * g.slabPages,
                    allocations: hitsA &+ missesA, frees: hitsF &+ missesF,
                    allocationHits: hitsA, allocationMisses: missesA, freeHits: hitsF, freeMisses: missesF,
                    depotExchanges: exchanges, depotFullMagazines: depot.fullCount,
                    depotEmptyMagazines: depot.emptyCount,
                    refills: c.refills, flushes: c.flushes, magazineCapacity: capacity,
                    perCPUBoundObjects: bound, perCPUBoundBytes: bound * g.objectSize,
                    failures: UInt64(word: state.pointee.atomics.failures.load(ordering: .relaxed)),
                    nolockRefusals: UInt64(word: state.pointee.atomics.nolockRefusals.load(ordering: .relaxed)),
                    nolockParked: UInt64(word: state.pointee.atomics.nolockParked.load(ordering: .relaxed)),
                    slabsCreated: c.slabsCreated, slabsReleased: c.slabsReleased,
                    errors: state.pointee.atomics.totalErrors, typeStable: state.pointee.typeStable,
                    quarantinedSlabs: slabs.quarantined.count, leakedObjects: c.leakedObjects,
                    errorCounts: state.pointee.atomics.errorCounts)
                return stats
            }
        }
    }
}

extension Quarry {
    /// The per-CPU budget and reclaim counters (atomics: any context, no lock).
    public var reclaimStatistics: ReclaimStatistics {
        let r = heap
        return ReclaimStatistics(
            budgetBytes: r.pointee.reclaim.budget,
            chargedBytes: r.pointee.reclaim.charged.load(ordering: .relaxed),
            highWaterBytes: r.pointee.reclaim.highWater.load(ordering: .relaxed),
            refusedMagazines: UInt64(word: r.pointee.reclaim.refused.load(ordering: .relaxed)),
            reclaims: UInt64(word: r.pointee.reclaim.requests.load(ordering: .relaxed)),
            flushesHonoured: UInt64(word: r.pointee.reclaim.honoured.load(ordering: .relaxed)))
    }

    /// A snapshot of the page allocator (see ``PageStatistics``), taken under the page lock.
    public var pageStatistics: PageStatistics {
        let a = heap.pointee.arena
        return heap.pointee.pages.withLock(P.self) { p in
            PageStatistics(
                pageCount: p.pageCount, pagesInUse: p.pagesInUse, freeRunPages: p.freePages,
                bump: p.bump.int, highWater: p.highWater.int, runsAllocated: p.runsAllocated,
                runsFreed: p.runsFreed, failures: p.failures,
                metadataBytes: Int(a.dataStart - a.regionStart))
        }
    }

    /// Writes a /proc/slabinfo-style table: one row per cache, then the page totals
    /// and the per-CPU budget. `cached` is what the per-CPU layer and depot hold now;
    /// `bound_kb` the most they can hold (CacheStatistics.perCPUBoundBytes), all caches
    /// together never more than the budget. Allocates nothing; safe on bare metal.
    public func writeSlabinfo<S: ByteSink>(to out: inout S) {
        out.write(
            "# name                objsize align obj/slab pg/slab colors  active  cached   total  partial full empty   allocs    frees   hits% mag  xchg bound_kb errors   hiwat refills  slabs+  slabs-\n"
        )
        forEachCache { cache in
            let s = cache.statistics
            out.write(s.name, width: 20)
            out.write(s.objectSize, width: 8)
            out.write(s.alignment, width: 6)
            out.write(s.objectsPerSlab, width: 9)
            out.write(s.pagesPerSlab, width: 8)
            out.write(s.colors, width: 7)
            out.write(s.activeObjects, width: 8)
            out.write(s.cachedObjects, width: 8)
            out.write(s.totalObjects, width: 8)
            out.write(s.partialSlabs, width: 9)
            out.write(s.fullSlabs, width: 5)
            out.write(s.emptySlabs, width: 6)
            out.write(s.allocations, width: 9)
            out.write(s.frees, width: 9)
            let operations = s.allocations &+ s.frees
            let hits = s.allocationHits &+ s.freeHits
            out.write(operations == 0 ? 0 : hits &* 100 / operations, width: 8)
            out.write(s.magazineCapacity, width: 4)
            out.write(s.depotExchanges, width: 6)
            out.write((s.perCPUBoundBytes + 1023) / 1024, width: 9)
            out.write(s.errors, width: 7)
            out.write(s.highWaterObjects, width: 8)
            out.write(s.refills, width: 8)
            out.write(s.slabsCreated, width: 8)
            out.write(s.slabsReleased, width: 8)
            out.write(UInt8(ascii: "\n"))
        }
        let p = pageStatistics
        out.write("# pages: ")
        out.write(p.pagesInUse)
        out.write(" in use, ")
        out.write(p.freeRunPages)
        out.write(" in free runs, ")
        out.write(p.pageCount - p.bump)
        out.write(" never used, of ")
        out.write(p.pageCount)
        out.write(" (metadata ")
        out.write(p.metadataBytes)
        out.write(" bytes)\n")
        let m = front.statistics
        out.write("# spans: ")
        out.write(m.liveSpans)
        out.write(" live, ")
        out.write(m.spanPages)
        out.write(" pages; malloc errors ")
        out.write(m.errors)
        out.write("\n")
        let r = reclaimStatistics
        out.write("# per-CPU budget: ")
        out.write((r.chargedBytes + 1023) / 1024)
        out.write(" KiB charged of ")
        out.write(r.budgetBytes / 1024)
        out.write(" KiB (high water ")
        out.write((r.highWaterBytes + 1023) / 1024)
        out.write(" KiB), ")
        out.write(r.refusedMagazines)
        out.write(" magazines refused; ")
        out.write(r.reclaims)
        out.write(" reclaims, ")
        out.write(r.flushesHonoured)
        out.write(" flush requests honoured\n")
    }

    /// `writeSlabinfo` through the platform's output.
    public func printSlabinfo() {
        var out = PlatformOutput<P>()
        writeSlabinfo(to: &out)
    }
}
