// CPlatform: the platform of the C ABI's one global instance, chosen at build time, and
// CCaller: what a C call needs from its caller (a CPU index, a last-error word).
// Neighbours: CABI (their user), Quarry's Platform protocol, Sources/QuarryX86 (X86Platform,
// compiled into the same Embedded module as this file), Sources/CQuarryHost (the host's
// thread-local words).

import Synchronization

#if !hasFeature(Embedded)
@_spi(CABI) import Quarry
import CQuarryHost
#if canImport(Glibc)
import Glibc
#endif
#endif

#if hasFeature(Embedded)
#if QUARRY_PLATFORM_SINGLE_CPU
/// A library for a machine without X86Platform (or before it is written): one CPU,
/// no interrupts, no output. Build with `-D QUARRY_PLATFORM_SINGLE_CPU`.
typealias CPlatform = SingleCPUPlatform
#else
/// The bare-metal x86 library: Sources/QuarryX86 is compiled into the same module.
typealias CPlatform = X86Platform
#endif

/// The caller of a C function on bare metal: a CPU, whose index the platform reads
/// (`CPlatform.cpuIndex`), so every caller may enter.
///
/// Last error: one byte per CPU, indexed by the CPU index, written and read with relaxed
/// atomic operations (no fence, no locked instruction). Only its CPU writes it, but an
/// interrupt handler on that CPU whose own call is refused, between a refusal and the
/// read, overwrites it: a diagnosis, not a decision.
enum CCaller {
    @inline(__always) static func enter() -> Bool { true }
    @inline(__always) static var hasCPU: Bool { true }

    /// One error byte per CPU index, in `.bss` (zero before any code runs: no lazy
    /// initialisation, whose once-guard an interrupt handler could spin on). Touched only
    /// through `error(_:)`, as atomics.
    nonisolated(unsafe) static var errorBytes = InlineArray<64, UInt8>(repeating: 0)

    static var lastError: UInt8 { error { $0.load(ordering: .relaxed) } }
    static func setLastError(_ raw: UInt8) { error { $0.store(raw, ordering: .relaxed) } }

    /// Calls `body` with the calling CPU's error byte.
    @inline(__always)
    static func error<R>(_ body: (borrowing Atomic<UInt8>) -> R) -> R {
        let cpu = CPlatform.cpuIndex
        precondition(cpu >= 0 && cpu < 64, "quarry: CPU index beyond the last-error bytes")
        // Sound: the global's storage is 64 bytes at a fixed address; each byte is only
        // accessed through this atomic view (Embedded Swift checks no exclusivity at
        // run time, and the accesses to distinct CPUs' bytes do not overlap).
        return withUnsafeMutablePointer(to: &errorBytes) { bytes in
            body((UnsafeMutableRawPointer(bytes) + cpu).assumingMemoryBound(to: Atomic<UInt8>.self).pointee)
        }
    }
}
#else
/// The host library (tests, benchmarks, Linux programs): each thread that calls Quarry
/// is a CPU. Its index is claimed on the thread's first call (`CCaller.enter`), kept in
/// thread-local storage and released when the thread exits; at most `maxCPUs` threads
/// hold one at a time. So the index is stable for the whole of every call and no two
/// threads use one at once (Platform's contract). There are no interrupts to mask: a
/// signal handler must not call Quarry (nothing defers it the way masking does).
enum HostCPlatform: Platform {
    static var maxCPUs: Int { 64 }
    /// The calling thread's index. Every C function enters through `CABI.instance`,
    /// which claims one first: no call reaches here without it.
    static var cpuIndex: Int {
        @inline(__always) get {
            let cpu = quarry_host_cpu()
            assert(cpu >= 0, "HostCPlatform: a thread without a CPU index inside Quarry")
            return Int(cpu)
        }
    }
    static func disableInterrupts() -> InterruptState { InterruptState(raw: 0) }
    static func restoreInterrupts(_ state: InterruptState) {}
    static func pause() { sched_yield() }
    static func write(_ byte: UInt8) {
        var b = byte
        _ = Glibc.write(2, &b, 1)
    }
    static func entropy() -> UInt { UInt.random(in: 1...UInt.max) }
}

typealias CPlatform = HostCPlatform

/// The caller of a C function on the host: a thread. Its CPU index and its last error
/// live in thread-local storage (Sources/CQuarryHost), so the error is per thread (C's
/// errno rule) and a thread without an index still has one.
///
/// CPU indexes: `owners[i]` is true while a thread holds index i. A thread claims the
/// first free one with an acquiring compare-exchange and gives it back at exit (a
/// pthread key's destructor) with a releasing store, so the previous holder's last use
/// of the index's per-CPU state happens before the next holder's first. The per-CPU
/// state itself (magazines, counters) stays with the index: the next thread goes on
/// with it. A thread that finds all `maxCPUs` taken is refused with `.tooManyThreads`,
/// and tries again on its next call.
enum CCaller {
    @inline(__always) static func enter() -> Bool { quarry_host_cpu() >= 0 || claimCPU() }
    @inline(__always) static var hasCPU: Bool { quarry_host_cpu() >= 0 }

    static var lastError: UInt8 { quarry_host_error() }
    static func setLastError(_ raw: UInt8) { quarry_host_set_error(raw) }

    /// The calling thread's CPU index, -1 without one (tests).
    static var cpu: Int { Int(quarry_host_cpu()) }

    nonisolated(unsafe) static let owners: UnsafeMutablePointer<Atomic<Bool>> = {
        let table = UnsafeMutablePointer<Atomic<Bool>>.allocate(capacity: HostCPlatform.maxCPUs)
        for i in 0..<HostCPlatform.maxCPUs { (table + i).initialize(to: Atomic<Bool>(false)) }
        return table
    }()

    /// Holds index + 1 for each thread with an index; its destructor runs at thread exit.
    static let exitKey: pthread_key_t = {
        var key = pthread_key_t()
        precondition(
            pthread_key_create(&key) { value in
                CCaller.releaseCPU(Int(bitPattern: value) - 1)
            } == 0, "quarry: pthread_key_create")
        return key
    }()

    /// Claims a free CPU index for the calling thread; false when all are taken.
    @inline(never)
    static func claimCPU() -> Bool {
        let key = exitKey
        var i = 0
        while i < HostCPlatform.maxCPUs {
            if owners[i].compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged {
                quarry_host_set_cpu(Int32(i))
                // Sound: the key's value is only ever read back as this integer.
                pthread_setspecific(key, UnsafeRawPointer(bitPattern: i + 1))
                return true
            }
            i += 1
        }
        return false
    }

    /// Gives index `cpu` back (thread exit, when the thread is outside every call).
    static func releaseCPU(_ cpu: Int) {
        guard cpu >= 0 && cpu < HostCPlatform.maxCPUs else { return }
        quarry_host_set_cpu(-1)
        owners[cpu].store(false, ordering: .releasing)
    }
}
#endif
