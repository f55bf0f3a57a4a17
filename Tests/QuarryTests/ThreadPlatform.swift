// ThreadPlatform: the host tests' one Platform, for a heap of `cpus` CPUs. Each thread is
// a VirtualCPU: CPU 0 until it registers as another; masking interrupts is the thread's
// nesting count, and interrupts (timer signals, injected ones) arrive as VirtualCPU says.
// Neighbours: Quarry's Platform protocol; VirtualCPU (the threads as CPUs, masking,
// injected interrupts), VirtualCPU+Timer (signal interrupts), Tests/CTestPlatform (the
// per-thread words), TestArena (a heap on it).
//
// Why one platform serves every suite. The only thing the suites need differently is the
// number of CPUs a heap has, and that is the generic parameter, as it is a machine's:
// `ThreadPlatform<1>` for the single-CPU suites and the single-step test (their figures,
// such as the header in one page and the internal caches' slabs, are a one-CPU heap's),
// `ThreadPlatform<16>` for the threaded suites (up to 8 threads, and CPU indices up to 15).
// Everything else is the same code: a suite that never registers runs as CPU 0 and sees
// interrupts only where it makes them.

import Quarry

#if canImport(Glibc)
import Glibc
#endif

/// Quarry's Platform over VirtualCPU, for heaps of `cpus` CPUs.
enum ThreadPlatform<let cpus: Int>: Platform {
    static var maxCPUs: Int { cpus }

    /// The calling thread's CPU (0 if it did not register); a CPU this heap does not have
    /// is a test's mistake.
    static var cpuIndex: Int {
        let index = VirtualCPU.index
        precondition(index < cpus, "ThreadPlatform: this thread's CPU is not one of the heap's")
        return index
    }

    static func disableInterrupts() -> InterruptState { VirtualCPU.disableInterrupts() }

    static func restoreInterrupts(_ state: InterruptState) { VirtualCPU.restoreInterrupts(state) }

    static func pause() { sched_yield() }

    static func write(_ byte: UInt8) {
        var b = byte
        _ = Glibc.write(2, &b, 1)
    }

    static func entropy() -> UInt { UInt.random(in: 1...UInt.max) }
}
