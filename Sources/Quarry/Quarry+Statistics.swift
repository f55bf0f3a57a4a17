// Quarry+Statistics: plain-struct snapshots of caches and pages, and the slabinfo table.
// Neighbours: CacheState (the counters), PageAllocator (page figures), ByteSink (output).

/// A snapshot of one cache, taken under its lock.
public struct CacheStatistics: Sendable {
    public var name: CacheName
    /// Size the cache was created with, and the stride objects are laid out at.
    public var requestedSize: Int
    public var objectSize: Int
    public var alignment: Int
    public var objectsPerSlab: Int
    public var pagesPerSlab: Int
    public var colors: Int
    /// Objects handed out and not freed.
    public var activeObjects: Int
    /// Capacity of all slabs the cache holds.
    public var totalObjects: Int
    public var highWaterObjects: Int
    public var partialSlabs: Int
    public var fullSlabs: Int
    public var emptySlabs: Int
    public var pages: Int
    public var allocations: UInt64
    public var frees: UInt64
    public var failures: UInt64
    public var slabsCreated: UInt64
    public var slabsReleased: UInt64
    /// Refused frees and detected corruption, all kinds.
    public var errors: UInt64
    /// Slabs stay with the cache until destroy (`createCache(..., typeStable: true)`).
    public var typeStable: Bool
    let errorCounts: InlineArray<9, UInt64>

    /// How many times `error` was reported by this cache.
    public func count(of error: QuarryError) -> UInt64 {
        let i = Int(error.rawValue) - 16
        return i >= 0 && i < 9 ? errorCounts[i] : 0
    }

    public var slabs: Int { partialSlabs + fullSlabs + emptySlabs }
}

/// A snapshot of the page allocator.
public struct PageStatistics: Sendable {
    public var pageCount: Int
    /// Pages handed out (slabs, spans) and not given back.
    public var pagesInUse: Int
    /// Pages in free runs below the bump pointer.
    public var freeRunPages: Int
    /// The bump pointer: pages `0 ..< bump` have been used at least once.
    public var bump: Int
    public var highWater: Int
    public var runsAllocated: Int
    public var runsFreed: Int
    public var failures: Int
    /// Bytes of metadata: header, page descriptors and allocation bitmap.
    public var metadataBytes: Int
}

extension SlabCache {
    public var statistics: CacheStatistics {
        let saved = state.pointee.lock.acquire(P.self)
        let g = state.pointee.geometry
        let c = state.pointee.counters
        let slabs = state.pointee.slabCount
        let stats = CacheStatistics(
            name: state.pointee.name, requestedSize: state.pointee.requestedSize,
            objectSize: g.objectSize, alignment: g.alignment, objectsPerSlab: g.objectsPerSlab,
            pagesPerSlab: g.slabPages, colors: g.colorCount, activeObjects: c.active,
            totalObjects: slabs * g.objectsPerSlab, highWaterObjects: c.highWater,
            partialSlabs: state.pointee.partial.count, fullSlabs: state.pointee.full.count,
            emptySlabs: state.pointee.empty.count, pages: slabs * g.slabPages,
            allocations: c.allocations, frees: c.frees, failures: c.failures,
            slabsCreated: c.slabsCreated, slabsReleased: c.slabsReleased,
            errors: c.totalErrors, typeStable: state.pointee.typeStable, errorCounts: c.errors)
        state.pointee.lock.release(P.self, saved)
        return stats
    }
}

extension Quarry {
    public var pageStatistics: PageStatistics {
        let saved = heap.pointee.pageLock.acquire(P.self)
        let p = heap.pointee.pages
        let a = heap.pointee.arena
        let stats = PageStatistics(
            pageCount: p.pageCount, pagesInUse: p.pagesInUse, freeRunPages: p.freePages,
            bump: p.bump.int, highWater: p.highWater.int, runsAllocated: p.runsAllocated,
            runsFreed: p.runsFreed, failures: p.failures,
            metadataBytes: Int(a.dataStart - a.regionStart))
        heap.pointee.pageLock.release(P.self, saved)
        return stats
    }

    /// Writes a /proc/slabinfo-style table: one row per cache, then the page totals.
    /// Allocates nothing; safe on bare metal.
    public func writeSlabinfo<S: ByteSink>(to out: inout S) {
        out.write("# name                objsize align obj/slab pg/slab colors  active   total  partial full empty   allocs    frees errors\n")
        forEachCache { cache in
            let s = cache.statistics
            out.write(s.name, width: 20)
            out.write(s.objectSize, width: 8)
            out.write(s.alignment, width: 6)
            out.write(s.objectsPerSlab, width: 9)
            out.write(s.pagesPerSlab, width: 8)
            out.write(s.colors, width: 7)
            out.write(s.activeObjects, width: 8)
            out.write(s.totalObjects, width: 8)
            out.write(s.partialSlabs, width: 9)
            out.write(s.fullSlabs, width: 5)
            out.write(s.emptySlabs, width: 6)
            out.write(s.allocations, width: 9)
            out.write(s.frees, width: 9)
            out.write(s.errors, width: 7)
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
    }

    /// `writeSlabinfo` through the platform's output.
    public func printSlabinfo() {
        var out = PlatformOutput<P>()
        writeSlabinfo(to: &out)
    }
}
