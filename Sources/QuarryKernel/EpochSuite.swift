// EpochSuite: deferred freeing on bare metal: the EBR-backed lock-free stack stressed on
// every CPU at once while every CPU's timer interrupt pushes, pops and retires too (the
// EpochStackStress scenario of Tests/Scenarios, which the host runs too); a retired object
// that is not reused while its reader is inside (EpochReuse); a stalled reader (EpochStall).
// Neighbours: AllocatorSuite.swift (calls runEpochSuite and, from every tick, epochTimerHook),
// SMP.swift (phases), TestHarness.swift (reports), Quarry/Epochs/EpochReclaimer.swift (under test),
// Tests/QuarryTests/LockFreeStackTests.swift (the same scenarios on the host).

import CQuarrySupport
import Quarry
import Synchronization

typealias KernelReclaimer = EpochReclaimer<X86Platform>
typealias KernelStack = LockFreeStack<X86Platform>

/// The suite's shared state. Written by the boot CPU before a phase starts (the phase
/// start is a release/acquire pair) or with the timer hook off; read by every CPU.
enum EpochSuite {
    /// Retired nodes each CPU may hold: small, so the bound is reached and tested.
    static let bound = 64
    static let operationsPerCPU = 5_000
    /// 2^13 values per CPU, half for thread context (about operationsPerCPU / 2 pushes),
    /// half for the timer hook: the stress's state for 16 CPUs fits one object.
    static let valueBits = 13

    nonisolated(unsafe) static var reclaimer: KernelReclaimer? = nil
    nonisolated(unsafe) static var stack: KernelStack? = nil
    nonisolated(unsafe) static var stress: EpochStackStress<X86Platform>? = nil
    /// The timer hook works only while this is set.
    static let hookEnabled = Atomic<Bool>(false)

    // The reuse and stalled-reader phases.
    nonisolated(unsafe) static var plain: KernelCache? = nil
    nonisolated(unsafe) static var reuse: EpochReuse<X86Platform>? = nil
    static let reuseRounds = 50
    static let overBound = Atomic<Int>(0)
    static let reusedTooEarly = Atomic<Int>(0)
    nonisolated(unsafe) static var stall: EpochStall<X86Platform>? = nil
    /// Pauses the reader waits at most for every other CPU to be refused (a few seconds).
    static let stallWaits = 100_000_000

    /// Pops until the stack is empty, waiting out stalls.
    static func drain() {
        while true {
            do throws(QuarryError) {
                guard try stack!.pop() != nil else { break }
            } catch {
                reclaimer!.synchronize()
            }
        }
    }
}

/// Runs inside every timer interrupt on every CPU (from allocatorTimerHook): the
/// stress's interrupt step while it runs.
func epochTimerHook() {
    guard EpochSuite.hookEnabled.load(ordering: .acquiring), let stress = EpochSuite.stress else { return }
    stress.interrupt(cpu: X86Platform.cpuIndex)
}

/// Does nothing: once every CPU ran it, no timer hook that started before
/// `hookEnabled` was cleared is still running (hooks run with interrupts off, the phase
/// runs outside them) and every later hook sees the flag clear.
func epochQuiescePhase(_ cpu: Int) {}

/// One CPU: the boot CPU is its own reader: an object it retires inside its own section
/// is not handed out again while it stays (256 allocations), and is freed once it leaves.
func epochReuseAlone() {
    let r = EpochSuite.reclaimer!
    let c = EpochSuite.plain!
    r.enter()
    guard let x = try? c.allocate() else { return }
    do throws(QuarryError) { try r.retire(x, to: c) } catch { EpochSuite.reusedTooEarly.add(1, ordering: .relaxed) }
    var held = InlineArray<256, UInt>(repeating: 0)
    for i in 0..<256 {
        r.poll()
        guard let p = try? c.allocate() else { break }
        if p == x { EpochSuite.reusedTooEarly.add(1, ordering: .relaxed) }
        held[i] = UInt(bitPattern: p)
    }
    for i in 0..<256 where held[i] != 0 { _ = try? c.free(UnsafeMutableRawPointer(bitPattern: held[i])) }
    r.exit()
    r.synchronize()
    // Freed now that the reader left.
    if c.activeObjects != 0 { EpochSuite.reusedTooEarly.add(1000, ordering: .relaxed) }
}

/// Runs the deferred-freeing suite on its own Quarry over `[arenaBase, arenaBase + arenaSize)`.
/// Boot CPU only, every CPU online and idle, timers ticking.
func runEpochSuite(arenaBase: UnsafeMutableRawPointer, arenaSize: Int) {
    Console.printLine("== epoch suite (deferred freeing)")
    let q: KernelQuarry
    let r: KernelReclaimer
    let cpus = SMP.cpuCount
    let memory: UnsafeMutableRawPointer
    let state: KernelCache
    do throws(QuarryError) {
        q = try KernelQuarry.initialize(base: arenaBase, size: arenaSize)
        // The stall phase's reader: CPU 1, or the boot CPU itself when alone.
        EpochStallRecorder.reset(watching: cpus >= 2 ? 1 : 0)
        r = try q.createReclaimer(retiredPerCPU: EpochSuite.bound, stallHook: EpochStallRecorder.hook)
        EpochSuite.stack = try KernelStack.create(in: q, reclaimer: r)
        EpochSuite.plain = try q.createCache(name: "ebr_plain", size: 48)
        state = try q.createCache(
            name: "ebr_stress",
            size: EpochStackStress<X86Platform>.bytes(cpus: cpus, valueBits: EpochSuite.valueBits),
            alignment: 64)
        memory = try state.allocate()
    } catch {
        TestHarness.fail("epoch: set-up") { Console.print(error.name) }
        return
    }
    EpochSuite.reclaimer = r
    let stack = EpochSuite.stack!

    // 1. The stack on every CPU, with the timer hook in interrupt context on every CPU.
    let stress = EpochStackStress(
        stack: stack, memory: memory,
        configuration: .init(
            cpus: cpus, operationsPerCPU: EpochSuite.operationsPerCPU, valueBits: EpochSuite.valueBits,
            seed: 0xEB0C_0000, interrupts: true))
    EpochSuite.stress = stress
    let start = Clock.now()
    EpochSuite.hookEnabled.store(true, ordering: .releasing)
    SMP.runOnAllCPUs { cpu in
        EpochSuite.stress!.run(cpu: cpu)
        // A loaded host may hold this CPU's ticks back for longer than the run: wait
        // (up to 1 s) until its handler has worked once, so that the check below
        // tests the handler, not the host's scheduler.
        let deadline = Clock.now() &+ Clock.ticks(microseconds: 1_000_000)
        while !EpochSuite.stress!.handlerWorked(cpu: cpu) && Clock.now() < deadline { quarry_pause() }
    }
    EpochSuite.hookEnabled.store(false, ordering: .releasing)
    SMP.runOnAllCPUs { cpu in epochQuiescePhase(cpu) }
    let milliseconds = Clock.milliseconds(from: start, to: Clock.now())
    let report = stress.finish(HarnessChecks())
    EpochSuite.stress = nil
    let stats = r.statistics
    Console.line {
        Console.print("epoch: ")
        Console.decimal(cpus)
        Console.print(" CPUs, ")
        Console.decimal(milliseconds)
        Console.print(" ms: ")
        Console.decimal(report.pushes)
        Console.print(" pushes, ")
        Console.decimal(report.pops)
        Console.print(" pops, ")
        Console.decimal(report.stalledPops)
        Console.print(" stalled pops; in the timer interrupt ")
        Console.decimal(report.handlerPushes)
        Console.print(" pushes, ")
        Console.decimal(report.handlerPops)
        Console.print(" pops, ")
        Console.decimal(report.handlerStalls)
        Console.print(" stalled; ")
        Console.decimal(report.drained)
        Console.print(" drained at the end; epoch ")
        Console.decimal(stats.epoch)
        Console.print(", ")
        Console.decimal(stats.blockedAdvances)
        Console.print(" blocked advances, high-water ")
        Console.decimal(stats.highWater)
        Console.newline()
    }

    // 2. A retired object is not handed out again while a reader is inside (the
    // EpochReuse scenario, CPU 0 writing and CPU 1 reading; on one CPU, the boot CPU is
    // its own reader). Its state is an object of the stress state's cache.
    if cpus >= 2 {
        // The writer may allocate up to `heldCount` objects in a round before its freed
        // object comes back (it may wait in a full magazine, then in the depot).
        let heldCount = 4096
        guard let reuseMemory = try? state.allocate(),
            let heldCache = try? q.createCache(name: "ebr_reuse", size: heldCount * MemoryLayout<UInt>.stride),
            let heldMemory = try? heldCache.allocate()
        else {
            return TestHarness.fail("epoch: reuse set-up") { Console.print("allocation failed") }
        }
        let reuseState = reuseMemory.bindMemory(to: EpochReuseState.self, capacity: 1)
        reuseState.initialize(to: EpochReuseState())
        let held = UnsafeMutableBufferPointer(
            start: heldMemory.bindMemory(to: UInt.self, capacity: heldCount),
            count: heldCount)
        EpochSuite.reuse = EpochReuse(
            reclaimer: r, cache: EpochSuite.plain!, state: reuseState, held: held,
            rounds: EpochSuite.reuseRounds, writer: 0, reader: 1)
        SMP.runOnAllCPUs { cpu in EpochSuite.reuse!.run(cpu: cpu) }
        EpochSuite.reuse!.finish(HarnessChecks())
        EpochSuite.reuse = nil
        reuseState.deinitialize(count: 1)
        _ = try? state.free(reuseMemory)
        _ = try? heldCache.free(heldMemory)
        TestHarness.checkEqual("epoch: the reuse buffer's cache destroyed", heldCache.destroy(), 0)
    } else {
        epochReuseAlone()
        TestHarness.checkEqual(
            "epoch: a retired object is not reused while its reader is inside, then is",
            EpochSuite.reusedTooEarly.load(ordering: .relaxed), 0)
    }

    // 3. A stalled reader (the EpochStall scenario: CPU 1 stays inside; on one CPU, the
    // boot CPU stalls itself). Its state is a second object of the stress state's cache.
    if cpus >= 2 {
        guard let stallMemory = try? state.allocate() else {
            return TestHarness.fail("epoch: stall set-up") { Console.print("allocation failed") }
        }
        let stallState = stallMemory.bindMemory(to: EpochStallState.self, capacity: 1)
        stallState.initialize(to: EpochStallState())
        EpochSuite.stall = EpochStall(
            stack: stack, state: stallState, cpus: cpus, reader: 1,
            maxWaits: EpochSuite.stallWaits)
        SMP.runOnAllCPUs { cpu in EpochSuite.stall!.run(cpu: cpu) }
        EpochSuite.stall!.finish(HarnessChecks())
        EpochSuite.stall = nil
        stallState.deinitialize(count: 1)
        _ = try? state.free(stallMemory)
    } else {
        r.enter()
        var refused = 0
        for _ in 0..<(2 * EpochSuite.bound) {
            guard let p = try? EpochSuite.plain!.allocate() else { break }
            do throws(QuarryError) { try r.retire(p, to: EpochSuite.plain!) } catch {
                refused += 1
                _ = try? EpochSuite.plain!.free(p)  // nobody else can hold it: never published
            }
            if r.statistics(cpu: 0).pending > EpochSuite.bound { EpochSuite.overBound.add(1, ordering: .relaxed) }
        }
        r.exit()
        TestHarness.checkEqual(
            "epoch: a CPU inside its own section is refused past the bound", refused, EpochSuite.bound)
        TestHarness.checkEqual(
            "epoch: the stall hook named CPU 0", EpochStallRecorder.lastCPU.load(ordering: .relaxed), 0)
        TestHarness.checkEqual(
            "epoch: backlogs never passed the bound while stalled",
            EpochSuite.overBound.load(ordering: .relaxed), 0)
        TestHarness.check(
            "epoch: stalls counted and reported",
            r.statistics.stalls > 0
                && Int(r.statistics.stalls) == EpochStallRecorder.calls.load(ordering: .relaxed),
            "stall counter and hook disagree")
    }

    // 4. Everything back: drain, flush, destroy, shrink.
    EpochSuite.drain()
    r.checkInvariants()
    q.checkInvariants()
    EpochSuite.reclaimer = nil
    EpochSuite.stack = nil
    TestHarness.checkEqual("epoch: stack destroyed empty", stack.destroy(), 0)
    r.destroy()
    _ = try? state.free(memory)
    TestHarness.checkEqual("epoch: suite caches destroyed", EpochSuite.plain!.destroy() + state.destroy(), 0)
    q.shrink()
    TestHarness.checkEqual("epoch: only the internal caches are left", q.cacheCount, 2)
    TestHarness.checkEqual("epoch: heap back to its first state", q.pageStatistics.pagesInUse, 0)
}
