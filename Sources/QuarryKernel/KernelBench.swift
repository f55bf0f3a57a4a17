// KernelBench: rdtsc cycles per allocate+free pair on bare metal, the benchmark's
// "pair" workload (issue 6). Under QEMU's TCG the figures are indicative only.
// Neighbours: AllocatorSuite.swift (calls it on the main heap), Clock.swift (rdtsc),
// Benchmarks/ (the host figures that count).

import Quarry

enum KernelBench {
    static let pairs = 20_000
    static let sizes: InlineArray<4, Int> = [16, 64, 256, 1024]

    /// Prints cycles per pair for the cache API and the malloc front at each size, with
    /// one other object kept live so the heap is not empty, after a warm-up round.
    static func run(_ q: KernelQuarry) {
        Console.printLine("bench: rdtsc cycles per allocate+free pair (TCG: indicative only)")
        var completed = 0
        for k in 0..<4 {
            let size = sizes[k]
            guard let cache = try? q.createCache(name: "bench", size: size),
                let keep = try? cache.allocate(),
                let keepBlock = try? q.front.malloc(size)
            else { continue }
            let cacheCycles = measure { () throws(QuarryError) in try cache.free(try cache.allocate()) }
            let frontCycles = measure { () throws(QuarryError) in try q.front.free(try q.front.malloc(size)) }
            _ = try? cache.free(keep)
            _ = try? q.front.free(keepBlock)
            _ = cache.destroy()
            Console.line {
                Console.print("bench: pair ")
                Console.decimal(size)
                Console.print(" B: cache ")
                Console.decimal(cacheCycles)
                Console.print(" cycles, malloc front ")
                Console.decimal(frontCycles)
                Console.print(" cycles")
                Console.newline()
            }
            if cacheCycles > 0 && frontCycles > 0 { completed += 1 }
        }
        // Give back what the measurement used: the class caches and the magazines.
        q.front.shrink()
        q.drainAll()
        TestHarness.checkEqual("bench: cycles per pair measured at every size", completed, 4)
    }

    /// Cycles per call of `pair`, over `pairs` calls after as many warm-up calls; 0 on error.
    static func measure(_ pair: () throws(QuarryError) -> Void) -> Int {
        do throws(QuarryError) {
            for _ in 0..<pairs { try pair() }
            let start = Clock.now()
            for _ in 0..<pairs { try pair() }
            return Int((Clock.now() &- start) / UInt64(pairs))
        } catch {
            return 0
        }
    }
}
