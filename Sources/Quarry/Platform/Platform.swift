// Platform: the one boundary between Quarry and the machine it runs on.
// Neighbours: SpinLock (uses interrupt save/restore and pause), CPUCache and CPUState (use
// cpuIndex), the kernel's X86Platform and the tests' ThreadPlatform.

/// What Quarry needs from the machine. Every requirement is static: a platform is
/// a type, passed as a generic parameter (`Quarry<P>`), never a value or an
/// existential, so Embedded Swift specialises every call and the fast path stays
/// free of indirect calls.
///
/// Contract for conformances:
/// - `cpuIndex` is in `0 ..< maxCPUs` and stable while interrupts are disabled on
///   the calling CPU (a thread that is not migrated, on the host). No two CPUs (or
///   threads) use one index of one heap at the same time: the per-CPU layer's
///   magazines of CPU i are touched only by code running as CPU i.
/// - `disableInterrupts()` returns the previous state and masks interrupts on this
///   CPU; `restoreInterrupts(_:)` puts back exactly that state. They nest:
///   disable, disable, restore, restore leaves interrupts as they were at first.
///   Never a blind enable. While masked, no interrupt handler runs on this CPU
///   (NMIs excepted): this is what makes the per-CPU fast path and every lock section
///   atomic with respect to handlers (CPUCache.swift). The host's ThreadPlatform
///   (tests) defers its signal "interrupts" while masked for the same reason.
/// - `pause()` is the spin-wait hint (x86 `pause`).
/// - `write(_:)` emits one byte of diagnostic text (serial port, stderr). It must
///   not allocate and must be callable with interrupts disabled.
public protocol Platform {
    /// The most CPUs this platform will ever report; per-CPU arrays are this long.
    static var maxCPUs: Int { get }
    /// Index of the executing CPU, `0 ..< maxCPUs`.
    static var cpuIndex: Int { get }
    /// Masks interrupts on this CPU and returns the state to restore.
    static func disableInterrupts() -> InterruptState
    /// Restores the state `disableInterrupts()` returned.
    static func restoreInterrupts(_ state: InterruptState)
    /// Spin-wait hint.
    static func pause()
    /// Writes one byte of diagnostic output.
    static func write(_ byte: UInt8)
    /// A random or at least unpredictable word for hardening secrets
    /// (`rdrand` or `rdtsc` on bare metal, the system's generator on the host).
    static func entropy() -> UInt
}

/// Opaque saved interrupt state (the flags register on x86).
public struct InterruptState: Sendable {
    /// The saved word, meaningful only to the platform that saved it.
    public var raw: UInt
    /// Wraps a platform's saved word (for `Platform.disableInterrupts()` implementations).
    @inline(__always) public init(raw: UInt) { self.raw = raw }
}

/// A platform for code that runs on one CPU with no interrupts: tests of the
/// single-threaded core and the kernel before SMP is up.
public enum SingleCPUPlatform: Platform {
    /// One CPU.
    public static var maxCPUs: Int { 1 }
    /// Always 0.
    public static var cpuIndex: Int { 0 }
    /// Does nothing (there are no interrupts to mask) and returns a zero state.
    @inline(__always) public static func disableInterrupts() -> InterruptState { InterruptState(raw: 0) }
    /// Does nothing.
    @inline(__always) public static func restoreInterrupts(_ state: InterruptState) {}
    /// Does nothing (one CPU never waits for another).
    @inline(__always) public static func pause() {}
    /// Discards the byte: this platform has no output.
    public static func write(_ byte: UInt8) {}
    /// A fixed word: no hardening secret is unpredictable on this platform.
    public static func entropy() -> UInt { 0x9E37_79B9 }
}
