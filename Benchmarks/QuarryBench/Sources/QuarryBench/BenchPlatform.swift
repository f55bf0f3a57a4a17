// BenchPlatform: the Platform of the host benchmarks: a thread-local virtual CPU, no-op interrupts.
// Neighbours: CQuarryBench (the thread-local), Exports (the C ABI that uses it).

import CQuarryBench
import Quarry
#if canImport(Glibc)
import Glibc
#endif

/// Each benchmark thread registers as a virtual CPU (`qb_thread_register`) and no two
/// running threads share one. The host has no interrupts to mask, so disabling them is a
/// no-op: the figures leave out the `pushf; cli` / `popf` pair a kernel pays on bare metal
/// (the per-CPU layer's host tests model interrupts with signals; the benchmarks do not).
/// `pause` is the real x86 instruction, so a contended ticket lock spins as it would on
/// bare metal, without yielding to the host scheduler.
enum BenchPlatform: Platform {
    static var maxCPUs: Int { Int(QB_MAX_CPUS) }
    @inline(__always) static var cpuIndex: Int { Int(qb_cpu()) }
    @inline(__always) static func disableInterrupts() -> InterruptState { InterruptState(raw: 0) }
    @inline(__always) static func restoreInterrupts(_ state: InterruptState) {}
    @inline(__always) static func pause() { qb_pause() }
    static func write(_ byte: UInt8) {
        var b = byte
        _ = Glibc.write(2, &b, 1)
    }
    /// Fixed, so that instruction counts do not depend on the encoded free-list links.
    static func entropy() -> UInt { 0x9E37_79B9_7F4A_7C15 }
}
