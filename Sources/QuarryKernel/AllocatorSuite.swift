// AllocatorSuite: the allocator's own checks on bare metal. Owned by the allocator
// engineers; the kernel only calls into it.
// Neighbours: Kernel.swift (calls runAllocatorSuite), Interrupts.swift (calls
// allocatorTimerHook from every tick), TestHarness.swift (report with check*),
// SMP.swift (runOnAllCPUs for phases on every CPU).

import Quarry

/// Runs the allocator suite. Called once, on the boot CPU, after the platform checks:
/// every CPU is online and idle, interrupts are on everywhere and the LAPIC timer
/// ticks on every CPU.
/// - arenaBase: page-aligned start of the arena (`__quarry_arena_start`, linker/i686.ld).
/// - arenaSize: its size in bytes, a multiple of 4 KiB (32 MiB). Nothing else uses
///   this memory; its contents are unspecified (QEMU's loader happens to zero it).
/// Report results with `TestHarness.check*`; run code on all CPUs with
/// `SMP.runOnAllCPUs(_:)` (a `@convention(c) (Int) -> Void` taking the CPU index).
func runAllocatorSuite(arenaBase: UnsafeMutableRawPointer, arenaSize: Int) {
}

/// Runs inside every timer interrupt on every CPU, interrupts disabled, FPU state
/// saved (see `timerTick()`). The place for allocate/free from interrupt context.
func allocatorTimerHook() {
}
