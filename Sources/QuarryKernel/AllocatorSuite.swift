// AllocatorSuite: the allocator's own checks on bare metal, the host's scenarios on the real arena.
// Neighbours: Kernel.swift (calls runAllocatorSuite), Interrupts.swift (calls
// allocatorTimerHook from every tick), TestHarness.swift (reports), SMP.swift (phases),
// NMIStorm.swift and SingleStep.swift (the handlers that masking cannot hold off).

import CQuarrySupport
import Quarry

typealias KernelQuarry = Quarry<X86Platform>
typealias KernelCache = SlabCache<X86Platform>

/// Runs the allocator suite. Called once, on the boot CPU, after the platform checks:
/// every CPU is online and idle, interrupts are on everywhere and the LAPIC timer
/// ticks on every CPU.
/// - arenaBase: page-aligned start of the arena (`__quarry_arena_start`, linker script).
/// - arenaSize: its size in bytes, a multiple of 4 KiB. Its contents are unspecified.
///
/// The arena is split: most of it for the standard-geometry heap, a quarter for a
/// tiny-geometry heap (slabs of 3 objects: every refill and release path runs
/// constantly), 64 KiB for out-of-memory checks, 4 MiB for the SMP stress, 256 KiB
/// for the corruption suite, 1 MiB each for the NMI storm and the single-step suite,
/// and the last 2 MiB for the epoch suite.
func runAllocatorSuite(arenaBase: UnsafeMutableRawPointer, arenaSize: Int) {
    Console.printLine("== allocator suite")
    AllocatorChecks.geometryAtBoot()
    let tinyBytes = 64 << 10
    let epochBytes = 2 << 20
    let smallHeapBytes = (arenaSize / 4) & ~4095
    let smpBytes = 4 << 20
    let safetyBytes = 256 << 10
    let nmiBytes = 1 << 20
    let stepBytes = 1 << 20
    let mainBytes =
        arenaSize - tinyBytes - smallHeapBytes - smpBytes - epochBytes - safetyBytes
        - nmiBytes - stepBytes
    let start = Clock.now()
    let main: KernelQuarry
    let small: KernelQuarry
    let tiny: KernelQuarry
    do throws(QuarryError) {
        main = try KernelQuarry.initialize(base: arenaBase, size: mainBytes)
        small = try KernelQuarry.initialize(base: arenaBase + mainBytes, size: smallHeapBytes, tuning: .tiny)
        tiny = try KernelQuarry.initialize(base: arenaBase + mainBytes + smallHeapBytes, size: tinyBytes)
    } catch {
        TestHarness.fail("alloc: initialize") { Console.print(error.name) }
        return
    }
    let startupCycles = Clock.now() &- start
    Console.line {
        Console.print("alloc: three heaps initialised in ")
        Console.decimal(startupCycles)
        Console.print(" cycles; main heap ")
        Console.decimal(main.pageStatistics.pageCount)
        Console.print(" pages")
        Console.newline()
    }
    TestHarness.checkEqual("alloc: start-up touches no page", main.pageStatistics.bump, 0)
    var visited = 0
    main.forEachCache { _ in visited += 1 }
    TestHarness.checkEqual("alloc: registry walk finds the cache of caches", visited, main.cacheCount)

    MisuseScenario.creation(main, HarnessChecks())
    MisuseScenario.free(small, base: arenaBase + mainBytes, size: smallHeapBytes, HarnessChecks())
    // 900-byte objects: 4 per page, 496 bytes of slack, 8 colours.
    ColouringScenario.run(main, size: 900, slabs: 40, HarnessChecks())
    // 8 000 steps a heap: the model fills and checks every byte of objects up to 20 KB
    // (the host runs 30 000 steps with three seeds); the boot stays as long as with the
    // old 20 000 steps of objects up to 5 000 bytes.
    AllocatorChecks.randomModel(main, seed: 0x1234_5678, steps: 8_000)
    AllocatorChecks.randomModel(small, seed: 0x0BAD_CAFE, steps: 8_000)
    OutOfMemoryScenario.run(tiny, HarnessChecks())

    Console.printLine("alloc: slabinfo of the main heap (caches kept alive for the table):")
    let keep = AllocatorChecks.populateForSlabinfo(main)
    main.printSlabinfo()
    AllocatorChecks.release(keep, main)

    KernelBench.run(main)
    AllocatorChecks.leakAccounting(main, name: "alloc: main heap back to its first state")
    AllocatorChecks.leakAccounting(small, name: "alloc: tiny-slab heap back to its first state")

    CorruptionSuite.run(base: arenaBase + mainBytes + smallHeapBytes + tinyBytes + smpBytes, size: safetyBytes)
    SMPStress.run(base: arenaBase + mainBytes + smallHeapBytes + tinyBytes, size: smpBytes)
    let nmiBase = arenaBase + mainBytes + smallHeapBytes + tinyBytes + smpBytes + safetyBytes
    NMIStorm.run(base: nmiBase, size: nmiBytes)
    SingleStep.run(base: nmiBase + nmiBytes, size: stepBytes)
    runEpochSuite(arenaBase: arenaBase + (arenaSize - epochBytes), arenaSize: epochBytes)
    Console.printLine("alloc: stats snapshot at exit: slabinfo of the main heap")
    main.printSlabinfo()
}

/// Runs inside every timer interrupt on every CPU, interrupts disabled, FPU state
/// saved (see `timerTick()`). The place for allocate/free from interrupt context.
func allocatorTimerHook() {
    SMPStress.timerHook()
    NMIStorm.timerHook()
    epochTimerHook()
}

enum AllocatorChecks {
    /// Style rule 10: the constants' relations hold on this target too (4-byte pointers).
    static func geometryAtBoot() {
        TestHarness.check(
            "alloc: page size is 1 << pageShift", Geometry.pageSize == 1 << Geometry.pageShift, "mismatch")
        TestHarness.check(
            "alloc: bitmap bytes per page",
            Geometry.bitmapBytesPerPage * 8 * Geometry.bitmapGranule == Geometry.pageSize, "mismatch")
        TestHarness.check(
            "alloc: largest object fills the largest slab",
            Geometry.maxObjectSize == Geometry.maxSlabPages * Geometry.pageSize, "mismatch")
    }

    /// The random model (Tests/Scenarios/RandomModel.swift, which the host runs too) on
    /// the real arena; its table is an object of the heap under test.
    static func randomModel(_ q: KernelQuarry, seed: UInt64, steps: Int) {
        let capacity = 1024
        guard
            let tableCache = try? q.createCache(
                name: "model-table", size: capacity * MemoryLayout<RandomModelSlot>.stride),
            let tableMemory = try? tableCache.allocate()
        else {
            return TestHarness.fail("alloc: random model set-up") { Console.print("allocation failed") }
        }
        let table = UnsafeMutableBufferPointer(
            start: tableMemory.bindMemory(to: RandomModelSlot.self, capacity: capacity),
            count: capacity)
        var model = RandomModel(quarry: q, live: table, seed: seed)
        let r = model.run(steps: steps, checkEvery: 500, HarnessChecks())
        Console.line {
            Console.print("alloc: random model: ")
            Console.decimal(r.steps)
            Console.print(" steps, ")
            Console.decimal(r.allocations)
            Console.print(" allocations, ")
            Console.decimal(r.cachesCreated)
            Console.print(" caches, ")
            Console.decimal(r.outOfMemory)
            Console.print(" out of memory")
            Console.newline()
        }
        _ = try? tableCache.free(tableMemory)
        TestHarness.checkEqual("alloc: random model's table destroyed", tableCache.destroy(), 0)
    }

    /// Caches with live objects, so the slabinfo table has something to show.
    struct SlabinfoSample {
        var caches = InlineArray<4, KernelCache?>(repeating: nil)
        var objects = InlineArray<370, UInt>(repeating: 0)
        var count = 0
        static func objectsOf(_ k: Int) -> Int { 37 * (k + 1) }
    }

    static func populateForSlabinfo(_ q: KernelQuarry) -> SlabinfoSample {
        var sample = SlabinfoSample()
        let sizes: InlineArray<4, Int> = [32, 192, 1024, 4096]
        for k in 0..<4 {
            guard
                let c = try? q.createCache(
                    name: k == 0 ? "dentry" : k == 1 ? "inode" : k == 2 ? "buffer" : "page-sized",
                    size: sizes[k])
            else { continue }
            sample.caches[k] = c
            for _ in 0..<SlabinfoSample.objectsOf(k) {
                guard let p = try? c.allocate() else { break }
                sample.objects[sample.count] = UInt(bitPattern: p)
                sample.count += 1
            }
        }
        return sample
    }

    /// Destroy first refuses and reports the live objects; after they are freed it succeeds.
    static func release(_ sample: SlabinfoSample, _ q: KernelQuarry) {
        var reported = 0
        for k in 0..<4 { reported += sample.caches[k]?.destroy() ?? 0 }
        TestHarness.checkEqual("alloc: destroy reports objects still allocated", reported, sample.count)
        for i in 0..<sample.count {
            let p = UnsafeMutableRawPointer(bitPattern: sample.objects[i])!
            _ = try? q.cache(owning: p)?.free(p)
        }
        var leaked = 0
        for k in 0..<4 { leaked += sample.caches[k]?.destroy() ?? 0 }
        TestHarness.checkEqual("alloc: destroy succeeds once the objects are freed", leaked, 0)
    }

    /// Every cache but the two internal ones (the cache of caches and the magazine cache)
    /// destroyed and every cache shrunk: no page in use.
    static func leakAccounting(_ q: KernelQuarry, name: StaticString) {
        q.checkInvariants()
        q.shrink()
        TestHarness.checkEqual("alloc: only the internal caches are left", q.cacheCount, 2)
        TestHarness.checkEqual(name, q.pageStatistics.pagesInUse, 0)
    }
}
