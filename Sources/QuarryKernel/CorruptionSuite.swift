// CorruptionSuite: slub_kunit-style tests on bare metal: every misuse kind through the
// per-CPU path, and corruption on purpose (a flipped free link, a write past an object,
// a write after free, a double free, an interior free), each expecting an exact number
// and kind of reports (error hook and counters), then zero from `validate()` after repair;
// then the survival scenario (Tests/Scenarios): each kind of free-link damage followed by
// many allocations, the cache serving on with its damaged slab quarantined.
// Neighbours: AllocatorSuite.swift (gives it its own heap), Tests/QuarryTests/SafetyTests.swift
// and CorruptionSurvivalTests.swift (the same scenarios on the host), TestHarness.swift (reports).

@_spi(Testing) import Quarry

enum CorruptionSuite {
    /// What the error hook saw. Runs on the boot CPU only; the hook never allocates.
    nonisolated(unsafe) static var calls = 0
    nonisolated(unsafe) static var last: UInt8 = 0
    nonisolated(unsafe) static var lastAddress: UInt = 0

    static let hook: ErrorHook = { error, _, address in
        CorruptionSuite.calls += 1
        CorruptionSuite.last = error
        CorruptionSuite.lastAddress = address
    }

    static func reset() {
        calls = 0
        last = 0
        lastAddress = 0
    }

    /// One report of `error` at `address` since the last reset, and nothing else.
    static func reportedOnce(_ error: QuarryError) -> Bool { calls == 1 && last == error.rawValue }

    /// Allocations after each kind of damage in `survival`.
    static let survivalAllocations = 100_000

    /// Runs every scenario on one heap over `[base, base + size)`; a corrupted free list
    /// quarantines its slab, so the heap's invariants hold after every scenario.
    static func run(base: UnsafeMutableRawPointer, size: Int) {
        let q: KernelQuarry
        do throws(QuarryError) {
            q = try KernelQuarry.initialize(base: base, size: size)
        } catch {
            TestHarness.fail("safety: initialize") { Console.print(error.name) }
            return
        }
        q.setErrorHook(hook)
        misuseThroughPerCPUPath(q, neverUsed: base + (size - 4096))
        flippedLink(q)
        writePastObject(q)
        writeAfterFree(q)
        randomizedCarving(q)
        q.setErrorHook(nil)
        survival(q)
        q.drainAll()
        q.checkInvariants()
        TestHarness.checkEqual("safety: validate finds nothing in the whole heap", q.validate() == nil ? 0 : 1, 0)
        TestHarness.pass("safety: heap invariants hold after every scenario")
    }

    static func misuseThroughPerCPUPath(_ q: KernelQuarry, neverUsed: UnsafeMutableRawPointer) {
        guard let a = try? q.createCache(name: "safety-a", size: 40),
              let b = try? q.createCache(name: "safety-b", size: 40),
              let pa = try? a.allocate(), let pb = try? b.allocate(), let gone = try? a.allocate(),
              let warm = try? a.allocate()
        else {
            TestHarness.fail("safety: misuse set-up") { Console.print("allocation failed") }
            return
        }
        _ = try? a.free(gone)
        _ = try? a.free(warm)
        let cachedBefore = a.statistics.cachedObjects
        var local: UInt64 = 0
        func refused(_ name: StaticString, _ expected: QuarryError, _ pointer: UnsafeMutableRawPointer) {
            reset()
            let countBefore = a.statistics.count(of: expected)
            do throws(QuarryError) {
                try a.free(pointer)
                TestHarness.fail(name) { Console.print("accepted") }
            } catch {
                TestHarness.check(name, error == expected && reportedOnce(expected)
                                    && lastAddress == UInt(bitPattern: pointer)
                                    && a.statistics.count(of: expected) == countBefore + 1
                                    && a.statistics.cachedObjects == cachedBefore,
                                  "wrong error, report or count, or the object reached a magazine")
            }
        }
        withUnsafeMutablePointer(to: &local) { p in
            refused("safety: outside the arena: refused, hooked once, counted", .outsideArena, UnsafeMutableRawPointer(p))
        }
        refused("safety: free page: refused, hooked once, counted", .freePage, neverUsed)
        refused("safety: interior pointer: refused, hooked once, counted", .interiorPointer, pa + 8)
        refused("safety: misaligned: refused, hooked once, counted", .misaligned, pa + 4)
        refused("safety: wrong cache: refused, hooked once, counted", .wrongCache, pb)
        refused("safety: double free: refused, hooked once, counted", .doubleFree, gone)
        TestHarness.checkEqual("safety: validate after misuse finds nothing", a.validate().total, 0)
        _ = try? a.free(pa)
        _ = try? b.free(pb)
        TestHarness.checkEqual("safety: misuse caches destroyed", a.destroy() + b.destroy(), 0)
    }

    static func flipByte(_ p: UnsafeMutableRawPointer) {
        let byte = MemoryLayout<UInt>.size - 2  // a high byte: the decoded link leaves the slab
        p.storeBytes(of: p.load(fromByteOffset: byte, as: UInt8.self) ^ 0x40, toByteOffset: byte, as: UInt8.self)
    }

    static func flippedLink(_ q: KernelQuarry) {
        guard let c = try? q.createCache(name: "safety-link", size: 48), let p = try? c.allocate() else {
            TestHarness.fail("safety: link set-up") { Console.print("allocation failed") }
            return
        }
        _ = try? c.free(p)
        c.drainCPU()
        guard let head = c.freeListHead(ofSlabHolding: p) else {
            TestHarness.fail("safety: link set-up") { Console.print("no free list") }
            return
        }
        reset()
        flipByte(head)
        let found = c.validate()
        TestHarness.check("safety: flipped link: validate counts exactly one corrupt list",
                          found.corruptFreeLists == 1 && found.total == 1 && calls == 0, "wrong count")
        flipByte(head)
        TestHarness.checkEqual("safety: flipped link repaired: validate finds nothing", c.validate().total, 0)
        flipByte(head)
        var refusedWith: QuarryError? = nil
        do throws(QuarryError) { _ = try c.allocate() } catch { refusedWith = error }
        TestHarness.check("safety: flipped link: allocation refused, hooked once, counted",
                          refusedWith == .corruptFreeList && reportedOnce(.corruptFreeList)
                            && c.statistics.count(of: .corruptFreeList) == 1, "wrong report")
        // The slab is quarantined (its free objects leaked on purpose, counted), the
        // cache serves on from other slabs, and everything is consistent again.
        var served = 0
        var objects = InlineArray<64, UInt>(repeating: 0)
        while served < 64, let o = try? c.allocate() {
            objects[served] = UInt(bitPattern: o)
            served += 1
        }
        let s = c.statistics
        TestHarness.check("safety: flipped link: slab quarantined, its objects counted as leaked, 64 served after",
                          served == 64 && s.quarantinedSlabs == 1 && s.leakedObjects > 0 && calls == 1, "not so")
        TestHarness.checkEqual("safety: flipped link: validate then finds nothing", c.validate().total, 0)
        q.checkInvariants()
        var i = 0
        while i < served {
            _ = try? c.free(UnsafeMutableRawPointer(bitPattern: objects[i]))
            i += 1
        }
        TestHarness.checkEqual("safety: flipped link: cache destroyed, quarantined slab and all", c.destroy(), 0)
    }

    static func writePastObject(_ q: KernelQuarry) {
        guard let c = try? q.createCache(name: "safety-rz", size: 24, options: CacheOptions(redZone: 8)),
              let p = try? c.allocate()
        else {
            TestHarness.fail("safety: red zone set-up") { Console.print("allocation failed") }
            return
        }
        reset()
        p.storeBytes(of: 0, toByteOffset: 24, as: UInt8.self)
        TestHarness.checkEqual("safety: write past an object: validate counts one red zone", c.validate().redZoneDamaged, 1)
        _ = try? c.free(p)
        TestHarness.check("safety: write past an object: free hooks once, counts once",
                          reportedOnce(.redZoneOverwritten) && lastAddress == UInt(bitPattern: p)
                            && c.statistics.count(of: .redZoneOverwritten) == 1, "wrong report")
        TestHarness.checkEqual("safety: red zone restored: validate finds nothing", c.validate().total, 0)
        TestHarness.checkEqual("safety: red-zone cache destroyed", c.destroy(), 0)
    }

    static func writeAfterFree(_ q: KernelQuarry) {
        guard let c = try? q.createCache(name: "safety-poison", size: 40, options: CacheOptions(poison: true, redZone: 8)),
              let p = try? c.allocate()
        else {
            TestHarness.fail("safety: poison set-up") { Console.print("allocation failed") }
            return
        }
        reset()
        _ = try? c.free(p)  // poisoned, then into this CPU's magazine
        p.storeBytes(of: 1, toByteOffset: 16, as: UInt8.self)
        TestHarness.checkEqual("safety: write after free: validate counts one poisoned object", c.validate().poisonDamaged, 1)
        let again = try? c.allocate()
        TestHarness.check("safety: write after free: allocation hooks once, counts once",
                          again == p && reportedOnce(.useAfterFree) && c.statistics.count(of: .useAfterFree) == 1,
                          "wrong report")
        TestHarness.checkEqual("safety: write after free: validate then finds nothing", c.validate().total, 0)
        reset()
        _ = try? c.free(again)
        var second: QuarryError? = nil
        do throws(QuarryError) { try c.free(again) } catch { second = error }
        TestHarness.check("safety: free twice on a debug cache: refused, hooked once",
                          second == .doubleFree && reportedOnce(.doubleFree), "wrong report")
        TestHarness.checkEqual("safety: debug cache after double free: validate finds nothing", c.validate().total, 0)
        TestHarness.checkEqual("safety: poison cache destroyed", c.destroy(), 0)
    }

    static func randomizedCarving(_ q: KernelQuarry) {
        guard let c = try? q.createCache(name: "safety-random", size: 64, options: CacheOptions(randomizeFreeSlots: true))
        else { return TestHarness.fail("safety: random set-up") { Console.print("create failed") } }
        var previous: UInt = 0
        var descending = 0
        var objects = InlineArray<32, UInt>(repeating: 0)
        var i = 0
        while i < 32 {
            guard let p = try? c.allocate() else { return TestHarness.fail("safety: random allocation") { Console.print("failed") } }
            objects[i] = UInt(bitPattern: p)
            if objects[i] < previous { descending += 1 }
            previous = objects[i]
            i += 1
        }
        TestHarness.checkAtLeast("safety: randomized carving is not address order", descending, 1)
        TestHarness.checkEqual("safety: randomized cache: validate finds nothing", c.validate().total, 0)
        i = 0
        while i < 32 {
            _ = try? c.free(UnsafeMutableRawPointer(bitPattern: objects[i]))
            i += 1
        }
        TestHarness.checkEqual("safety: randomized cache destroyed", c.destroy(), 0)
    }

    /// The check name of survival kind `i` (FreeLinkDamage.kind).
    static func survivalName(_ i: Int) -> StaticString {
        switch i {
        case 0: "safety: survives a zeroed link: objects distinct, one report, one refusal at most"
        case 1: "safety: survives link bit 3 flipped: objects distinct, one report, one refusal at most"
        case 2: "safety: survives link bit 6 flipped: objects distinct, one report, one refusal at most"
        case 3: "safety: survives a high link bit flipped: objects distinct, one report, one refusal at most"
        case 4: "safety: survives the link's low byte replaced: objects distinct, one report, one refusal at most"
        case 5: "safety: survives a raw address as link: objects distinct, one report, one refusal at most"
        case 6: "safety: survives a link to a live object: objects distinct, one report, one refusal at most"
        case 7: "safety: survives a cycle: objects distinct, one report, one refusal at most"
        case 8: "safety: survives a truncated list: objects distinct, one report, one refusal at most"
        default: "safety: survives an 8-byte overflow from a neighbour: objects distinct, one report, one refusal at most"
        }
    }

    /// The survival scenario (Tests/Scenarios/CorruptionSurvival.swift) for every kind of
    /// damage, each on a fresh 64-byte cache: `survivalAllocations` allocations and frees
    /// after the damage, every object handed out the cache's and distinct, the damage
    /// reported once, at most one allocation refused; then the invariants hold, validate
    /// finds nothing, and the cache is destroyed, its quarantined slab with it.
    static func survival(_ q: KernelQuarry) {
        let liveCount = 1024
        guard let memory = try? q.front.malloc(liveCount * MemoryLayout<UInt>.stride) else {
            return TestHarness.fail("safety: survival set-up") { Console.print("no memory for the live set") }
        }
        let live = UnsafeMutableBufferPointer(start: memory.bindMemory(to: UInt.self, capacity: liveCount), count: liveCount)
        var kind = 0
        while kind < FreeLinkDamage.count {
            let damage = FreeLinkDamage.kind(kind)
            guard let c = try? q.createCache(name: "safety-survive", size: 64) else {
                return TestHarness.fail("safety: survival set-up") { Console.print("create failed") }
            }
            var scenario = CorruptionSurvival(cache: c, live: live, seed: 0x5AFE_0001 &+ UInt32(kind))
            let start = Clock.now()
            let r = scenario.run(damage, allocations: survivalAllocations)
            let cycles = Clock.now() &- start
            Console.line {
                Console.print("safety: survival: ")
                Console.print(damage.name)
                Console.print(": refusals ")
                Console.decimal(r.refusals)
                Console.print(" (allocation ")
                Console.decimal(r.firstRefusal)
                Console.print("), reports ")
                Console.decimal(r.reports)
                Console.print(", leaked ")
                Console.decimal(r.leakedObjects)
                Console.print(", ")
                Console.decimal(cycles / UInt64(r.allocations > 0 ? r.allocations : 1))
                Console.print(" cycles per allocation and free")
                Console.newline()
            }
            let consistent = c.validate().total == 0 && q.validate() == nil
            q.checkInvariants()
            TestHarness.check(survivalName(kind),
                              r.survived && r.allocations == survivalAllocations && r.reports == 1 && r.refusals <= 1
                                && r.quarantinedSlabs == 1 && consistent && c.destroy() == 0,
                              "a duplicate, a stray, another refusal, a report missing, or validate found something")
            kind += 1
        }
        _ = try? q.front.free(memory)
    }
}
