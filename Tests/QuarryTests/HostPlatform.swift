// HostPlatform: the tests' Platform: one CPU per registered thread, output to stderr.
// Neighbours: Quarry's Platform protocol; TestArena (host memory for arenas).

import Quarry

#if canImport(Glibc)
import Glibc
#endif

/// Single-threaded host platform used by the core tests: interrupts are a no-op
/// and every caller is CPU 0.
enum HostPlatform: Platform {
    static var maxCPUs: Int { 1 }
    static var cpuIndex: Int { 0 }
    static func disableInterrupts() -> InterruptState { InterruptState(raw: 0) }
    static func restoreInterrupts(_ state: InterruptState) {}
    static func pause() {}
    static func write(_ byte: UInt8) { var b = byte; _ = Glibc.write(2, &b, 1) }
    static func entropy() -> UInt { UInt.random(in: 1...UInt.max) }
}

/// A page-aligned block of host memory to serve as an arena, filled with junk so
/// nothing depends on zeroed memory. Freed by `release()`.
struct TestArena {
    let base: UnsafeMutableRawPointer
    let size: Int

    init(size: Int, junk: UInt8 = 0xA5) {
        base = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        base.initializeMemory(as: UInt8.self, repeating: junk, count: size)
        self.size = size
    }

    func release() { base.deallocate() }

    func quarry(tuning: Tuning = .standard) throws(QuarryError) -> Quarry<HostPlatform> {
        try Quarry<HostPlatform>.initialize(base: base, size: size, tuning: tuning)
    }
}

/// Caches every heap has from `initialize` on: `quarry_cache` (the cache of caches)
/// and `quarry_magazine` (the per-CPU layer's magazines).
let internalCaches = 2

/// Collects text written through a ByteSink.
struct TextBuffer: ByteSink {
    var bytes: [UInt8] = []
    mutating func write(_ byte: UInt8) { bytes.append(byte) }
    var text: String { String(decoding: bytes, as: UTF8.self) }
}
