import QuarryScenarios
import Testing

@testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

@Suite struct SlabCacheTests {
    /// Consecutive slabs get distinct colours in cache-line steps, the cycle wraps
    /// after `colors` slabs, and no object ever crosses its slab's end
    /// (Tests/Scenarios/Colouring.swift, which the test kernel runs too).
    @Test func colouringRotatesAndWraps() throws {
        let arena = TestArena(size: 8 << 20)
        defer { arena.release() }
        // 64-byte objects, at most 40 per slab: 1536 bytes of slack, 25 colours.
        let q = try arena.quarry(tuning: Tuning(maxObjectsPerSlab: 40, emptySlabReserve: 1))
        let s = try q.createCache(name: "probe", size: 64).statistics
        #expect(s.objectsPerSlab == 40 && s.colors == 25)
        ColouringScenario.run(q, size: 64, slabs: 60, ExpectChecks())
    }

    /// Colours honour large alignments: the step is the alignment when it exceeds a line.
    @Test func colouringKeepsAlignment() throws {
        let arena = TestArena(size: 8 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: Tuning(maxObjectsPerSlab: 3, emptySlabReserve: 0))
        let c = try q.createCache(name: "aligned", size: 200, alignment: 256)
        var ptrs: [UnsafeMutableRawPointer] = []
        for _ in 0..<300 {
            let p = try c.allocate()
            #expect(UInt(bitPattern: p) % 256 == 0)
            ptrs.append(p)
        }
        #expect(Set(ptrs.map { c.slabColor(of: $0)! }).count == c.statistics.colors)
        for p in ptrs { try c.free(p) }
        q.checkInvariants()
    }

    /// A new slab costs O(magazine), not O(slab): only the objects one refill takes
    /// (one magazine's worth) are carved.
    @Test func carvingIsLazy() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "lazy", size: 16)
        let p = try c.allocate()
        guard case .success(let page) = c.locate(UInt(bitPattern: p)) else { Issue.record("no slab"); return }
        #expect(Int(q.heap.pointee.map[page].carved) == c.magazineCapacity)
        // 16-byte objects: 254 per page, the last 32 bytes hold their allocation bits.
        #expect(c.statistics.objectsPerSlab == 254 && c.magazineCapacity < 254)
        try c.free(p)
        #expect(Int(q.heap.pointee.map[page].carved) == c.magazineCapacity)
        q.checkInvariants()
    }

    /// The slab layer's empty-slab reserve, with no per-CPU layer in front of it (its
    /// magazines would keep freed objects, and their slabs, out of the slab lists).
    @Test func emptySlabsBeyondTheReserveGoBack() throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: Tuning(maxObjectsPerSlab: 4, emptySlabReserve: 2, magazineSize: 0))
        let c = try q.createCache(name: "reserve", size: 100)
        let before = q.pageStatistics.pagesInUse
        var ptrs: [UnsafeMutableRawPointer] = []
        for _ in 0..<40 { ptrs.append(try c.allocate()) }
        #expect(c.statistics.fullSlabs == 10)
        #expect(q.pageStatistics.pagesInUse == before + 10)
        for p in ptrs { try c.free(p) }
        let s = c.statistics
        #expect(s.emptySlabs == 2 && s.partialSlabs == 0 && s.fullSlabs == 0)
        #expect(s.slabsReleased == 8)
        #expect(q.pageStatistics.pagesInUse == before + 2)
        #expect(c.shrink() == 2)
        #expect(q.pageStatistics.pagesInUse == before)
        q.checkInvariants()
    }

    @Test func constructorRunsOncePerObject() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(
            name: "ctor", size: 32,
            constructor: { p in
                p.storeBytes(of: 0xC0DE, toByteOffset: 8, as: UInt64.self)
                constructed += 1
            })
        constructed = 0
        var ptrs: [UnsafeMutableRawPointer] = []
        for _ in 0..<10 { ptrs.append(try c.allocate()) }
        // Objects are constructed when a refill carves them: one magazine's worth.
        #expect(constructed == c.magazineCapacity)
        for p in ptrs { #expect(p.load(fromByteOffset: 8, as: UInt64.self) == 0xC0DE) }
        for p in ptrs { try c.free(p) }
        for _ in 0..<10 { ptrs.append(try c.allocate()) }
        #expect(constructed == c.magazineCapacity, "reused objects are already constructed")
    }

    @Test func destroyReportsLeaksAndKeepsTheCache() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "leaky", size: 48)
        let p = try c.allocate()
        _ = try c.allocate()
        #expect(c.destroy() == 2)
        #expect(q.cacheCount == internalCaches + 1, "a cache with live objects is not destroyed")
        try c.free(p)
        #expect(c.destroy() == 1)
        q.checkInvariants()
    }

    /// Many caches, then every one destroyed: the page allocator is back to its first state.
    @Test func leakAccountingAcrossCaches() throws {
        let arena = TestArena(size: 16 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let first = q.pageStatistics
        var caches: [SlabCache<ThreadPlatform<1>>] = []
        var objects: [(Int, UnsafeMutableRawPointer)] = []
        for i in 0..<40 {
            let c = try q.createCache(name: "many", size: 8 + i * 97, alignment: 8 << (i % 4))
            caches.append(c)
            for _ in 0..<30 { objects.append((i, try c.allocate())) }
        }
        q.checkInvariants()
        for (i, p) in objects { try caches[i].free(p) }
        for c in caches { #expect(c.destroy() == 0) }
        q.shrink()
        q.checkInvariants()
        let last = q.pageStatistics
        #expect(last.pagesInUse == 0 && last.bump == first.bump && last.freeRunPages == 0)
        #expect(q.cacheCount == internalCaches)
    }
}

nonisolated(unsafe) var constructed = 0
