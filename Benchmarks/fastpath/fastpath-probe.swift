// fastpath-probe.swift: entry points that instantiate the per-CPU fast path for a concrete
// platform, compiled into the Quarry module only by Benchmarks/fastpath/fastpath-disasm.sh
// (never part of the library), so the Embedded object can be disassembled and checked.

@c(quarry_probe_allocate)
public func quarryProbeAllocate(_ state: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
    try? SlabCache<SingleCPUPlatform>(state: state.assumingMemoryBound(to: CacheState.self)).allocate()
}

@c(quarry_probe_free)
public func quarryProbeFree(_ state: UnsafeMutableRawPointer, _ object: UnsafeMutableRawPointer) -> Bool {
    do throws(QuarryError) {
        try SlabCache<SingleCPUPlatform>(state: state.assumingMemoryBound(to: CacheState.self)).free(object)
        return true
    } catch {
        return false
    }
}
