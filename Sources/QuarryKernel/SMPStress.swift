// SMPStress: every CPU allocates and frees at once, hands objects to other CPUs, and the
// timer interrupt allocates and frees on every CPU meanwhile; every object's cookie is checked.
// Neighbours: AllocatorSuite.swift (runs it, forwards the timer hook), SMP.swift (phases),
// TestHarness.swift (reports).

import CQuarrySupport
import Quarry
import Synchronization

/// The stress phase. Shared state lives in allocator-owned memory (objects of the
/// heap under test) and is accessed only through atomics:
/// - `slots`: a mailbox of `slotCount` words; a CPU publishes an object by exchanging
///   it into a random slot (acquiring-and-releasing) and frees whatever it took out,
///   so objects are freed on another CPU than the one that allocated them;
/// - `counters`: per CPU, operations in the phase, in the timer handler, cookie
///   mismatches and unexpected errors;
/// - `stash`: per CPU, the object the timer handler keeps from one tick to the next.
/// The globals below are written by the boot CPU before the phase starts (published
/// by the phase's releasing generation increment, or by `hookEnabled`'s release).
enum SMPStress {
    static let slotCount = 256
    static let cacheCount = 3
    static let sizes: InlineArray<3, Int> = [16, 96, 700]
    static let operationsPerCPU = 40_000
    /// Counter indices within a CPU's row.
    static let opsIndex = 0, handlerIndex = 1, mismatchIndex = 2, errorIndex = 3, rowWidth = 4

    nonisolated(unsafe) static var heap: KernelQuarry? = nil
    nonisolated(unsafe) static var caches = InlineArray<3, KernelCache?>(repeating: nil)
    nonisolated(unsafe) static var irqCache: KernelCache? = nil
    nonisolated(unsafe) static var slots: UnsafeMutablePointer<Atomic<UInt>>? = nil
    nonisolated(unsafe) static var counters: UnsafeMutablePointer<Atomic<Int>>? = nil
    nonisolated(unsafe) static var stash: UnsafeMutablePointer<Atomic<UInt>>? = nil
    static let hookEnabled = Atomic<Bool>(false)

    /// Runs the whole stress on `[base, base + size)`.
    static func run(base: UnsafeMutableRawPointer, size: Int) {
        guard let q = try? KernelQuarry.initialize(base: base, size: size) else {
            TestHarness.fail("smp: initialize") { Console.print("refused") }
            return
        }
        let cpus = SMP.cpuCount
        guard let shared = try? q.createCache(name: "smp-shared", size: 4096),
              let slotMemory = try? shared.allocate(),
              let counterMemory = try? shared.allocate(),
              let stashMemory = try? shared.allocate() else {
            TestHarness.fail("smp: set-up") { Console.print("allocation refused") }
            return
        }
        // Sound: 4096-byte objects hold 256 slots, 16 CPUs × 4 counters and 16 stash
        // words; the words are only ever accessed as atomics.
        slotMemory.initializeMemory(as: UInt.self, repeating: 0, count: slotCount)
        counterMemory.initializeMemory(as: Int.self, repeating: 0, count: X86Platform.maxCPUs * rowWidth)
        stashMemory.initializeMemory(as: UInt.self, repeating: 0, count: X86Platform.maxCPUs)
        slots = slotMemory.assumingMemoryBound(to: Atomic<UInt>.self)
        counters = counterMemory.assumingMemoryBound(to: Atomic<Int>.self)
        stash = stashMemory.assumingMemoryBound(to: Atomic<UInt>.self)
        for k in 0..<cacheCount { caches[k] = try? q.createCache(name: "smp-objects", size: sizes[k]) }
        irqCache = try? q.createCache(name: "smp-irq", size: 48)
        heap = q

        hookEnabled.store(true, ordering: .releasing)
        SMP.runOnAllCPUs { cpu in SMPStress.phase(cpu) }
        hookEnabled.store(false, ordering: .releasing)
        // Let every handler that saw the flag finish (a tick is 0.5 ms).
        Clock.delay(microseconds: 5_000)

        // Drain: the mailbox and the handlers' stashes, verifying every cookie.
        var drained = 0
        for i in 0..<slotCount {
            let object = slots![i].exchange(0, ordering: .acquiringAndReleasing)
            if object != 0 { retire(object, cpu: 0); drained += 1 }
        }
        for cpu in 0..<X86Platform.maxCPUs {
            let object = stash![cpu].exchange(0, ordering: .acquiringAndReleasing)
            if object != 0 { retire(object, cpu: cpu) }
        }
        report(cpus: cpus, drained: drained)

        _ = try? shared.free(slotMemory)
        _ = try? shared.free(counterMemory)
        _ = try? shared.free(stashMemory)
        var leaked = shared.destroy() + (irqCache?.destroy() ?? 1)
        for k in 0..<cacheCount { leaked += caches[k]?.destroy() ?? 1 }
        q.checkInvariants()
        q.shrink()
        TestHarness.checkEqual("smp: every cache destroyed without leaks", leaked, 0)
        TestHarness.checkEqual("smp: every page came back", q.pageStatistics.pagesInUse, 0)
        heap = nil
    }

    /// One CPU's share of the stress.
    static func phase(_ cpu: Int) {
        var rng = SeededGenerator(seed: UInt64(0x51ED_0000 &+ cpu &* 7919))
        for _ in 0..<operationsPerCPU {
            let k = rng.below(cacheCount)
            guard let cache = caches[k] else { count(cpu, errorIndex); continue }
            do throws(QuarryError) {
                let p = try cache.allocate()
                Cookie.fill(at: UInt(bitPattern: p), size: cache.objectSize)
                if rng.below(100) < 60 {
                    // Publish it; whatever was in the slot came from any CPU: free it here.
                    let taken = slots![rng.below(slotCount)].exchange(UInt(bitPattern: p), ordering: .acquiringAndReleasing)
                    if taken != 0 { retire(taken, cpu: cpu) }
                } else {
                    retire(UInt(bitPattern: p), cpu: cpu)
                }
            } catch {
                count(cpu, errorIndex)
            }
            count(cpu, opsIndex)
        }
    }

    /// Runs in every timer interrupt (interrupts disabled): allocate an object, keep it
    /// until the next tick on this CPU, free the previous one.
    static func timerHook() {
        guard hookEnabled.load(ordering: .acquiring), let cache = irqCache else { return }
        let cpu = X86Platform.cpuIndex
        do throws(QuarryError) {
            let p = try cache.allocate()
            Cookie.fill(at: UInt(bitPattern: p), size: cache.objectSize)
            let previous = stash![cpu].exchange(UInt(bitPattern: p), ordering: .acquiringAndReleasing)
            if previous != 0 { retire(previous, cpu: cpu) }
        } catch {
            count(cpu, errorIndex)
        }
        count(cpu, handlerIndex)
    }

    /// Verifies the cookie of the object at `address` and frees it through the page map.
    static func retire(_ address: UInt, cpu: Int) {
        let p = UnsafeMutableRawPointer(bitPattern: address)!
        guard let q = heap, let cache = q.cache(owning: p) else {
            count(cpu, errorIndex)
            return
        }
        if !Cookie.intact(at: address, size: cache.objectSize) { count(cpu, mismatchIndex) }
        do throws(QuarryError) { try cache.free(p) } catch { count(cpu, errorIndex) }
    }

    @inline(__always)
    static func count(_ cpu: Int, _ index: Int) {
        counters![cpu * rowWidth + index].add(1, ordering: .relaxed)
    }

    static func report(cpus: Int, drained: Int) {
        var mismatches = 0, errors = 0, handlerTotal = 0, everyCPUHandled = true
        for cpu in 0..<cpus {
            let ops = counters![cpu * rowWidth + opsIndex].load(ordering: .relaxed)
            let handled = counters![cpu * rowWidth + handlerIndex].load(ordering: .relaxed)
            mismatches += counters![cpu * rowWidth + mismatchIndex].load(ordering: .relaxed)
            errors += counters![cpu * rowWidth + errorIndex].load(ordering: .relaxed)
            handlerTotal += handled
            if handled == 0 { everyCPUHandled = false }
            Console.line {
                Console.print("smp: cpu ")
                Console.decimal(cpu)
                Console.print(": ")
                Console.decimal(ops)
                Console.print(" operations, ")
                Console.decimal(handled)
                Console.print(" in the timer handler")
                Console.newline()
            }
        }
        Console.line {
            Console.print("smp: ")
            Console.decimal(drained)
            Console.print(" objects drained from the mailbox, ")
            Console.decimal(mismatches)
            Console.print(" cookie mismatches, ")
            Console.decimal(errors)
            Console.print(" errors")
            Console.newline()
        }
        TestHarness.checkEqual("smp: cookie mismatches", mismatches, 0)
        TestHarness.checkEqual("smp: unexpected errors", errors, 0)
        TestHarness.check("smp: the timer handler allocated on every CPU", everyCPUHandled && handlerTotal > 0, "a CPU never did")
    }
}
