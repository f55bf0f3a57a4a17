// PlatformChecks: self-checks of X86Platform and the kernel's machinery (serial, interrupt
// masking, the timer, SMP start-up, per-CPU indices) before the allocator suite runs.
// Neighbours: Kernel.swift (the order they run in), TestHarness.swift (reporting),
// SMP.swift (the all-CPU phase), Interrupts.swift and LocalAPIC.swift (what is checked).

import CQuarrySupport
import Quarry
import Synchronization

enum PlatformChecks {
    /// Ticks each CPU must take, and the bound (TSC time) within which it must take them.
    static let requiredTicks = 100
    static let tickDeadlineMilliseconds: UInt64 = 3000

    static let interruptFlag = UInt(QUARRY_FLAGS_IF)

    static var interruptsEnabled: Bool { quarry_read_flags() & interruptFlag != 0 }

    /// disable, disable, restore, restore: masked after each disable, still masked
    /// after the inner restore, and back to the first state after the outer one.
    static func interruptNestingWorks() -> Bool {
        let initial = quarry_read_flags() & interruptFlag
        let outer = X86Platform.disableInterrupts()
        let maskedAfterOuter = !interruptsEnabled
        let inner = X86Platform.disableInterrupts()
        let maskedAfterInner = !interruptsEnabled
        X86Platform.restoreInterrupts(inner)
        let stillMasked = !interruptsEnabled
        X86Platform.restoreInterrupts(outer)
        let restored = quarry_read_flags() & interruptFlag == initial
        return maskedAfterOuter && maskedAfterInner && stillMasked && restored
            && outer.raw & interruptFlag == initial && inner.raw & interruptFlag == 0
    }

    /// Waits (halting between interrupts) until this CPU has taken `requiredTicks`
    /// timer interrupts or the deadline passes. Returns the ticks taken.
    static func ticksWithinDeadline() -> Int {
        guard interruptsEnabled else { return 0 }  // hlt would never wake
        let counter = PerCPU.current.ticks
        let start = counter.pointee.load(ordering: .relaxed)
        let deadline = Clock.now() &+ Clock.ticks(microseconds: tickDeadlineMilliseconds * 1000)
        var taken = 0
        while taken < requiredTicks && Clock.now() < deadline {
            quarry_hlt()
            taken = Int(truncatingIfNeeded: counter.pointee.load(ordering: .relaxed) &- start)
        }
        return taken
    }

    /// With interrupts masked for 20 timer periods no tick arrives; after the restore
    /// the pending one is delivered at once.
    static func maskingHoldsOffTheTimer() -> Bool {
        let counter = PerCPU.current.ticks
        let state = X86Platform.disableInterrupts()
        let before = counter.pointee.load(ordering: .relaxed)
        Clock.delay(microseconds: 20 * 1_000_000 / UInt64(Kernel.timerHz))
        let whileMasked = counter.pointee.load(ordering: .relaxed) &- before
        X86Platform.restoreInterrupts(state)
        let deadline = Clock.now() &+ Clock.ticks(microseconds: 100_000)
        while counter.pointee.load(ordering: .relaxed) == before && Clock.now() < deadline {
            quarry_pause()
        }
        return whileMasked == 0 && counter.pointee.load(ordering: .relaxed) != before
    }

    /// int3 goes through a stub and the dispatcher and comes back with the frame's
    /// vector and dummy error code where the layout says.
    static func breakpointReturns() -> Bool {
        Interrupts.breakpointExpected.store(true, ordering: .relaxed)
        let before = Interrupts.breakpointsTaken.load(ordering: .relaxed)
        quarry_int3()
        let taken = Interrupts.breakpointsTaken.load(ordering: .relaxed) - before
        return taken == 1 && Interrupts.lastBreakpointFrame.load(ordering: .relaxed) == 3 << 16
    }

    /// xmm0-7 (xmm0-15 on x86_64) survive timer interrupts whose handler zeroes them.
    /// Needs interrupts on, the timer running and `Interrupts.clobberSIMDInTimer` set.
    static func simdSurvivesInterrupts() -> Bool {
        guard interruptsEnabled else { return false }  // hlt would never wake
        return quarry_xmm_damage_across_halts(5) == 0
    }

    // MARK: All-CPU phase

    static let arrivals = Atomic<Int>(0)
    static let indexMask = Atomic<UInt>(0)
    static let duplicateIndices = Atomic<Int>(0)
    static let indexMismatches = Atomic<Int>(0)
    static let timerMask = Atomic<UInt>(0)
    static let fewestTicks = Atomic<Int>(Int.max)
    static let nestingFailures = Atomic<Int>(0)
    static let interruptsOffInPhase = Atomic<Int>(0)
    static let simdFailures = Atomic<Int>(0)

    /// Runs on every CPU at once (SMP.runOnAllCPUs); the boot CPU reports afterwards.
    static func phase(_ cpu: Int) {
        let index = X86Platform.cpuIndex
        let bit = UInt(1) << UInt(index)
        if indexMask.bitwiseOr(bit, ordering: .relaxed).oldValue & bit != 0 {
            duplicateIndices.add(1, ordering: .relaxed)
        }
        if index != cpu || PerCPU.slot(index).index != index {
            indexMismatches.add(1, ordering: .relaxed)
        }
        arrivals.add(1, ordering: .relaxed)
        if !interruptsEnabled { interruptsOffInPhase.add(1, ordering: .relaxed) }

        let ticks = ticksWithinDeadline()
        fewestTicks.min(ticks, ordering: .relaxed)
        if ticks >= requiredTicks { timerMask.bitwiseOr(bit, ordering: .relaxed) }

        if !interruptNestingWorks() { nestingFailures.add(1, ordering: .relaxed) }
        if !simdSurvivesInterrupts() { simdFailures.add(1, ordering: .relaxed) }
    }

    static func reportPhase(cpuCount: Int) {
        let all = cpuCount >= UInt.bitWidth ? UInt.max : (UInt(1) << UInt(cpuCount)) - 1
        TestHarness.checkEqual(
            "smp: every CPU ran the phase (atomic counter)",
            arrivals.load(ordering: .acquiring), cpuCount)
        TestHarness.check(
            "smp: X86Platform.cpuIndex is distinct on every CPU",
            duplicateIndices.load(ordering: .acquiring) == 0
                && indexMask.load(ordering: .acquiring) == all,
            "two CPUs reported the same index, or an index is missing")
        TestHarness.checkEqual(
            "smp: cpuIndex matches the index the trampoline assigned",
            indexMismatches.load(ordering: .acquiring), 0)
        TestHarness.checkEqual(
            "smp: interrupts enabled on every CPU during the phase",
            interruptsOffInPhase.load(ordering: .acquiring), 0)
        TestHarness.check(
            "smp: timer fired 100 times on every CPU",
            timerMask.load(ordering: .acquiring) == all,
            "some CPU took fewer than 100 ticks within 3 s")
        TestHarness.checkAtLeast(
            "smp: fewest timer ticks on one CPU",
            fewestTicks.load(ordering: .acquiring), requiredTicks)
        TestHarness.checkEqual(
            "smp: interrupt disable/restore nest on every CPU",
            nestingFailures.load(ordering: .acquiring), 0)
        TestHarness.checkEqual(
            "smp: xmm registers survive clobbering timer handlers on every CPU",
            simdFailures.load(ordering: .acquiring), 0)
    }
}
