// BulkTests: `allocate(into:)` and `free(_: UnsafeBufferPointer)`: every batch size
// against the magazines, one cache-lock section per batch, all or nothing, misuse in
// the middle of a batch (refused, counted, the rest freed), nested bulk calls at every
// hook point, and bulk calls on threads with timer interrupts doing bulk calls too.
// Neighbours: SlabCache+Bulk (under test), InjectionTests (the hook technique),
// TestThread (the threads and timer), Handoff, SafetyTests (the one-object misuse cases).

import QuarryScenarios
import Synchronization
import Testing

@_spi(Testing) @testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

/// A batch buffer of `count` entries (host memory, freed by `release`).
struct Batch {
    let buffer: UnsafeMutableBufferPointer<UnsafeMutableRawPointer?>

    init(_ count: Int) {
        buffer = .allocate(capacity: count)
        buffer.initialize(repeating: nil)
    }

    var readOnly: UnsafeBufferPointer<UnsafeMutableRawPointer?> { UnsafeBufferPointer(buffer) }
    var objects: [UnsafeMutableRawPointer] { buffer.compactMap { $0 } }
    func release() { buffer.deallocate() }
}

/// Counts the heap's test-hook points (lock sections) while installed.
final class PointCounter {
    var counts = [Int](repeating: 0, count: HookPoint.count)
    static let hook: @convention(c) (UnsafeMutableRawPointer?, UInt32) -> Void = { context, point in
        Unmanaged<PointCounter>.fromOpaque(context!).takeUnretainedValue().counts[Int(point)] += 1
    }
    subscript(_ point: HookPoint) -> Int { counts[Int(point.rawValue)] }
}

@Suite struct BulkTests {
    /// Every batch size against empty, part-full and full magazines, under the three
    /// tunings: distinct aligned objects of the cache, cookies intact, then freed in
    /// bulk (and some one by one); invariants after every call; every page back.
    @Test(arguments: [Tuning.standard, Tuning.tiny, Tuning.noMagazines])
    func everyBatchSize(tuning: Tuning) throws {
        let arena = TestArena(size: 16 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let c = try q.createCache(name: "bulk", size: 48)
        let key: UInt = 0xB01C
        var rng = SeededGenerator(seed: 0xB17C)
        for n in [1, 2, 3, 31, 32, 33, 64, 65, 100, 300, 1000] {
            for round in 0..<3 {
                let batch = Batch(n)
                defer { batch.release() }
                #expect(try c.allocate(into: batch.buffer) == n)
                q.checkInvariants()
                let objects = batch.objects
                #expect(objects.count == n && Set(objects).count == n, "n \(n): distinct, none nil")
                for p in objects {
                    #expect(UInt(bitPattern: p) % 8 == 0)
                    guard case .success = c.locate(UInt(bitPattern: p)) else {
                        Issue.record("not an object of the cache")
                        continue
                    }
                    #expect(c.isUserHeld(UInt(bitPattern: p)))
                    Cookie.write(p, size: 48, key: key)
                }
                #expect(c.activeObjects == n)
                for p in objects { #expect(Cookie.check(p, size: 48, key: key)) }
                // Round 1 frees a few one by one first, so the batch has nil holes.
                if round == 1 {
                    for i in stride(from: 0, to: n, by: 7) {
                        try c.free(batch.buffer[i])
                        batch.buffer[i] = nil
                    }
                }
                try c.free(batch.readOnly)
                q.checkInvariants()
                #expect(c.activeObjects == 0)
                if rng.below(4) == 0 { c.drainCPU() }
            }
        }
        #expect(c.validate() == ValidationReport())
        #expect(c.destroy() == 0)
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    /// A batch the loaded magazine holds is served by the hit part (hits, no lock); a
    /// bigger one empties the magazines and takes the rest from the slabs under one
    /// acquisition of the cache lock; a bulk free takes one too.
    @Test func oneCacheLockSectionPerBatch() throws {
        let arena = TestArena(size: 8 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "sections", size: 64)
        let cap = c.magazineCapacity
        #expect(cap == 32)
        let counter = PointCounter()
        q.setTestHook(TestHook(function: PointCounter.hook, context: Unmanaged.passUnretained(counter).toOpaque()))
        defer { q.setTestHook(nil) }
        // One single allocation attaches the CPU and refills: cap - 1 rounds stay loaded.
        let first = try c.allocate()
        let s0 = c.statistics
        let small = Batch(20)
        defer { small.release() }
        let locked0 = counter[.cacheLocked]
        try c.allocate(into: small.buffer)
        var s = c.statistics
        #expect(s.allocationHits == s0.allocationHits + 20 && s.refills == s0.refills)
        #expect(counter[.cacheLocked] == locked0, "the hit part takes no lock")
        // 11 rounds left: a batch of 1000 takes them and 989 from the slabs, one section.
        let big = Batch(1000)
        defer { big.release() }
        try c.allocate(into: big.buffer)
        s = c.statistics
        #expect(counter[.cacheLocked] == locked0 + 1, "one cache lock section for the batch")
        #expect(s.allocationMisses == s0.allocationMisses + 1000 && s.refills == s0.refills + 1)
        #expect(s.cachedObjects == 0 && s.activeObjects == 1021)
        // Freeing 1000: 2 * cap into the magazines, the rest in one section.
        try c.free(big.readOnly)
        s = c.statistics
        #expect(counter[.cacheLocked] == locked0 + 2, "one cache lock section for the free")
        #expect(s.cachedObjects == 2 * cap && s.flushes == s0.flushes + 1 && s.activeObjects == 21)
        try c.free(small.readOnly)
        try c.free(first)
        q.checkInvariants()
        #expect(c.activeObjects == 0)
    }

    /// All or nothing: a batch the arena cannot hold throws `.outOfMemory`, leaves every
    /// entry nil, and gives back everything it took (the slot's rounds too); a batch
    /// that fits then succeeds.
    @Test(arguments: [Tuning.standard, Tuning.tiny, Tuning.noMagazines])
    func allOrNothingWhenTheArenaRunsOut(tuning: Tuning) throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let c = try q.createCache(name: "oom", size: 1024)
        // Rounds in the magazines before the failing batch.
        var kept: [UnsafeMutableRawPointer] = []
        for _ in 0..<6 { kept.append(try c.allocate()) }
        for p in kept.suffix(3) { try c.free(p) }
        kept.removeLast(3)
        let before = c.statistics
        let pagesBefore = q.pageStatistics.pagesInUse
        let huge = Batch(4000)
        defer { huge.release() }
        #expect(throws: QuarryError.outOfMemory) { try c.allocate(into: huge.buffer) }
        #expect(huge.buffer.allSatisfy { $0 == nil })
        let after = c.statistics
        #expect(after.activeObjects == before.activeObjects && after.cachedObjects == before.cachedObjects)
        #expect(after.failures == before.failures + 1)
        q.checkInvariants()
        #expect(c.validate() == ValidationReport())
        #expect(q.pageStatistics.pagesInUse >= pagesBefore)
        let fits = Batch(200)
        defer { fits.release() }
        try c.allocate(into: fits.buffer)
        #expect(Set(fits.objects).count == 200)
        try c.free(fits.readOnly)
        for p in kept { try c.free(p) }
        q.checkInvariants()
        #expect(c.destroy() == 0)
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    /// A free-list link overwritten a few objects into the slab section: the bulk
    /// allocation reports it once, gives back the objects it took before it, and
    /// throws `.corruptFreeList` with every entry nil.
    @Test func corruptLinkInTheSlabSection() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "links", size: 48)
        let p = try c.allocate()
        try c.free(p)
        c.drainCPU()  // a magazine's worth of objects back on their slab's free list
        guard case .success(let page) = c.locate(UInt(bitPattern: p)) else { Issue.record("locate"); return }
        let slab = Slab(page: page, map: q.heap.pointee.map, arena: q.heap.pointee.arena)
        let g = c.geometry
        let head = q.heap.pointee.map[page].freeHead
        let carved = q.heap.pointee.map[page].carved
        // The third object on the list gets a link that leaves the slab.
        var victim = head
        for _ in 0..<2 {
            victim = FreeLink.read(
                from: victim, g, secret: c.state.pointee.secret,
                objects: slab.objectsStart, carved: carved)!
        }
        let link = UnsafeMutableRawPointer(bitPattern: victim + UInt(g.linkOffset))!
        link.storeBytes(of: link.load(fromByteOffset: 6, as: UInt8.self) ^ 0x40, toByteOffset: 6, as: UInt8.self)
        let batch = Batch(10)
        defer { batch.release() }
        #expect(throws: QuarryError.corruptFreeList) { try c.allocate(into: batch.buffer) }
        #expect(batch.buffer.allSatisfy { $0 == nil })
        let s = c.statistics
        #expect(s.count(of: .corruptFreeList) == 1 && s.activeObjects == 0 && s.failures == 1)
        #expect(!c.isUserHeld(head), "the objects taken before the bad link went back")
        #expect(s.quarantinedSlabs == 1, "the slab with the bad link is quarantined")
        #expect(c.validate().total == 0, "its free objects are counted as leaked, not lost")
    }

    /// Misuse in the middle of a batch, in the hit part (magazine room) and in the slab
    /// section (past two magazines): each bad pointer is refused with its reason,
    /// counted once, left untouched, and the rest of the batch is freed. The first
    /// error is thrown.
    @Test func misuseInTheMiddleOfABatch() throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let a = try q.createCache(name: "a", size: 40)
        let b = try q.createCache(name: "b", size: 40)
        let key: UInt = 0xBAD
        let good = Batch(150)
        defer { good.release() }
        try a.allocate(into: good.buffer)
        let objects = good.objects
        for p in objects { Cookie.write(p, size: 40, key: key) }
        // In its slab: freed, then the CPU drained (nothing is allocated after that,
        // so no refill can hand it out again).
        var spare: [UnsafeMutableRawPointer] = []
        for _ in 0..<21 { spare.append(try a.allocate()) }
        let inSlab = spare.removeLast()
        try a.free(inSlab)
        a.drainCPU()
        // In the per-CPU layer (cached mark): the CPU attaches fresh magazines, so the
        // batch starts in the hit part with cap - 1 rounds of room.
        let cached = spare.removeLast()
        try a.free(cached)
        let other = try b.allocate()
        Cookie.write(other, size: 40, key: key)
        var outside = UInt64(0)
        // The batch: the 150 objects in order, with bad entries inserted.
        var entries: [UnsafeMutableRawPointer?] = []
        var expected: [QuarryError: Int] = [:]
        func bad(_ p: UnsafeMutableRawPointer?, _ e: QuarryError?) {
            entries.append(p)
            if let e { expected[e, default: 0] += 1 }
        }
        for (i, p) in objects.enumerated() {
            entries.append(p)
            switch i {
            case 1: bad(objects[2] + 8, .interiorPointer)  // first error of the batch
            case 3: bad(objects[0], .doubleFree)  // twice in the batch, hit part
            case 5: bad(other, .wrongCache)
            case 7: bad(nil, nil)
            case 9: bad(UnsafeMutableRawPointer(&outside), .outsideArena)
            case 11: bad(objects[12] + 1, .misaligned)
            case 13: bad(cached, .doubleFree)  // already in a magazine
            case 100: bad(objects[90], .doubleFree)  // twice in the batch, slab section
            case 105: bad(inSlab, .doubleFree)  // already in its slab
            case 110: bad(objects[111] + 16, .interiorPointer)
            default: break
            }
        }
        let before = a.statistics
        let otherBefore = b.statistics
        try entries.withUnsafeBufferPointer { entries in
            #expect(throws: QuarryError.interiorPointer) { try a.free(entries) }
        }
        let after = a.statistics
        #expect(after.freeHits - before.freeHits == UInt64(a.magazineCapacity - 1), "the batch began in the hit part")
        for (e, n) in expected {
            #expect(after.count(of: e) - before.count(of: e) == UInt64(n), "\(e)")
        }
        #expect(after.errors - before.errors == UInt64(expected.values.reduce(0, +)))
        #expect(after.frees - before.frees == 150 && after.activeObjects == spare.count)
        #expect(after.flushes == before.flushes + 1, "the batch reached the slab section")
        #expect(b.statistics.activeObjects == otherBefore.activeObjects && b.isUserHeld(UInt(bitPattern: other)))
        #expect(Cookie.check(other, size: 40, key: key), "a refused object is left untouched")
        q.checkInvariants()
        #expect(a.validate() == ValidationReport() && b.validate() == ValidationReport())
        try b.free(other)
        for p in spare { try a.free(p) }
        #expect(a.destroy() == 0 && b.destroy() == 0)
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    /// A simulated interrupt at every hook point runs a nested bulk allocate and a
    /// nested bulk free on the same CPU, while the outer calls are bulk and single
    /// calls; invariants after every outer call. Where the CPU holds a lock the nested
    /// calls fail cleanly (`.outOfMemory`, all entries nil; `.busy`, the object still
    /// the caller's), and everything else is served.
    @Test(arguments: [Tuning.tiny, Tuning.standard])
    func nestedBulkCallsAtEveryHookPoint(tuning: Tuning) throws {
        let arena = TestArena(size: 16 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let sizes = [24, 200]
        let caches = try sizes.map { try q.createCache(name: "nested-bulk", size: $0) }
        let injector = BulkInjector(caches: caches, sizes: sizes)
        defer { injector.release() }
        q.setTestHook(TestHook(function: BulkInjector.hook, context: Unmanaged.passUnretained(injector).toOpaque()))
        defer { q.setTestHook(nil) }
        var rng = SeededGenerator(seed: 0xB0B5)
        let outer = Batch(80)
        defer { outer.release() }
        for raw in 0..<UInt32(HookPoint.count) {
            injector.target = HookPoint(rawValue: raw)
            for _ in 0..<120 {
                injector.injectedThisOperation = false
                let k = rng.below(caches.count)
                injector.outerCache = k
                let r = rng.below(100)
                if injector.pool.isEmpty || r < 45 {
                    let n = 1 + rng.below(r < 10 ? 80 : 8)
                    let slice = UnsafeMutableBufferPointer(rebasing: outer.buffer[0..<n])
                    try caches[k].allocate(into: slice)
                    for p in slice { injector.adopt(p!, k) }
                } else if r < 90 {
                    let n = min(injector.pool.count, 1 + rng.below(r < 55 ? 70 : 6))
                    let picked = injector.take(n, cache: k)
                    try picked.withUnsafeBufferPointer { try caches[k].free($0) }
                } else if let (p, j) = injector.pool.popLast() {
                    #expect(Cookie.check(UnsafeMutableRawPointer(bitPattern: p)!, size: sizes[j], key: injector.key))
                    try caches[j].free(UnsafeMutableRawPointer(bitPattern: p)!)
                }
                q.checkInvariants()
            }
        }
        q.setTestHook(nil)
        #expect(injector.nestedAllocated > 0 && injector.nestedFreed > 0)
        #expect(injector.unexpected.isEmpty, "\(injector.unexpected)")
        #expect(injector.mismatches == 0)
        // The nolock points refused some nested calls, and each refusal was clean.
        #expect(injector.refusedAllocations > 0 && injector.busyFrees > 0)
        #expect(injector.dirtyRefusals == 0)
        for (p, k) in injector.pool { try caches[k].free(UnsafeMutableRawPointer(bitPattern: p)!) }
        q.checkInvariants()
        for c in caches { #expect(c.destroy() == 0) }
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    /// Two CPUs (threads) run bulk allocations and bulk frees of random lengths,
    /// handing objects to each other, while SIGALRM handlers on both run bulk calls of
    /// their own on the interrupted CPU. Cookies stay intact and every page comes back.
    @Test func bulkCallsOnTwoCPUsWithTimerInterrupts() throws {
        let arena = TestArena(size: 32 << 20)
        defer { arena.release() }
        let q = try VirtualCPU.withCPU(0) { try arena.quarry(on: ThreadPlatform<16>.self, tuning: .tiny) }
        let shared = try StressShared(quarry: q, sizes: [64])
        let work = UnsafeMutablePointer<BulkInterruptWork>.allocate(capacity: ThreadPlatform<16>.maxCPUs)
        for i in 0..<ThreadPlatform<16>.maxCPUs {
            (work + i).initialize(to: BulkInterruptWork(cache: shared.caches[0], key: shared.key))
        }
        defer {
            for i in 0..<ThreadPlatform<16>.maxCPUs { work[i].buffer.deallocate() }
            work.deinitialize(count: ThreadPlatform<16>.maxCPUs)
            work.deallocate()
        }
        nonisolated(unsafe) let workArray = work
        let cpus = 2
        let seed = UInt64.random(in: 1...UInt64.max)
        runOnCPUsWithTimer(
            cpus, microseconds: 100,
            warmUp: { cpu in
                let w = workArray + cpu
                w.pointee.run()
                VirtualCPU.setInterruptBody(BulkInterruptWork.body, context: UnsafeMutableRawPointer(w))
            }
        ) { cpu in
            let w = workArray + cpu
            let cache = shared.caches[0]
            var rng = SeededGenerator(seed: seed &+ UInt64(cpu))
            let batch = Batch(100)
            defer { batch.release() }
            var live: [UInt] = []
            for _ in 0..<3000 {
                let n = 1 + rng.below(100)
                if live.count < 400 && rng.below(2) == 0 {
                    let slice = UnsafeMutableBufferPointer(rebasing: batch.buffer[0..<n])
                    do throws(QuarryError) {
                        try cache.allocate(into: slice)
                        for p in slice {
                            Cookie.write(p!, size: 64, key: shared.key)
                            if rng.below(8) == 0, shared.handoff.push(.init(address: UInt(bitPattern: p), cache: 0)) {
                                continue
                            }
                            live.append(UInt(bitPattern: p))
                        }
                    } catch {
                        shared.unexpected.wrappingAdd(1, ordering: .relaxed)
                    }
                } else {
                    var m = 0
                    while m < n, let item = shared.handoff.pop() {
                        batch.buffer[m] = UnsafeMutableRawPointer(bitPattern: item.address)
                        m += 1
                    }
                    while m < n, let a = live.popLast() {
                        batch.buffer[m] = UnsafeMutableRawPointer(bitPattern: a)
                        m += 1
                    }
                    for p in batch.buffer[0..<m] where !Cookie.check(p!, size: 64, key: shared.key) {
                        shared.mismatches.wrappingAdd(1, ordering: .relaxed)
                    }
                    do throws(QuarryError) {
                        try cache.free(UnsafeBufferPointer(rebasing: batch.buffer[0..<m]))
                    } catch {
                        shared.unexpected.wrappingAdd(1, ordering: .relaxed)
                    }
                }
            }
            VirtualCPU.setInterruptBody(nil, context: nil)
            for a in live { shared.free(a, 0) }
            w.pointee.releaseAll()
        }
        let handlerCalls = (0..<cpus).reduce(0) { $0 + work[$1].calls }
        let handlerFailures = (0..<cpus).reduce(0) { $0 + work[$1].failures + work[$1].mismatches }
        let pages = shared.finish()
        print("bulk with interrupts: \(handlerCalls) bulk calls in handlers, seed \(seed)")
        #expect(handlerCalls > 0, "no bulk call ran in an interrupt handler")
        #expect(handlerFailures == 0)
        #expect(shared.mismatches.load(ordering: .relaxed) == 0 && shared.unexpected.load(ordering: .relaxed) == 0)
        #expect(pages == 0)
    }
}

/// Runs a nested bulk allocate and bulk free from the heap's test hook (see Injector
/// in InjectionTests) and checks that every refusal left nothing changed.
final class BulkInjector {
    let caches: [SlabCache<ThreadPlatform<1>>]
    let sizes: [Int]
    let key: UInt = 0xB7C
    var target: HookPoint? = nil
    var injectedThisOperation = false
    var nested = false
    var outerCache = 0
    /// Objects the test owns (outer and nested), with their cache.
    var pool: [(UInt, Int)] = []
    let nestedBatch = Batch(4)
    var nestedAllocated = 0
    var nestedFreed = 0
    var refusedAllocations = 0
    var busyFrees = 0
    var dirtyRefusals = 0
    var mismatches = 0
    var unexpected: [QuarryError] = []

    init(caches: [SlabCache<ThreadPlatform<1>>], sizes: [Int]) {
        self.caches = caches
        self.sizes = sizes
    }

    func release() { nestedBatch.release() }

    func adopt(_ p: UnsafeMutableRawPointer, _ k: Int) {
        Cookie.write(p, size: sizes[k], key: key)
        pool.append((UInt(bitPattern: p), k))
    }

    /// Up to `n` pooled objects of cache `k`, removed from the pool, cookies checked.
    func take(_ n: Int, cache k: Int) -> [UnsafeMutableRawPointer?] {
        var picked: [UnsafeMutableRawPointer?] = []
        var i = pool.count - 1
        while i >= 0 && picked.count < n {
            if pool[i].1 == k {
                let p = UnsafeMutableRawPointer(bitPattern: pool[i].0)!
                if !Cookie.check(p, size: sizes[k], key: key) { mismatches += 1 }
                picked.append(p)
                pool.remove(at: i)
            }
            i -= 1
        }
        return picked
    }

    func fire(_ raw: UInt32) {
        guard !nested, let point = HookPoint(rawValue: raw), point == target, !injectedThisOperation else { return }
        injectedThisOperation = true
        nested = true
        defer { nested = false }
        let k = outerCache
        let c = caches[k]
        let batch = nestedBatch.buffer
        do {
            try c.allocate(into: batch)
            for p in batch { adopt(p!, k) }
            nestedAllocated += batch.count
        } catch {
            if error == .outOfMemory { refusedAllocations += 1 } else { unexpected.append(error) }
            if batch.contains(where: { $0 != nil }) { dirtyRefusals += 1 }
        }
        let picked = take(3, cache: k)
        guard !picked.isEmpty else { return }
        do throws(QuarryError) {
            try picked.withUnsafeBufferPointer { (entries) throws(QuarryError) in try c.free(entries) }
            nestedFreed += picked.count
        } catch {
            if error == .busy { busyFrees += 1 } else { unexpected.append(error) }
            // Every object the free could not take is still the caller's: back to the pool.
            for p in picked where c.isUserHeld(UInt(bitPattern: p)) {
                if !Cookie.check(p!, size: sizes[k], key: key) { dirtyRefusals += 1 }
                pool.append((UInt(bitPattern: p), k))
            }
        }
    }

    static let hook: @convention(c) (UnsafeMutableRawPointer?, UInt32) -> Void = { context, point in
        Unmanaged<BulkInjector>.fromOpaque(context!).takeUnretainedValue().fire(point)
    }
}

/// What a timer interrupt does on one CPU: a bulk allocation of 4, cookies written,
/// and a bulk free of the 4 the previous interrupt kept (cookies checked). Signal-safe:
/// Quarry and memory allocated before the timer starts only.
struct BulkInterruptWork {
    let cache: SlabCache<ThreadPlatform<16>>
    let key: UInt
    let buffer: UnsafeMutableBufferPointer<UnsafeMutableRawPointer?>
    var held = 0
    var calls = 0
    var failures = 0
    var mismatches = 0

    init(cache: SlabCache<ThreadPlatform<16>>, key: UInt) {
        self.cache = cache
        self.key = key
        buffer = .allocate(capacity: 8)
        buffer.initialize(repeating: nil)
    }

    mutating func run() {
        releaseAll()
        let next = UnsafeMutableBufferPointer(rebasing: buffer[0..<4])
        do throws(QuarryError) {
            try cache.allocate(into: next)
            for p in next { Cookie.write(p!, size: 64, key: key) }
            held = 4
            calls += 1
        } catch {
            failures += 1
        }
    }

    mutating func releaseAll() {
        guard held > 0 else { return }
        for p in buffer[0..<held] where !Cookie.check(p!, size: 64, key: key) { mismatches += 1 }
        do throws(QuarryError) {
            try cache.free(UnsafeBufferPointer(rebasing: buffer[0..<held]))
            calls += 1
        } catch {
            failures += 1
        }
        held = 0
    }

    static let body: @convention(c) (UnsafeMutableRawPointer?) -> Void = { context in
        context!.assumingMemoryBound(to: BulkInterruptWork.self).pointee.run()
    }
}

/// Everything the threads of a bulk test share (BulkTests). The Quarry handles are pointers
/// into the arena; the allocator itself is what makes concurrent use safe.
final class StressShared: @unchecked Sendable {
    let quarry: Quarry<ThreadPlatform<16>>
    let caches: [SlabCache<ThreadPlatform<16>>]
    let sizes: [Int]
    let handoff = Handoff(capacity: 4096)
    let key = UInt.random(in: 1...UInt.max)
    let mismatches = Atomic<Int>(0)
    let unexpected = Atomic<Int>(0)

    init(quarry: Quarry<ThreadPlatform<16>>, sizes: [Int]) throws {
        self.quarry = quarry
        self.sizes = sizes
        caches = try VirtualCPU.withCPU(0) {
            try sizes.map { size throws(QuarryError) in try quarry.createCache(name: "stress", size: size) }
        }
    }

    func free(_ address: UInt, _ cache: Int) {
        let p = UnsafeMutableRawPointer(bitPattern: address)!
        if !Cookie.check(p, size: sizes[cache], key: key) { mismatches.wrappingAdd(1, ordering: .relaxed) }
        do throws(QuarryError) {
            try caches[cache].free(p)
        } catch {
            unexpected.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// After the threads are joined: free what is left in the handoff, check, destroy,
    /// drain, and return the pages still in use (0 expected).
    func finish() -> Int {
        VirtualCPU.withCPU(0) {
            while let item = handoff.pop() { free(item.address, item.cache) }
            quarry.checkInvariants()
            for c in caches where c.destroy() != 0 { unexpected.wrappingAdd(1, ordering: .relaxed) }
            quarry.drainAll()
            quarry.checkInvariants()
            return quarry.pageStatistics.pagesInUse
        }
    }
}
