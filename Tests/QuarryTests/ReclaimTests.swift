// ReclaimTests: the per-CPU budget and the reclaim, step by step: what a reclaim takes
// back, that an allocation (cache, span, nested) reclaims before it fails and a `.tryOnly`
// one does not, that other CPUs honour the flush request on their next slow path, the
// budget's bound and the magazine sizes it implies, and reclaims racing `destroy`.
// Neighbours: Quarry+Reclaim (under test), ThreadPlatform (one CPU, or threads as CPUs),
// TestThread, ReclaimStressTests (the whole workload of issue 11).

import Synchronization
import Testing

@_spi(Testing) @testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

@Suite struct ReclaimTests {
    /// Allocates and frees `rounds` rounds of `n` objects, so the CPU's magazines and
    /// the depot hold some.
    static func churn(_ c: SlabCache<ThreadPlatform<1>>, _ n: Int, rounds: Int = 2) throws {
        for _ in 0..<rounds {
            let ps = try (0..<n).map { _ in try c.allocate() }
            for p in ps { try c.free(p) }
        }
    }

    @Test func shrinkTakesBackMagazinesDepotsAndEmptySlabs() throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let caches = try [24, 200, 1000, 3000].map { try q.createCache(name: "reclaim", size: $0) }
        for c in caches { try Self.churn(c, 300) }
        let blocks = try [100, 5000, 40_000].map { try q.front.malloc($0) }
        for p in blocks { try q.front.free(p) }
        #expect(caches.contains { $0.statistics.cachedObjects > 0 && $0.statistics.depotFullMagazines > 0 })
        #expect(q.reclaimStatistics.chargedBytes > 0)
        let before = q.pageStatistics.pagesInUse
        let given = q.shrink()
        q.checkInvariants()
        q.forEachCache { c in
            let s = c.statistics
            #expect(s.cachedObjects == 0 && s.depotFullMagazines == 0 && s.depotEmptyMagazines == 0)
            #expect(s.emptySlabs == 0)
        }
        #expect(q.reclaimStatistics.chargedBytes == 0 && q.reclaimStatistics.reclaims == 1)
        #expect(given == before - q.pageStatistics.pagesInUse && given > 0)
        // What is left: the slabs holding the caches' states (class caches stay).
        #expect(q.pageStatistics.pagesInUse == q.cacheOfCaches.statistics.pages)
        for c in caches { #expect(c.destroy() == 0) }
        q.front.shrink()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    /// Objects cached in a cache's magazines and depot keep their slabs; a span that
    /// needs every page but the cache states' is served only because it reclaims them.
    @Test func aSpanReclaimsBeforeItFails() throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "pinned", size: 256)
        var ps: [UnsafeMutableRawPointer] = []
        while q.pageStatistics.pagesInUse < q.pageStatistics.pageCount / 2 { ps.append(try c.allocate()) }
        for p in ps { try c.free(p) }
        let statePages = q.cacheOfCaches.statistics.pages
        #expect(q.pageStatistics.pagesInUse > statePages, "nothing is pinned")
        let pages = q.pageStatistics.pageCount - statePages
        let reclaims = q.reclaimStatistics.reclaims
        let span = try q.front.malloc(pages * Geometry.pageSize)
        #expect(q.reclaimStatistics.reclaims == reclaims + 1)
        #expect(c.statistics.cachedObjects == 0)
        try q.front.free(span)
        q.checkInvariants()
        #expect(c.destroy() == 0)
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    /// The arena is full: cache A's objects are all out and B's sit in B's magazines and
    /// depot. A handler that lands in A's hit path (slot claimed) allocates from A: the
    /// nested path reclaims (B's objects go back, its slabs are released), leaves A's
    /// claimed slot alone, and is served; then an ordinary allocation reclaims the same way.
    @Test func aNestedAllocationReclaimsAroundTheClaimedSlot() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let a = try q.createCache(name: "a", size: 64)
        let b = try q.createCache(name: "b", size: 256)
        // B: fill the magazines, then leave empty magazines in its depot for later frees.
        let n = (2 + q.heap.pointee.tuning.depotFullLimit) * b.magazineCapacity
        try #require(n > 0)
        try Self.churn(b, n, rounds: 1)
        let bs = try (0..<n).map { _ in try b.allocate() }
        // A: every page, and no free object of A anywhere (no failure, so no reclaim yet).
        var held: [UnsafeMutableRawPointer] = []
        while q.pageStatistics.pagesInUse < q.pageStatistics.pageCount { held.append(try a.allocate()) }
        while a.statistics.cachedObjects > 0 || a.statistics.partialSlabs > 0 || a.statistics.emptySlabs > 0 {
            held.append(try a.allocate())
        }
        for p in bs { try b.free(p) }
        #expect(b.statistics.cachedObjects == n && q.pageStatistics.pagesInUse == q.pageStatistics.pageCount)
        try a.free(held.removeLast())  // into A's loaded magazine: the outer call hits
        #expect(q.reclaimStatistics.reclaims == 0)

        final class Probe {
            let cache: SlabCache<ThreadPlatform<1>>
            var armed = true
            var nested: Result<UnsafeMutableRawPointer, QuarryError>? = nil
            var cachedInside = -1
            init(_ cache: SlabCache<ThreadPlatform<1>>) { self.cache = cache }
        }
        let probe = Probe(a)
        let hook: @convention(c) (UnsafeMutableRawPointer?, UInt32) -> Void = { context, raw in
            let probe = Unmanaged<Probe>.fromOpaque(context!).takeUnretainedValue()
            guard probe.armed, raw == HookPoint.allocateClaimed.rawValue else { return }
            probe.armed = false
            do throws(QuarryError) { probe.nested = .success(try probe.cache.allocate()) } catch {
                probe.nested = .failure(error)
            }
            probe.cachedInside = CacheState.cpu(0, of: probe.cache.state).pointee.objectCount
        }
        q.setTestHook(TestHook(function: hook, context: Unmanaged.passUnretained(probe).toOpaque()))
        let outer = try a.allocate()
        q.setTestHook(nil)
        guard case .success(let inner) = probe.nested else {
            Issue.record("the nested allocation failed: \(String(describing: probe.nested))")
            return
        }
        #expect(probe.cachedInside == 1, "the reclaim drained the slot the outer call had claimed")
        #expect(q.reclaimStatistics.reclaims == 1 && b.statistics.cachedObjects == 0)
        #expect(a.statistics.count(of: .doubleFree) == 0 && outer != inner)
        held += [outer, inner]
        q.checkInvariants()

        // The arena is full again once A takes the released pages; the next allocation
        // that needs a page reclaims from the slow path and fails only then.
        var failed = false
        while !failed {
            do { held.append(try a.allocate()) } catch {
                #expect(error == .outOfMemory)
                failed = true
            }
        }
        #expect(q.reclaimStatistics.reclaims == 2)
        #expect(a.statistics.failures == 1)
        for p in held { try a.free(p) }
        q.checkInvariants()
        #expect(a.destroy() == 0 && b.destroy() == 0)
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    /// A call that starts while its CPU holds a Quarry lock (here: under the cache lock
    /// of a refill) must not reclaim: it fails as before and the reclaim count stays.
    @Test func aTryOnlyAllocationFailsWithoutReclaiming() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: .tiny)
        let c = try q.createCache(name: "locked", size: 64)
        final class Probe {
            var armed = false
            var result: QuarryError? = nil
            let front: MallocFront<ThreadPlatform<1>>
            let bytes: Int
            init(_ front: MallocFront<ThreadPlatform<1>>, _ bytes: Int) { self.front = front; self.bytes = bytes }
        }
        // Every page of the arena: some are in use, so only a reclaim could (try to) help.
        let probe = Probe(q.front, q.pageStatistics.pageCount * Geometry.pageSize)
        let hook: @convention(c) (UnsafeMutableRawPointer?, UInt32) -> Void = { context, raw in
            let probe = Unmanaged<Probe>.fromOpaque(context!).takeUnretainedValue()
            guard probe.armed, raw == HookPoint.cacheLocked.rawValue else { return }
            probe.armed = false
            do throws(QuarryError) {
                let p = try probe.front.malloc(probe.bytes)
                try probe.front.free(p)
            } catch { probe.result = error }
        }
        q.setTestHook(TestHook(function: hook, context: Unmanaged.passUnretained(probe).toOpaque()))
        probe.armed = true
        let p = try c.allocate()
        q.setTestHook(nil)
        #expect(probe.result == .outOfMemory)
        #expect(q.reclaimStatistics.reclaims == 0)
        try c.free(p)
        #expect(c.destroy() == 0)
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    /// CPU 1 fills its magazines; CPU 0's reclaim cannot touch them and posts a flush
    /// request; CPU 1's next slow path (in another cache) drains every slot of its own.
    @Test func otherCPUsHonourTheFlushRequestOnTheirNextSlowPath() throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try VirtualCPU.withCPU(0) { try arena.quarry(on: ThreadPlatform<16>.self, tuning: .standard) }
        let (a, b) = try VirtualCPU.withCPU(0) {
            (try q.createCache(name: "a", size: 64), try q.createCache(name: "b", size: 64))
        }
        final class Seen: @unchecked Sendable {
            var slotBeforeShrink = -1
            var slotAfterShrink = -1
            var slotAfterSlowPath = -1
            var honoured: UInt64 = 0
        }
        let seen = Seen()
        let barrier = SpinBarrier(parties: 2)
        nonisolated(unsafe) let (heap, first, second) = (q, a, b)
        runOnCPUs(2) { cpu in
            if cpu == 1 {
                let ps = try! (0..<20).map { _ in try first.allocate() }
                for p in ps { try! first.free(p) }
                seen.slotBeforeShrink = CacheState.cpu(1, of: first.state).pointee.objectCount
            }
            barrier.wait()
            if cpu == 0 { heap.shrink() }
            barrier.wait()
            if cpu == 1 {
                seen.slotAfterShrink = CacheState.cpu(1, of: first.state).pointee.objectCount
                let p = try! second.allocate()  // CPU 1 is detached in b: a slow path
                seen.slotAfterSlowPath = CacheState.cpu(1, of: first.state).pointee.objectCount
                seen.honoured = heap.reclaimStatistics.flushesHonoured
                try! second.free(p)
            }
        }
        #expect(seen.slotBeforeShrink >= 20)
        #expect(seen.slotAfterShrink == seen.slotBeforeShrink, "the reclaim touched another CPU's slot")
        #expect(seen.slotAfterSlowPath == 0 && seen.honoured == 1)
        VirtualCPU.withCPU(0) {
            q.checkInvariants()
            #expect(a.destroy() == 0 && b.destroy() == 0)
            q.drainAll()
            #expect(q.pageStatistics.pagesInUse == 0)
        }
    }

    /// Many caches on one CPU: the magazines made never cost more than the budget, the
    /// ones it cannot pay for are refused, and every allocation is still served.
    @Test func theBudgetBoundsEveryMagazine() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let tuning = Tuning.standard
        let q = try arena.quarry(tuning: tuning)
        let budget = q.reclaimStatistics.budgetBytes
        #expect(budget == q.pageStatistics.pageCount * Geometry.pageSize / tuning.perCPUShare)
        var caches: [SlabCache<ThreadPlatform<1>>] = []
        var ps: [(UnsafeMutableRawPointer, Int)] = []
        for i in 0..<60 {
            let c = try q.createCache(name: "budget", size: 64 + 8 * i)
            #expect(c.magazineCapacity == tuning.magazineCapacity(objectSize: c.objectSize, budget: budget))
            #expect(c.magazineCapacity * c.objectSize <= budget / Tuning.budgetMagazines)
            caches.append(c)
            for _ in 0..<3 { ps.append((try c.allocate(), i)) }
            #expect(q.reclaimStatistics.chargedBytes <= budget)
        }
        let r = q.reclaimStatistics
        #expect(r.refusedMagazines > 0 && r.highWaterBytes <= budget && r.chargedBytes > budget / 2)
        q.checkInvariants()
        for (p, i) in ps { try caches[i].free(p) }
        for c in caches { #expect(c.destroy() == 0) }
        q.drainAll()
        #expect(q.reclaimStatistics.chargedBytes == 0 && q.pageStatistics.pagesInUse == 0)
    }

    /// The magazine sizes the budget implies (docs/design.md, Memory bound).
    @Test func magazineCapacityFollowsTheArena() throws {
        let t = Tuning.standard
        for (size, expected) in [
            (64 << 10, [0, 0, 0, 0]), (1 << 20, [15, 0, 0, 0]), (8 << 20, [32, 7, 1, 0]),
            (64 << 20, [32, 16, 4, 1]),
        ] {
            let arena = TestArena(size: size)
            defer { arena.release() }
            let q = try arena.quarry(tuning: t)
            let budget = q.reclaimStatistics.budgetBytes
            let capacities = [64, 1024, 4096, 16384].map { t.magazineCapacity(objectSize: $0, budget: budget) }
            #expect(capacities == expected, "arena \(size): budget \(budget), capacities \(capacities)")
        }
        #expect(Tuning.noMagazines.magazineCapacity(objectSize: 8, budget: 1 << 30) == 0)
    }

    /// One CPU reclaims in a loop while another creates, uses and destroys caches:
    /// `destroy` unregisters before it drains, so the walk never meets a dying cache.
    @Test func reclaimsRaceDestroy() throws {
        let arena = TestArena(size: 8 << 20)
        defer { arena.release() }
        let q = try VirtualCPU.withCPU(0) { try arena.quarry(on: ThreadPlatform<16>.self, tuning: .tiny) }
        nonisolated(unsafe) let heap = q
        let stop = Atomic<Bool>(false)
        let shrinks = Atomic<Int>(0)
        let leaks = Atomic<Int>(0)
        runOnCPUs(2) { cpu in
            if cpu == 0 {
                for round in 0..<300 {
                    let c = try! heap.createCache(name: "dying", size: 16 + round % 200)
                    let ps = try! (0..<40).map { _ in try c.allocate() }
                    for p in ps { try! c.free(p) }
                    leaks.wrappingAdd(c.destroy(), ordering: .relaxed)
                }
                stop.store(true, ordering: .releasing)
            } else {
                while !stop.load(ordering: .acquiring) {
                    heap.shrink()
                    shrinks.wrappingAdd(1, ordering: .relaxed)
                }
            }
        }
        #expect(shrinks.load(ordering: .relaxed) > 0 && leaks.load(ordering: .relaxed) == 0)
        VirtualCPU.withCPU(0) {
            q.checkInvariants()
            q.drainAll()
            #expect(q.pageStatistics.pagesInUse == 0 && q.cacheCount == internalCaches)
        }
    }
}
