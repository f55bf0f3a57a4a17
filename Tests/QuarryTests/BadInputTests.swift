import Testing
@testable import Quarry
#if canImport(Glibc)
import Glibc
#endif

/// Every refused input gets its specific error, is counted, and changes nothing else.
@Suite struct BadInputTests {
    /// Everything observable about a heap that a refused call must leave unchanged.
    struct Snapshot: Equatable {
        var pages: [Int]
        var caches: [[UInt64]]
        init(_ q: Quarry<HostPlatform>) {
            let p = q.pageStatistics
            pages = [p.pagesInUse, p.freeRunPages, p.bump, p.runsAllocated, p.runsFreed]
            var cs: [[UInt64]] = []
            q.forEachCache { c in
                let s = c.statistics
                cs.append([UInt64(s.activeObjects), UInt64(s.slabs), s.allocations, s.frees, UInt64(s.partialSlabs)])
            }
            caches = cs
        }
    }

    @Test func creationRefusals() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let before = Snapshot(q)
        #expect(throws: QuarryError.zeroSize) { try q.createCache(name: "z", size: 0) }
        #expect(throws: QuarryError.sizeTooLarge) { try q.createCache(name: "big", size: Geometry.maxObjectSize + 1) }
        #expect(throws: QuarryError.sizeTooLarge) { try q.createCache(name: "huge", size: Int.max) }
        #expect(throws: QuarryError.badAlignment) { try q.createCache(name: "a3", size: 8, alignment: 3) }
        #expect(throws: QuarryError.badAlignment) { try q.createCache(name: "a0", size: 8, alignment: 0) }
        #expect(throws: QuarryError.badAlignment) { try q.createCache(name: "a8k", size: 8, alignment: 8192) }
        #expect(Snapshot(q) == before)
        #expect(q.cacheCount == internalCaches)
    }

    @Test func arenaTooSmall() {
        let arena = TestArena(size: 4096)
        defer { arena.release() }
        #expect(throws: QuarryError.arenaTooSmall) { try arena.quarry() }
        #expect(throws: QuarryError.arenaTooSmall) {
            try Quarry<HostPlatform>.initialize(base: arena.base, size: 0)
        }
    }

    @Test func freeRefusals() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let a = try q.createCache(name: "a", size: 40)
        let b = try q.createCache(name: "b", size: 40)
        let pa = try a.allocate()
        let pb = try b.allocate()
        let freed = try a.allocate()
        try a.free(freed)
        let before = Snapshot(q)

        try a.free(nil)  // a no-op, not an error
        var outside = UInt64(0)
        let meta = UnsafeMutableRawPointer(q.heap)
        let neverUsedPage = UnsafeMutableRawPointer(bitPattern: q.heap.pointee.arena.end - 4096)!
        let cases: [(UnsafeMutableRawPointer, QuarryError)] = [
            (UnsafeMutableRawPointer(&outside), .outsideArena),
            (meta + 64, .metadataPointer),
            (neverUsedPage, .freePage),
            (pa + 8, .interiorPointer),
            (pa + 1, .misaligned),
            (pb, .wrongCache),
            (freed, .doubleFree),
        ]
        for (pointer, expected) in cases {
            #expect(throws: expected) { try a.free(pointer) }
            #expect(a.statistics.count(of: expected) == 1, "counted once: \(expected)")
        }
        #expect(a.statistics.errors == UInt64(cases.count))
        #expect(Snapshot(q) == before, "a refused free changes nothing")
        q.checkInvariants()
        // The refused objects are still fine to use and free properly.
        try a.free(pa)
        try b.free(pb)
        #expect(throws: QuarryError.doubleFree) { try a.free(pa) }
        q.checkInvariants()
    }

    /// A pointer into a page that held a slab which has since been released is
    /// refused as a free page, even though stale descriptors remain.
    @Test func stalePagesAreRecognised() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: Tuning(maxObjectsPerSlab: 2, emptySlabReserve: 0))
        let big = try q.createCache(name: "big", size: 5000)  // 2-page slabs
        let keep = try big.allocate()
        let p = try big.allocate()
        let q2 = try big.allocate()  // second slab
        try big.free(q2)             // into this CPU's magazine,
        big.drainCPU()               // then to its slab: the second slab is released
        #expect(throws: QuarryError.freePage) { try big.free(q2) }
        #expect(throws: QuarryError.freePage) { try big.free(q2 + 4096) }
        try big.free(p)
        try big.free(keep)
        q.checkInvariants()
    }

    /// Out of memory on a tiny arena through every path: creating a cache (the cache
    /// of caches needs a slab), a new slab, a multi-page slab. Nothing is lost and
    /// everything works again after frees.
    @Test func outOfMemoryEverywhere() throws {
        let arena = TestArena(size: 64 << 10)
        defer { arena.release() }
        let q = try arena.quarry()
        let pages = q.pageStatistics.pageCount
        #expect(pages >= 8 && pages < 16)
        var caches: [SlabCache<HostPlatform>] = []
        caches.append(try q.createCache(name: "one", size: 4000))
        var held: [UnsafeMutableRawPointer] = []
        while let p = try? caches[0].allocate() { held.append(p) }
        let internalPages = q.cacheOfCaches.statistics.pages + q.magazineCache.statistics.pages
        #expect(held.count == pages - internalPages, "the rest hold the cache of caches and the magazines")
        #expect(caches[0].statistics.failures == 1)
        // A multi-page slab cannot come from a full arena either.
        #expect(throws: QuarryError.outOfMemory) { try q.createCache(name: "x", size: 8).allocate() }
        let big = try q.createCache(name: "big", size: 8000)  // 2-page slabs; the cache of caches has room
        #expect(throws: QuarryError.outOfMemory) { try big.allocate() }
        q.checkInvariants()
        for p in held.prefix(4) { try caches[0].free(p) }
        caches[0].drainCPU()  // the freed objects wait in this CPU's magazines until drained
        caches[0].shrink()
        let b = try big.allocate()
        try big.free(b)
        for p in held.dropFirst(4) { try caches[0].free(p) }
        q.checkInvariants()
    }

    /// When the cache of caches itself has no page, creating a cache fails cleanly.
    @Test func createCacheOutOfMemory() throws {
        let arena = TestArena(size: 64 << 10)
        defer { arena.release() }
        let q = try arena.quarry()
        let hog = try q.createCache(name: "hog", size: 4096)
        var held: [UnsafeMutableRawPointer] = []
        while let p = try? hog.allocate() { held.append(p) }
        // Fill the cache of caches' one slab, then ask for one more cache.
        var made: [SlabCache<HostPlatform>] = []
        var refusal: QuarryError? = nil
        while refusal == nil {
            do throws(QuarryError) { made.append(try q.createCache(name: "m", size: 8)) } catch { refusal = error }
        }
        #expect(refusal == .outOfMemory)
        q.checkInvariants()
        for c in made { c.destroy() }
        for p in held { try hog.free(p) }
        q.checkInvariants()
    }
}
