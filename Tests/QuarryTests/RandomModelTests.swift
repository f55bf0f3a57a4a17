import Testing
@testable import Quarry
import QuarryScenarios
#if canImport(Glibc)
import Glibc
#endif

/// Seeded random action sequences against a simple model: live objects never overlap,
/// honour their alignment, keep their contents (a cookie per object, verified on
/// free), and every page comes back at the end. Run with standard and tiny geometry.
@Suite struct RandomModelTests {
    struct Config: CustomTestStringConvertible, Sendable {
        var tuning: Tuning
        var steps: Int
        var arenaBytes: Int
        var checkEvery: Int
        var testDescription: String { "maxObjectsPerSlab \(tuning.maxObjectsPerSlab), \(steps) steps" }
    }

    static let configs = [
        Config(tuning: .standard, steps: 30_000, arenaBytes: 32 << 20, checkEvery: 997),
        Config(tuning: .tiny, steps: 30_000, arenaBytes: 32 << 20, checkEvery: 251),
        Config(tuning: Tuning(maxObjectsPerSlab: 1, emptySlabReserve: 0), steps: 8_000, arenaBytes: 8 << 20, checkEvery: 1),
    ]

    @Test(arguments: configs, testSeeds([11, 22, 0xDEADBEEF]))
    func randomActions(config: Config, seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        let arena = TestArena(size: config.arenaBytes)
        defer { arena.release() }
        let q = try arena.quarry(tuning: config.tuning)
        let first = q.pageStatistics
        var caches: [(cache: SlabCache<HostPlatform>, size: Int, alignment: Int)] = []
        var live: [LiveObject] = []
        var nextCookie: UInt64 = seed &* 0x1000
        var outOfMemory = 0

        func newCache() throws {
            let size = Bool.random(using: &rng) ? Int.random(in: 1...256, using: &rng) : Int.random(in: 1...20_000, using: &rng)
            let alignment = 1 << Int.random(in: 0...12, using: &rng)
            caches.append((try q.createCache(name: "random", size: size, alignment: alignment), size, alignment))
        }
        for _ in 0..<4 { try newCache() }

        for step in 0..<config.steps {
            let roll = Int.random(in: 0..<1000, using: &rng)
            if roll < 5 {
                try newCache()
            } else if roll < 8, caches.count > 1 {
                // Destroy a cache: empty it first, as the API requires.
                let i = Int.random(in: 0..<caches.count, using: &rng)
                for o in live where o.cacheIndex == i {
                    #expect(Cookie.intact(UnsafeMutableRawPointer(bitPattern: o.address)!, size: o.size, key: UInt(truncatingIfNeeded: o.cookie)),
                            "seed \(seed) step \(step): contents changed")
                    try caches[i].cache.free(UnsafeMutableRawPointer(bitPattern: o.address)!)
                }
                live.removeAll { $0.cacheIndex == i }
                #expect(caches[i].cache.destroy() == 0)
                caches.remove(at: i)
                for j in live.indices where live[j].cacheIndex > i { live[j].cacheIndex -= 1 }
            } else if roll < 560 || live.isEmpty {
                let i = Int.random(in: 0..<caches.count, using: &rng)
                let (cache, size, alignment) = caches[i]
                do throws(QuarryError) {
                    let p = try cache.allocate()
                    #expect(UInt(bitPattern: p) % UInt(alignment) == 0, "seed \(seed) step \(step): misaligned")
                    nextCookie &+= 1
                    Cookie.fill(p, size: size, key: UInt(truncatingIfNeeded: nextCookie))
                    live.append(LiveObject(address: UInt(bitPattern: p), size: size, cookie: nextCookie, cacheIndex: i))
                } catch {
                    #expect(error == .outOfMemory, "seed \(seed) step \(step)")
                    outOfMemory += 1
                }
            } else if roll < 990 {
                let k = Int.random(in: 0..<live.count, using: &rng)
                let o = live.remove(at: k)
                let p = UnsafeMutableRawPointer(bitPattern: o.address)!
                #expect(Cookie.intact(p, size: o.size, key: UInt(truncatingIfNeeded: o.cookie)), "seed \(seed) step \(step): contents changed")
                try caches[o.cacheIndex].cache.free(p)
            } else {
                // Misuse the model knows the answer to: an interior pointer, then a double free.
                let k = Int.random(in: 0..<live.count, using: &rng)
                let o = live[k]
                let cache = caches[o.cacheIndex].cache
                if cache.objectSize > Geometry.granule {
                    #expect(throws: QuarryError.interiorPointer) { try cache.free(UnsafeMutableRawPointer(bitPattern: o.address + 8)!) }
                }
                live.remove(at: k)
                try cache.free(UnsafeMutableRawPointer(bitPattern: o.address)!)
                // A double free: `.doubleFree` while the slab lives, `.freePage` once the
                // free released the slab's pages.
                do throws(QuarryError) {
                    try cache.free(UnsafeMutableRawPointer(bitPattern: o.address)!)
                    Issue.record("seed \(seed) step \(step): a double free was accepted")
                } catch {
                    #expect(error == .doubleFree || error == .freePage, "seed \(seed) step \(step)")
                }
            }
            if step % config.checkEvery == 0 {
                q.checkInvariants()
                #expect(noOverlap(live), "seed \(seed) step \(step): two live objects overlap")
            }
        }
        #expect(noOverlap(live), "seed \(seed): two live objects overlap")
        for o in live {
            let p = UnsafeMutableRawPointer(bitPattern: o.address)!
            #expect(Cookie.intact(p, size: o.size, key: UInt(truncatingIfNeeded: o.cookie)), "seed \(seed): contents changed")
            try caches[o.cacheIndex].cache.free(p)
        }
        for c in caches { #expect(c.cache.destroy() == 0) }
        q.shrink()
        q.checkInvariants()
        let last = q.pageStatistics
        #expect(last.pagesInUse == 0 && last.bump == first.bump, "seed \(seed): pages leaked")
    }
}
