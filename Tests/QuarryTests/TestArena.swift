// TestArena: host memory for a test's arena, and the Quarry over it.
// Neighbours: ThreadPlatform (the platform every test heap runs on), TestSupport.

import Quarry

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

    /// A heap of one CPU (the single-CPU suites).
    func quarry(tuning: Tuning = .standard) throws(QuarryError) -> Quarry<ThreadPlatform<1>> {
        try quarry(on: ThreadPlatform<1>.self, tuning: tuning)
    }

    /// A heap of `cpus` CPUs (the threaded suites: `ThreadPlatform<16>`).
    func quarry<let cpus: Int>(
        on platform: ThreadPlatform<cpus>.Type, tuning: Tuning = .standard
    ) throws(QuarryError) -> Quarry<ThreadPlatform<cpus>> {
        try Quarry<ThreadPlatform<cpus>>.initialize(base: base, size: size, tuning: tuning)
    }
}
