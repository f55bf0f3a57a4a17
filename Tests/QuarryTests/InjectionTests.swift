// InjectionTests: a simulated interrupt (a nested allocate and free on the same CPU) at
// every numbered point of the fast and slow paths, with the whole-heap invariants
// checked after every outer operation; and the nolock behaviour pinned down exactly.
// Neighbours: TestHooks (the points), CPUCache (the contract under test), ThreadPlatform.

import QuarryScenarios
import Testing

@_spi(Testing) @testable import Quarry

/// Runs nested calls from the heap's test hook.
final class Injector {
    let caches: [SlabCache<ThreadPlatform<1>>]
    let sizes: [Int]
    let key: UInt = 0x5EED
    /// The point to inject at (nil: none), and whether this outer operation already did.
    var target: HookPoint? = nil
    var injectedThisOperation = false
    var nested = false
    /// The cache the outer operation is using (nested calls use it and the next one).
    var outerCache = 0
    var rng = SeededGenerator(seed: 0xB0B)
    /// Objects owned by the test (outer and nested calls), with their cache.
    var pool: [(UInt, Int)] = []
    var reached = [Int](repeating: 0, count: HookPoint.count)
    var injected = [Int](repeating: 0, count: HookPoint.count)
    var nestedAllocations = 0
    var nestedRefusals = 0
    var nestedFrees = 0
    var nestedBusy = 0
    var mismatches = 0
    var unexpected: [QuarryError] = []

    init(caches: [SlabCache<ThreadPlatform<1>>], sizes: [Int]) {
        self.caches = caches
        self.sizes = sizes
    }

    func fire(_ raw: UInt32) {
        guard !nested, let point = HookPoint(rawValue: raw) else { return }
        reached[Int(raw)] += 1
        guard point == target, !injectedThisOperation else { return }
        injectedThisOperation = true
        injected[Int(raw)] += 1
        nested = true
        defer { nested = false }
        for k in [outerCache, (outerCache + 1) % caches.count] {
            do {
                let p = try caches[k].allocate()
                Cookie.write(p, size: sizes[k], key: key)
                pool.append((UInt(bitPattern: p), k))
                nestedAllocations += 1
            } catch {
                if error == .outOfMemory { nestedRefusals += 1 } else { unexpected.append(error) }
            }
        }
        if !pool.isEmpty {
            let i = rng.below(pool.count)
            let (a, k) = pool[i]
            let p = UnsafeMutableRawPointer(bitPattern: a)!
            if !Cookie.check(p, size: sizes[k], key: key) { mismatches += 1 }
            do {
                try caches[k].free(p)
                pool.swapAt(i, pool.count - 1)
                pool.removeLast()
                nestedFrees += 1
            } catch {
                if error == .busy { nestedBusy += 1 } else { unexpected.append(error) }
            }
        }
    }

    static let hook: @convention(c) (UnsafeMutableRawPointer?, UInt32) -> Void = { context, point in
        Unmanaged<Injector>.fromOpaque(context!).takeUnretainedValue().fire(point)
    }
}

@Suite struct InjectionTests {
    static var tinyWithoutEmpties: Tuning {
        var t = Tuning.tiny
        t.depotEmptyLimit = 0
        return t
    }

    /// For every hook point, 250 random outer operations (allocate, free, and now and
    /// then a drain so that CPUs re-attach), each with one nested allocate on its cache
    /// and on another, plus one nested free, injected at that point; `checkInvariants`
    /// after every outer operation; every point must have been hit. (`.trimming` runs
    /// only when a trim is due; the configuration without empty magazines in the depot
    /// makes one due after every allocation exchange, so it must be hit there.)
    @Test(arguments: [Tuning.tiny, Self.tinyWithoutEmpties, Tuning.standard])
    func simulatedInterruptAtEveryPoint(tuning: Tuning) throws {
        let arena = TestArena(size: 16 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let sizes = [24, 200, 4096]
        let caches = try sizes.map { try q.createCache(name: "inject", size: $0) }
        let injector = Injector(caches: caches, sizes: sizes)
        q.setTestHook(TestHook(function: Injector.hook, context: Unmanaged.passUnretained(injector).toOpaque()))
        defer { q.setTestHook(nil) }
        var rng = SeededGenerator(seed: 0x1D)
        var outerOperations = 0
        for raw in 0..<UInt32(HookPoint.count) {
            injector.target = HookPoint(rawValue: raw)
            for step in 0..<250 {
                injector.injectedThisOperation = false
                let r = rng.below(100)
                let burst = (step / 60) % 2 == 0 ? 65 : 35
                if r < 3 {
                    caches[rng.below(caches.count)].drainCPU()
                } else if r < 4 {
                    caches[rng.below(caches.count)].drainDepot()
                } else if injector.pool.isEmpty || r < burst {
                    let k = rng.below(caches.count)
                    injector.outerCache = k
                    let p = try caches[k].allocate()
                    Cookie.write(p, size: sizes[k], key: injector.key)
                    injector.pool.append((UInt(bitPattern: p), k))
                } else {
                    let i = rng.below(injector.pool.count)
                    injector.pool.swapAt(i, injector.pool.count - 1)
                    let (a, k) = injector.pool.removeLast()
                    injector.outerCache = k
                    let p = UnsafeMutableRawPointer(bitPattern: a)!
                    #expect(Cookie.check(p, size: sizes[k], key: injector.key))
                    do {
                        try caches[k].free(p)
                    } catch {
                        Issue.record("outer free refused: \(error)")
                    }
                }
                outerOperations += 1
                q.checkInvariants()
            }
        }
        injector.target = nil
        for (a, k) in injector.pool { try caches[k].free(UnsafeMutableRawPointer(bitPattern: a)) }
        injector.pool.removeAll()
        q.checkInvariants()
        for (raw, count) in injector.injected.enumerated() {
            let point = HookPoint(rawValue: UInt32(raw))!
            if point == .trimming && tuning.depotEmptyLimit > 0 { continue }
            #expect(count > 0, "no simulated interrupt at \(point)")
        }
        #expect(injector.unexpected.isEmpty, "nested calls failed with \(injector.unexpected)")
        #expect(injector.mismatches == 0)
        #expect(injector.nestedAllocations > 0 && injector.nestedFrees > 0)
        print(
            "injection (\(tuning.magazineSize)-object magazines, \(tuning.depotEmptyLimit) empty in depot): \(outerOperations) outer operations, "
                + "\(injector.injected.reduce(0, +)) injections, \(injector.nestedAllocations) nested allocations, "
                + "\(injector.nestedRefusals) refused (nolock), \(injector.nestedFrees) nested frees, "
                + "\(injector.nestedBusy) busy; reached per point \(injector.reached)")
        for c in caches { #expect(c.destroy() == 0) }
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    /// A call nested inside a slow path finds the slot claimed and takes the nested
    /// path: straight to the slabs, trying the cache lock only (its CPU holds a lock).
    /// Under the depot lock the cache lock is free, so nested calls are served; under
    /// the cache lock a nested allocate is refused with `.outOfMemory` and a nested free
    /// with `.busy`, leaving the object allocated. Neither ever spins.
    @Test func nolockCallsNeverWaitAndFailCleanly() throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: .tiny)
        let c = try q.createCache(name: "nolock", size: 64)
        final class Probe {
            let cache: SlabCache<ThreadPlatform<1>>
            var point = HookPoint.depotLocked
            var armed = false
            var allocated: [UnsafeMutableRawPointer] = []
            var allocateResult: QuarryError? = nil
            var toFree: [UnsafeMutableRawPointer] = []
            var freeResults: [QuarryError?] = []
            init(_ cache: SlabCache<ThreadPlatform<1>>) { self.cache = cache }
        }
        let probe = Probe(c)
        let hook: @convention(c) (UnsafeMutableRawPointer?, UInt32) -> Void = { context, raw in
            let probe = Unmanaged<Probe>.fromOpaque(context!).takeUnretainedValue()
            guard probe.armed, raw == probe.point.rawValue else { return }
            // Only where this cache's own lock is held (not the magazine cache's).
            if probe.point == .cacheLocked && !probe.cache.state.pointee.lock.isHeldByCurrentCPU(ThreadPlatform<1>.self)
            {
                return
            }
            probe.armed = false
            do throws(QuarryError) { probe.allocated.append(try probe.cache.allocate()) } catch {
                probe.allocateResult = error
            }
            for p in probe.toFree {
                do throws(QuarryError) { try probe.cache.free(p); probe.freeResults.append(nil) } catch {
                    probe.freeResults.append(error)
                }
            }
        }
        q.setTestHook(TestHook(function: hook, context: Unmanaged.passUnretained(probe).toOpaque()))
        defer { q.setTestHook(nil) }

        // Under the depot lock (an allocate that attaches magazines and asks the depot):
        // the nested allocate and frees are served from and to the slabs.
        let extra = try (0..<6).map { _ in try c.allocate() }
        c.drainCPU()
        c.drainDepot()
        probe.toFree = Array(extra.prefix(3))
        probe.armed = true
        let outer = try c.allocate()
        #expect(probe.allocateResult == nil && probe.allocated.count == 1)
        #expect(probe.freeResults.count == 3 && probe.freeResults.allSatisfy { $0 == nil })
        #expect(c.statistics.nolockRefusals == 0)
        q.checkInvariants()

        // Under the cache lock (a refill): the nested allocate gets `.outOfMemory`, the
        // nested frees `.busy`, and nothing changes.
        c.drainCPU()
        c.drainDepot()
        probe.point = .cacheLocked
        probe.toFree = Array(extra.suffix(3))
        probe.freeResults = []
        probe.armed = true
        let outer2 = try c.allocate()
        #expect(probe.allocateResult == .outOfMemory)
        #expect(probe.freeResults.count == 3 && probe.freeResults.allSatisfy { $0 == .busy })
        #expect(c.statistics.nolockRefusals == 4)
        for p in [outer, outer2] + probe.allocated { try c.free(p) }
        // The refused objects are still allocated: freeing them now succeeds.
        for p in extra.suffix(3) { try c.free(p) }
        q.checkInvariants()
        #expect(c.statistics.activeObjects == 0)
        #expect(c.destroy() == 0)
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }
}
