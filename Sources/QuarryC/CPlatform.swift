// CPlatform: the platform of the C ABI's one global instance, chosen at build time.
// Neighbours: CABI (its user), Quarry's Platform protocol, Sources/QuarryX86 (X86Platform,
// compiled into the same Embedded module as this file).

#if !hasFeature(Embedded)
@_spi(CABI) import Quarry
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
#else
/// The host library (tests of the C ABI): one CPU, so calls must not overlap (the
/// tests run them from one thread at a time); output goes to stderr.
enum HostCPlatform: Platform {
    static var maxCPUs: Int { 1 }
    static var cpuIndex: Int { 0 }
    static func disableInterrupts() -> InterruptState { InterruptState(raw: 0) }
    static func restoreInterrupts(_ state: InterruptState) {}
    static func pause() {}
    static func write(_ byte: UInt8) {
        var b = byte
        _ = Glibc.write(2, &b, 1)
    }
    static func entropy() -> UInt { UInt.random(in: 1...UInt.max) }
}

typealias CPlatform = HostCPlatform
#endif
