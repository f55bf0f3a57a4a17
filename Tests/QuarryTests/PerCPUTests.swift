// PerCPUTests: the per-CPU layer on one CPU: magazine and depot paths, statistics and the
// memory bound, drain and leak accounting, misuse caught before a magazine, and the
// reciprocal that replaced the division in pointer validation.
// Neighbours: ThreadPlatform (one CPU), InjectionTests (nested calls), ConcurrencyTests.

import QuarryScenarios
import Testing

@testable import Quarry

@Suite struct PerCPUTests {
    // MARK: Reciprocal

    @Test func slabGeometryFitsTheReciprocalProof() {
        #expect(Geometry.maxSlabPages * Geometry.pageSize == 1 << 16)
        #expect(Geometry.maxObjectSize == 1 << 16)
        var size = 1
        while size <= Geometry.maxObjectSize {
            let g = try! SlabGeometry.make(size: size, alignment: 8, tuning: .standard)
            #expect(g.slabBytes <= 1 << 16 && g.objectSize <= 1 << 16)
            #expect(g.reciprocal == SlabGeometry.reciprocal(of: g.objectSize))
            size += size < 512 ? 1 : 97
        }
    }

    /// `quotient(offset) == offset / d` for every object size `d` (every multiple of the
    /// granule up to 64 KiB) at every offset where the multiply could first go wrong:
    /// the floor can only be too large at the top of a bucket (`k*d - 1`), so those and
    /// `k*d`, `k*d + 1` are checked for every `k`; plus every offset below 64 KiB for a
    /// sample of sizes.
    @Test func reciprocalQuotientIsExact() {
        var failures = 0
        var d = Geometry.granule
        while d <= Geometry.maxObjectSize {
            let g = SlabGeometry(
                objectSize: d, alignment: 8, slabPages: 16, objectsPerSlab: (1 << 16) / d,
                colorStep: 64, colorCount: 1, linkOffset: 0, reciprocal: SlabGeometry.reciprocal(of: d),
                objectSpan: UInt32((1 << 16) / d * d), redZoneStart: d, carvedFloor: 0)
            var k = 0
            while k * d <= 1 << 16 {
                for offset in [k * d - 1, k * d, k * d + 1] where offset >= 0 && offset < 1 << 16 {
                    if Int(g.quotient(UInt32(offset))) != offset / d { failures += 1 }
                }
                k += 1
            }
            d += Geometry.granule
        }
        for d in [8, 16, 24, 40, 56, 72, 200, 1000, 4000, 4096, 12_344, 65_528, 65_536] {
            let r = SlabGeometry.reciprocal(of: d)
            for offset in 0..<(1 << 16) where Int(UInt32(offset).multipliedFullWidth(by: r).high) != offset / d {
                failures += 1
            }
        }
        #expect(failures == 0)
    }

    // MARK: Magazines and depot

    @Test(arguments: [Tuning.tiny, Tuning.standard])
    func magazinePathsKeepEveryInvariant(tuning: Tuning) throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let c = try q.createCache(name: "mags", size: 40)
        var rng = SeededGenerator(seed: 0xC0FFEE)
        var live: [UnsafeMutableRawPointer] = []
        for step in 0..<4800 {
            // Bursts (a random walk whose drift flips every 600 steps) empty and fill
            // both magazines again and again, so every exchange path runs.
            let allocating = (step / 600) % 2 == 0 ? 80 : 20
            if live.isEmpty || rng.below(100) < allocating {
                let p = try c.allocate()
                Cookie.write(p, size: 40, key: 7)
                live.append(p)
            } else {
                let i = rng.below(live.count)
                live.swapAt(i, live.count - 1)
                let p = live.removeLast()
                #expect(Cookie.check(p, size: 40, key: 7), "cookie at step \(step)")
                try c.free(p)
            }
            if step % 97 == 0 { q.checkInvariants() }
        }
        let s = c.statistics
        #expect(s.activeObjects == live.count)
        #expect(s.allocationHits > 0 && s.allocationMisses > 0 && s.freeHits > 0 && s.freeMisses > 0)
        #expect(s.depotExchanges > 0, "the depot was never used")
        #expect(s.refills > 0 && s.flushes > 0)
        #expect(s.cachedObjects >= 0 && s.cachedObjects <= s.perCPUBoundObjects)
        for p in live { try c.free(p) }
        q.checkInvariants()
        #expect(c.destroy() == 0)
        q.drainAll()
        q.checkInvariants()
        #expect(q.pageStatistics.pagesInUse == 0)
        #expect(q.magazineCache.activeObjects == 0)
    }

    /// In a 32 MiB arena the per-CPU budget (2 MiB) caps no magazine below
    /// `magazineBytes`; smaller arenas are in ReclaimTests.
    @Test func theBoundIsWhatStatisticsAndSlabinfoShow() throws {
        let arena = TestArena(size: 32 << 20)
        defer { arena.release() }
        let tuning = Tuning.standard
        let q = try arena.quarry(tuning: tuning)
        let small = try q.createCache(name: "small", size: 64)
        let big = try q.createCache(name: "big", size: 8000)
        let huge = try q.createCache(name: "huge", size: 20_000)
        let budget = q.reclaimStatistics.budgetBytes
        #expect(budget == q.pageStatistics.pageCount * Geometry.pageSize / tuning.perCPUShare)
        #expect(budget / Tuning.budgetMagazines >= tuning.magazineBytes)
        for cache in [small, big, huge] {
            let s = cache.statistics
            let m = tuning.magazineCapacity(objectSize: s.objectSize, budget: budget)
            #expect(s.magazineCapacity == m)
            #expect(
                s.perCPUBoundObjects
                    == ThreadPlatform<1>.maxCPUs * (2 * m + Geometry.cpuReserve) + tuning.depotFullLimit * m)
            #expect(s.perCPUBoundBytes == s.perCPUBoundObjects * s.objectSize)
        }
        #expect(small.magazineCapacity == 32 && big.magazineCapacity == 2 && huge.magazineCapacity == 0)
        var out = TextBuffer()
        q.writeSlabinfo(to: &out)
        #expect(out.text.contains("bound_kb") && out.text.contains("# per-CPU budget: "))
        #expect(out.text.contains("quarry_magazine"))
        let p = try huge.allocate()
        try huge.free(p)
        #expect(huge.statistics.cachedObjects == 0)
        #expect(small.destroy() == 0 && big.destroy() == 0 && huge.destroy() == 0)
    }

    @Test func withoutMagazinesEveryCallUsesTheSlabs() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: .noMagazines)
        let c = try q.createCache(name: "plain", size: 24)
        #expect(c.magazineCapacity == 0)
        let ps = try (0..<100).map { _ in try c.allocate() }
        for p in ps { try c.free(p) }
        let s = c.statistics
        #expect(s.allocations == 100 && s.frees == 100 && s.allocationHits == 0 && s.cachedObjects == 0)
        q.checkInvariants()
        #expect(c.destroy() == 0)
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    /// Refills are reversed, so objects still come out in slab order: the first object
    /// of each new slab is at its colour offset, in rotation.
    @Test func allocationOrderIsSlabOrder() throws {
        let arena = TestArena(size: 2 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "order", size: 900)
        let s = c.statistics
        var ps: [UInt] = []
        for _ in 0..<(s.objectsPerSlab * 12) { ps.append(UInt(bitPattern: try c.allocate())) }
        for (i, p) in ps.enumerated() where i % s.objectsPerSlab == 0 {
            #expect(Int(p & 4095) == (i / s.objectsPerSlab % s.colors) * 64)
        }
        for i in 1..<ps.count where i % s.objectsPerSlab != 0 {
            #expect(ps[i] == ps[i - 1] + UInt(s.objectSize))
        }
        for p in ps { try c.free(UnsafeMutableRawPointer(bitPattern: p)) }
        #expect(c.destroy() == 0)
    }

    // MARK: Misuse before the magazine

    @Test func doubleFreeIsCaughtBeforeTheMagazine() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: .tiny)
        let c = try q.createCache(name: "twice", size: 32)
        let p = try c.allocate()
        try c.free(p)
        #expect(throws: QuarryError.doubleFree) { try c.free(p) }
        #expect(c.statistics.count(of: .doubleFree) == 1)
        q.checkInvariants()  // would trap on an object cached twice
        let a = try c.allocate()
        let b = try c.allocate()
        #expect(a != b)
        try c.free(a)
        try c.free(b)
        #expect(throws: QuarryError.wrongCache) { try q.cacheOfCaches.free(a) }
        #expect(throws: QuarryError.interiorPointer) { try c.free(a + 8) }
        #expect(throws: QuarryError.misaligned) { try c.free(a + 3) }
        #expect(c.destroy() == 0)
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    // MARK: Drain

    @Test(arguments: [Tuning.tiny, Tuning.standard])
    func drainReturnsEveryPage(tuning: Tuning) throws {
        let arena = TestArena(size: 8 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let sizes = [8, 24, 100, 512, 3000, 20_000]
        let caches = try sizes.map { try q.createCache(name: "drain", size: $0) }
        var rng = SeededGenerator(seed: 42)
        var live: [(UnsafeMutableRawPointer, Int)] = []
        for _ in 0..<4000 {
            if live.isEmpty || rng.below(10) < 6 {
                let k = rng.below(caches.count)
                live.append((try caches[k].allocate(), k))
            } else {
                let i = rng.below(live.count)
                live.swapAt(i, live.count - 1)
                let (p, k) = live.removeLast()
                try caches[k].free(p)
            }
        }
        for (p, k) in live { try caches[k].free(p) }
        caches[0].drainCPU()
        caches[1].drainDepot()
        q.checkInvariants()
        let drainedCPU = caches[0].statistics
        #expect(
            drainedCPU.cachedObjects == drainedCPU.depotFullMagazines * drainedCPU.magazineCapacity,
            "this CPU's magazines still hold objects")
        let drainedDepot = caches[1].statistics
        #expect(drainedDepot.depotFullMagazines == 0 && drainedDepot.depotEmptyMagazines == 0)
        for c in caches { #expect(c.destroy() == 0) }
        q.drainAll()
        q.checkInvariants()
        let p = q.pageStatistics
        #expect(p.pagesInUse == 0, "pages still in use after drainAll")
        #expect(p.bump == 0, "the page allocator is not back to its first state")
    }
}
