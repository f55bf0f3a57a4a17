// SafetyTests: the misuse, corruption and carving scenarios (Tests/Scenarios: Misuse.swift,
// Corruption.swift, Carving.swift; the test kernel's CorruptionSuite runs them too), and
// what only the host checks: zeroing. Serialized: the scenarios install
// ErrorHookRecorder's hook, whose record is global.
// Neighbours: BadInputTests (refused creations, out of memory), CorruptionSurvivalTests.

import QuarryScenarios
import Testing

@testable import Quarry

@Suite(.serialized) struct SafetyTests {
    /// Objects under 64 bytes keep their allocation bits at the end of their slab
    /// (AllocationBitmap); larger ones out of band. On both sides of 64 bytes, through
    /// the magazines and straight to the slabs: a full slab's objects all freed once
    /// (accepted) then again (each a double free, nothing changed), a free into the
    /// slab's last bytes (its bits, or slack) refused as interior, and the bits agree
    /// with the slab's counts (`validate`, `checkInvariants`).
    @Test(arguments: [8, 16, 24, 48, 56, 64, 72])
    func doubleFreesFoundWhereverTheBitsLive(size: Int) throws {
        // Both slabs stay when empty, so a second free meets an object of a live slab.
        for tuning in [Tuning(emptySlabReserve: 2), Tuning(emptySlabReserve: 2, magazineSize: 0)] {
            let arena = TestArena(size: 1 << 20)
            defer { arena.release() }
            let q = try arena.quarry(tuning: tuning)
            let c = try q.createCache(name: "bits", size: size)
            var objects: [UnsafeMutableRawPointer] = []
            for _ in 0..<(2 * c.statistics.objectsPerSlab) { objects.append(try c.allocate()) }
            #expect(c.validate() == ValidationReport())
            let end = try #require(c.slabBounds(of: objects[0])).end
            let last = try #require(UnsafeMutableRawPointer(bitPattern: end - 8))
            #expect(throws: QuarryError.interiorPointer) { try c.free(last) }
            for p in objects { try c.free(p) }
            for p in objects { #expect(throws: QuarryError.doubleFree) { try c.free(p) } }
            #expect(c.validate() == ValidationReport() && q.validate() == nil)
            q.checkInvariants()
            // Nothing is handed out twice after the refused frees.
            var again = Set<UInt>()
            for _ in objects { again.insert(UInt(bitPattern: try c.allocate())) }
            #expect(again.count == objects.count)
            for p in again { try c.free(UnsafeMutableRawPointer(bitPattern: p)) }
            q.checkInvariants()
        }
    }

    /// Every misuse kind is refused before the object reaches a magazine, counted
    /// once, and reported once to the hook with the cache and the address.
    @Test(arguments: [Tuning.standard, .tiny])
    func everyMisuseThroughThePerCPUPath(tuning: Tuning) throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        MisuseScenario.free(q, base: arena.base, size: arena.size, ExpectChecks())
        q.drainAll()
        q.checkInvariants()
    }

    /// slub_kunit's corruption tests: a flipped free link, a write past an object, a
    /// write after free, a double and an interior free on a debug cache.
    @Test func corruptionOnPurpose() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        CorruptionScenario.run(q, ExpectChecks())
        q.drainAll()
        q.checkInvariants()
    }

    /// A randomized cache carves each slab in a permutation; validation still accepts
    /// exactly the carved objects, and everything frees back (Tests/Scenarios/Carving.swift).
    @Test func randomizedCarveOrder() throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        CarvingScenario.run(q, ExpectChecks())
    }

    @Test func zeroOnAllocateAndFree() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "zero", size: 40, options: CacheOptions(zeroOnAllocate: true, zeroOnFree: true))
        let p = try c.allocate()
        #expect(SlabCache<ThreadPlatform<1>>.holds(UInt(bitPattern: p), 40, 0))
        SlabCache<ThreadPlatform<1>>.fill(UInt(bitPattern: p), 40, 0xFF)
        try c.free(p)
        // Zeroed on free but for the link word, which holds the cached mark.
        #expect(SlabCache<ThreadPlatform<1>>.holds(UInt(bitPattern: p), 40, 0, skip: 0), "zeroed on free")
        let again = try c.allocate()
        #expect(SlabCache<ThreadPlatform<1>>.holds(UInt(bitPattern: again), 40, 0))
        try c.free(again)
        #expect(c.validate() == ValidationReport())
        // Conflicting options are dropped: a constructor keeps its bytes.
        let ctor = try q.createCache(
            name: "ctor", size: 16, constructor: { _ in },
            options: CacheOptions(poison: true, zeroOnAllocate: true))
        #expect(!ctor.state.pointee.options.poison && !ctor.state.pointee.options.zeroOnAllocate)
        q.drainAll()
        q.checkInvariants()
    }
}
