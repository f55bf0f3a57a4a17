// fastpath-bench.swift: a host loop of allocate+free pairs on one cache, compiled into the
// Quarry module (so the fast path is specialised and inlined as in a kernel build) only by
// Benchmarks/fastpath/fastpath-callgrind.sh. Usage: fastpath-bench PAIRS [pair|object]
// (`object`: allocateObject() and the handle's free(), CacheObject.swift).

@main
enum FastPathBench {
    static func main() {
        let pairs = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 1_000_000 : 1_000_000
        let size = 8 << 20
        let base = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer { base.deallocate() }
        do throws(QuarryError) {
            let q = try Quarry<SingleCPUPlatform>.initialize(base: base, size: size)
            let cache = try q.createCache(name: "bench", size: 64)
            // Warm up: attach this CPU's magazines so every pair below is a hit.
            let warm = try cache.allocate()
            try cache.free(warm)
            let typed = CommandLine.arguments.count > 2 && CommandLine.arguments[2] == "object"
            var checksum: UInt = 0
            if typed {
                for _ in 0..<pairs { checksum &+= objectPair(cache) }
            } else {
                for _ in 0..<pairs { checksum &+= pair(cache) }
            }
            print("pairs: \(pairs), checksum \(checksum & 0xff)")
        } catch {
            print("error: \(error.name)")
        }
    }

    /// One allocate and one free: the unit the per-pair instruction count measures.
    @inline(never)
    static func pair(_ cache: SlabCache<SingleCPUPlatform>) -> UInt {
        guard let p = try? cache.allocate() else { return 0 }
        try? cache.free(p)
        return UInt(bitPattern: p)
    }

    /// One allocateObject and the handle's free (no checks: the type proves them).
    @inline(never)
    static func objectPair(_ cache: SlabCache<SingleCPUPlatform>) -> UInt {
        do throws(QuarryError) {
            let object = try cache.allocateObject()
            let p = UInt(bitPattern: object.pointer)
            object.free()
            return p
        } catch {
            return 0
        }
    }
}
