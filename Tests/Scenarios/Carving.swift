// Carving: a cache with randomized free slots carves each slab in a permutation (and each
// slab in another one), a plain cache in address order; validation accepts exactly the
// carved objects and everything frees back. Written once for the host tests (SafetyTests)
// and the test kernel (CorruptionSuite).
// Neighbours: ScenarioChecks (reporting), Quarry/Slabs/CacheOptions (randomizeFreeSlots).
// Embedded Swift: no allocation, no existentials.

import Quarry

public enum CarvingScenario<P: Platform> {
    /// Slabs of at most this many objects (64-byte objects in the standard tuning).
    static var capacity: Int { 512 }

    public static func run<C: ScenarioChecks>(_ q: Quarry<P>, _ checks: C) {
        guard let plain = try? q.createCache(name: "carve-plain", size: 64),
            let shuffled = try? q.createCache(
                name: "carve-shuffled", size: 64,
                options: CacheOptions(randomizeFreeSlots: true))
        else { return checks.check("carving: set-up", false, "create failed") }
        let s = shuffled.statistics
        let n = s.objectsPerSlab
        guard n <= capacity else { return checks.check("carving: set-up", false, "slabs too large") }
        var ordered = InlineArray<512, UInt>(repeating: 0)
        var first = InlineArray<512, UInt>(repeating: 0)
        var second = InlineArray<512, UInt>(repeating: 0)
        var allocated = true
        var i = 0
        while i < n {
            guard let a = try? plain.allocate(), let b = try? shuffled.allocate() else {
                allocated = false
                break
            }
            ordered[i] = UInt(bitPattern: a)
            first[i] = UInt(bitPattern: b)
            i += 1
        }
        i = 0
        while allocated && i < n {
            guard let b = try? shuffled.allocate() else {
                allocated = false
                break
            }
            second[i] = UInt(bitPattern: b)
            i += 1
        }
        checks.check("carving: two slabs' worth allocated", allocated, "refused")
        guard allocated else { return }
        var ascending = 0, descending = 0, distinct = true
        var low1 = UInt.max, high1: UInt = 0, low2 = UInt.max
        i = 0
        while i < n {
            if i > 0 && ordered[i] > ordered[i - 1] { ascending += 1 }
            if i > 0 && first[i] < first[i - 1] { descending += 1 }
            var j = 0
            while j < i {
                if first[j] == first[i] { distinct = false }
                j += 1
            }
            low1 = min(low1, first[i])
            high1 = max(high1, first[i])
            low2 = min(low2, second[i])
            i += 1
        }
        checks.checkEqual("carving: a plain cache carves in address order", ascending, n - 1)
        checks.check(
            "carving: a randomized cache carves a slab in a permutation of its objects",
            descending > 0 && distinct && high1 - low1 < UInt(s.pagesPerSlab * 4096), "not a permutation of one slab")
        var sameOrder = true
        i = 0
        while i < n {
            if first[i] - low1 != second[i] - low2 { sameOrder = false }
            i += 1
        }
        // Two slabs draw the same permutation by chance with probability about
        // 1 / (4 × objectsPerSlab) (4 steps, a start below the capacity): then up to
        // `capacity / n` more slabs are carved and each compared with the first, so a
        // false failure needs every one of them to repeat it.
        var extra = InlineArray<512, UInt>(repeating: 0)
        var extraCount = 0
        while sameOrder && allocated && extraCount + n <= capacity {
            var low = UInt.max
            i = 0
            while i < n {
                guard let b = try? shuffled.allocate() else {
                    allocated = false
                    break
                }
                extra[extraCount + i] = UInt(bitPattern: b)
                low = min(low, UInt(bitPattern: b))
                i += 1
            }
            guard allocated else {
                extraCount += i  // freed below with the rest
                break
            }
            i = 0
            while i < n {
                if first[i] - low1 != extra[extraCount + i] - low { sameOrder = false }
                i += 1
            }
            extraCount += n
        }
        checks.check("carving: the next slab is carved in another permutation", !sameOrder || n < 4, "the same order")
        q.checkInvariants()
        checks.checkEqual("carving: validate accepts exactly the carved objects", shuffled.validate().total, 0)
        i = 0
        while i < extraCount {
            _ = try? shuffled.free(UnsafeMutableRawPointer(bitPattern: extra[i]))
            i += 1
        }
        i = 0
        while i < n {
            _ = try? plain.free(UnsafeMutableRawPointer(bitPattern: ordered[i]))
            _ = try? shuffled.free(UnsafeMutableRawPointer(bitPattern: first[i]))
            _ = try? shuffled.free(UnsafeMutableRawPointer(bitPattern: second[i]))
            i += 1
        }
        q.drainAll()
        q.checkInvariants()
        checks.checkEqual("carving: validate finds nothing after every free", shuffled.validate().total, 0)
        checks.checkEqual("carving: caches destroyed empty", plain.destroy() + shuffled.destroy(), 0)
    }
}
