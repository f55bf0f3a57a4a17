// CorruptionSuite: slub_kunit-style tests on bare metal, on a heap of their own: the
// scenarios of Tests/Scenarios (Misuse: every refused free through the per-CPU path;
// Corruption: memory corrupted on purpose, exact reports, zero after repair;
// CorruptionSurvival: each kind of free-link damage followed by many allocations, the
// cache serving on with its damaged slab quarantined; Carving: randomized free slots).
// Neighbours: AllocatorSuite.swift (gives it its own heap), Tests/QuarryTests/SafetyTests.swift
// and CorruptionSurvivalTests.swift (the same scenarios on the host), TestHarness.swift (reports).

@_spi(Testing) import Quarry

enum CorruptionSuite {
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
        MisuseScenario.free(q, base: base, size: size, HarnessChecks())
        CorruptionScenario.run(q, HarnessChecks())
        CarvingScenario.run(q, HarnessChecks())
        survival(q)
        q.drainAll()
        q.checkInvariants()
        TestHarness.checkEqual("safety: validate finds nothing in the whole heap", q.validate() == nil ? 0 : 1, 0)
        TestHarness.pass("safety: heap invariants hold after every scenario")
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
        default:
            "safety: survives an 8-byte overflow from a neighbour: objects distinct, one report, one refusal at most"
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
        let live = UnsafeMutableBufferPointer(
            start: memory.bindMemory(to: UInt.self, capacity: liveCount), count: liveCount)
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
            TestHarness.check(
                survivalName(kind),
                r.survived && r.allocations == survivalAllocations && r.reports == 1 && r.refusals <= 1
                    && r.quarantinedSlabs == 1 && consistent && c.destroy() == 0,
                "a duplicate, a stray, another refusal, a report missing, or validate found something")
            kind += 1
        }
        _ = try? q.front.free(memory)
    }
}
