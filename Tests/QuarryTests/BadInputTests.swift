// BadInputTests: refused creations and out of memory on every path (the Misuse and
// OutOfMemory scenarios of Tests/Scenarios, which the test kernel runs too), an arena
// too small, stale pages.
// Neighbours: SafetyTests (refused frees: the same scenario), Tests/Scenarios/Misuse.swift.

import QuarryScenarios
import Testing

@testable import Quarry

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
            try Quarry<ThreadPlatform<1>>.initialize(base: arena.base, size: 0)
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
        try big.free(q2)  // into this CPU's magazine,
        big.drainCPU()  // then to its slab: the second slab is released
        #expect(throws: QuarryError.freePage) { try big.free(q2) }
        #expect(throws: QuarryError.freePage) { try big.free(q2 + 4096) }
        try big.free(p)
        try big.free(keep)
        q.checkInvariants()
    }

    /// Out of memory on a 64 KiB arena through every path: a cache's next slab, a new
    /// cache's first slab, a multi-page slab, the cache of caches (the OutOfMemory
    /// scenario of Tests/Scenarios, which the test kernel runs too).
    @Test func outOfMemoryEverywhere() throws {
        let arena = TestArena(size: 64 << 10)
        defer { arena.release() }
        let q = try arena.quarry()
        let pages = q.pageStatistics.pageCount
        #expect(pages >= 8 && pages < 16)
        OutOfMemoryScenario.run(q, ExpectChecks())
    }
}
