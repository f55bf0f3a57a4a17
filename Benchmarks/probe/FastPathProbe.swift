// FastPathProbe: instantiates SlabCache's fast path in the Embedded object so it can be disassembled.
// Neighbours: Benchmarks/check-budgets.sh (builds Sources/Quarry + this file as module Quarry and
// checks the disassembly of the two exports below and of any SlabCache.allocate/free specialisation).
//
// The library alone holds no code for generic functions (Embedded Swift specialises them in the
// client), so this file plays the client. ProbePlatform is call-free by construction (globals
// stand in for the CPU index and the interrupt flag), so any call left in the fast path is
// Quarry's own.

nonisolated(unsafe) var probeCPU = 0
nonisolated(unsafe) var probeInterruptFlag: UInt = 1

enum ProbePlatform: Platform {
    static var maxCPUs: Int { 4 }
    @inline(__always) static var cpuIndex: Int { probeCPU }
    @inline(__always) static func disableInterrupts() -> InterruptState {
        let saved = InterruptState(raw: probeInterruptFlag)
        probeInterruptFlag = 0
        return saved
    }
    @inline(__always) static func restoreInterrupts(_ state: InterruptState) { probeInterruptFlag = state.raw }
    @inline(__always) static func pause() {}
    static func write(_ byte: UInt8) {}
    static func entropy() -> UInt { 0x9E37_79B9 }
}

/// The cache fast path as a kernel calls it: allocate one object, nil on any refusal.
@c public func quarry_probe_allocate(_ state: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
    let cache = SlabCache<ProbePlatform>(state: state.assumingMemoryBound(to: CacheState.self))
    do { return try cache.allocate() } catch { return nil }
}

/// The cache fast path as a kernel calls it: free one object, the error's raw value or 0.
@c public func quarry_probe_free(_ state: UnsafeMutableRawPointer, _ object: UnsafeMutableRawPointer) -> UInt8 {
    let cache = SlabCache<ProbePlatform>(state: state.assumingMemoryBound(to: CacheState.self))
    do throws(QuarryError) {
        try cache.free(object)
        return 0
    } catch {
        return error.rawValue
    }
}

/// The malloc front's fast path as a kernel calls it (`heap` is the instance's HeapState).
@c public func quarry_probe_malloc(_ heap: UnsafeMutableRawPointer, _ size: Int) -> UnsafeMutableRawPointer? {
    let front = MallocFront<ProbePlatform>(heap: heap.assumingMemoryBound(to: HeapState.self))
    do { return try front.malloc(size) } catch { return nil }
}

/// The malloc front's free as a kernel calls it: the error's raw value or 0.
@c public func quarry_probe_free_block(_ heap: UnsafeMutableRawPointer, _ object: UnsafeMutableRawPointer) -> UInt8 {
    let front = MallocFront<ProbePlatform>(heap: heap.assumingMemoryBound(to: HeapState.self))
    do throws(QuarryError) {
        try front.free(object)
        return 0
    } catch {
        return error.rawValue
    }
}
