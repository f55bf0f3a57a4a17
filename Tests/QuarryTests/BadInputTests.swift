// BadInputTests: refused creations (the Misuse scenario of Tests/Scenarios, which the
// test kernel runs too), an arena too small, stale pages, out of memory on every path.
// Neighbours: SafetyTests (refused frees: the same scenario), Tests/Scenarios/Misuse.swift.

import Testing
@testable import Quarry
import QuarryScenarios
#if canImport(Glibc)
import Glibc
#endif

/// Every refused input gets its specific error, is counted, and changes nothing else.
@Suite struct BadInputTests {
    @Test(arguments: [Tuning.standard, .tiny])
    func creationRefusals(tuning: Tuning) throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        MisuseScenario.creation(q, ExpectChecks())
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
