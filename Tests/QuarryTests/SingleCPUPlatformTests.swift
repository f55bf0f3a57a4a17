// SingleCPUPlatformTests: the library's own one-CPU platform, the one the single-CPU
// libquarry.a runs on (`make lib QUARRY_PLATFORM=single-cpu`, measured by `make budgets`):
// its contract, and a whole heap's life over it, from the first cache to the last page.
// Neighbours: Platform.swift (SingleCPUPlatform), ThreadPlatform (the tests' platform,
// which writes to stderr), TestSupport (cookies, overlap check).

import QuarryScenarios
import Testing

@testable import Quarry

@Suite struct SingleCPUPlatformTests {
    /// One CPU, index 0; masking nests and changes nothing; no output; a fixed, non-zero
    /// entropy word.
    @Test func oneCPUWithoutInterrupts() {
        #expect(SingleCPUPlatform.maxCPUs == 1)
        #expect(SingleCPUPlatform.cpuIndex == 0)
        let outer = SingleCPUPlatform.disableInterrupts()
        let inner = SingleCPUPlatform.disableInterrupts()
        #expect(outer.raw == 0 && inner.raw == 0)
        SingleCPUPlatform.restoreInterrupts(inner)
        SingleCPUPlatform.restoreInterrupts(outer)
        SingleCPUPlatform.pause()
        SingleCPUPlatform.write(UInt8(ascii: "x"))
        #expect(SingleCPUPlatform.entropy() != 0)
        #expect(SingleCPUPlatform.entropy() == SingleCPUPlatform.entropy())
    }

    /// Caches (one with poison and a red zone), the malloc front with spans and realloc,
    /// under `Tuning.tiny` so that every refill and exchange path runs: cookies survive,
    /// no two live blocks overlap, every check passes, a double free is refused; then,
    /// everything freed and drained, every page is back and the bump pointer at 0.
    @Test func aHeapFromFirstCacheToLastPage() throws {
        let arena = TestArena(size: 16 << 20)
        defer { arena.release() }
        let q = try Quarry<SingleCPUPlatform>.initialize(base: arena.base, size: arena.size, tuning: .tiny)
        let shapes = [(size: 24, alignment: 8), (size: 200, alignment: 64), (size: 5000, alignment: 16)]
        let caches = [
            try q.createCache(name: "small", size: shapes[0].size, alignment: shapes[0].alignment),
            try q.createCache(name: "aligned", size: shapes[1].size, alignment: shapes[1].alignment),
            try q.createCache(
                name: "debug", size: shapes[2].size, alignment: shapes[2].alignment,
                options: CacheOptions(poison: true, redZone: 8)),
        ]
        var rng = SeededGenerator(seed: 0x51_C0)
        var cookie: UInt64 = 1
        var objects: [LiveObject] = []
        var blocks: [LiveObject] = []
        for _ in 0..<3000 {
            switch rng.next() % 6 {
            case 0, 1:
                let i = Int(rng.next() % 3)
                let p = try caches[i].allocate()
                #expect(UInt(bitPattern: p) % UInt(shapes[i].alignment) == 0)
                Cookie.fill(p, size: shapes[i].size, key: UInt(truncatingIfNeeded: cookie))
                objects.append(
                    LiveObject(address: UInt(bitPattern: p), size: shapes[i].size, cookie: cookie, cacheIndex: i))
                cookie += 1
            case 2 where !objects.isEmpty:
                let o = objects.remove(at: Int(rng.next() % UInt64(objects.count)))
                let p = UnsafeMutableRawPointer(bitPattern: o.address)!
                #expect(Cookie.intact(p, size: o.size, key: UInt(truncatingIfNeeded: o.cookie)))
                try caches[o.cacheIndex].free(p)
            case 3:
                let size =
                    rng.next() % 8 == 0
                    ? SizeClasses.largest + 1 + Int(rng.next() % 20_000)
                    : 1 + Int(rng.next() % 2000)
                let p = try q.front.malloc(size)
                Cookie.fill(p, size: size, key: UInt(truncatingIfNeeded: cookie))
                blocks.append(LiveObject(address: UInt(bitPattern: p), size: size, cookie: cookie, cacheIndex: -1))
                cookie += 1
            case 4 where !blocks.isEmpty:
                let i = Int(rng.next() % UInt64(blocks.count))
                let o = blocks[i]
                let size = 1 + Int(rng.next() % 40_000)
                let p = try q.front.realloc(UnsafeMutableRawPointer(bitPattern: o.address), size)
                // The cookie's pattern is stable for prefixes of whole words.
                #expect(
                    Cookie.intact(p, size: min(o.size, size) & ~7, key: UInt(truncatingIfNeeded: o.cookie)),
                    "realloc kept the common prefix")
                Cookie.fill(p, size: size, key: UInt(truncatingIfNeeded: cookie))
                blocks[i] = LiveObject(address: UInt(bitPattern: p), size: size, cookie: cookie, cacheIndex: -1)
                cookie += 1
            case 5 where !blocks.isEmpty:
                let o = blocks.remove(at: Int(rng.next() % UInt64(blocks.count)))
                let p = UnsafeMutableRawPointer(bitPattern: o.address)!
                #expect(Cookie.intact(p, size: o.size, key: UInt(truncatingIfNeeded: o.cookie)))
                try q.front.free(p)
            default:
                break
            }
        }
        #expect(noOverlap(objects + blocks))
        for cache in caches { cache.checkInvariants() }
        q.checkInvariants()
        #expect(q.validate() == nil)
        var table = TextBuffer()
        q.writeSlabinfo(to: &table)
        #expect(table.text.contains("aligned") && table.text.contains("malloc-"))
        q.printSlabinfo()  // through SingleCPUPlatform.write: discarded

        let victim = try caches[0].allocate()
        try caches[0].free(victim)
        #expect(throws: QuarryError.doubleFree) { try caches[0].free(victim) }
        #expect(caches[0].statistics.count(of: .doubleFree) == 1)

        for o in objects { try caches[o.cacheIndex].free(UnsafeMutableRawPointer(bitPattern: o.address)) }
        for o in blocks { try q.front.free(UnsafeMutableRawPointer(bitPattern: o.address)) }
        for cache in caches { #expect(cache.destroy() == 0) }
        q.drainAll()
        q.front.shrink()
        q.shrink()
        q.checkInvariants()
        #expect(q.cacheCount == internalCaches)
        #expect(q.pageStatistics.pagesInUse == 0)
        #expect(q.pageStatistics.bump == 0, "the page allocator is in its first state again")
    }
}
