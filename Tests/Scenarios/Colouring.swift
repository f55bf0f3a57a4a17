// Colouring: consecutive slabs start their first object at rotating cache-line offsets,
// the cycle wraps after `colors` slabs, and no object crosses its slab's end. Written once
// for the host tests (SlabCacheTests) and the test kernel (AllocatorSuite).
// Neighbours: ScenarioChecks (reporting), Quarry/Slabs/SlabGeometry (the colours).
// Embedded Swift: no allocation, no existentials.

import Quarry

public enum ColouringScenario<P: Platform> {
    /// A cache of `size`-byte objects (at least a word) in one-page slabs; `slabs` slabs'
    /// worth allocated (at most 64 slabs), then freed and the cache destroyed. The live
    /// objects are chained through their first word (no table, no allocation).
    public static func run<C: ScenarioChecks>(_ q: Quarry<P>, size: Int, slabs: Int, _ checks: C) {
        guard let c = try? q.createCache(name: "colour", size: size) else {
            return checks.check("colouring: set-up", false, "create failed")
        }
        let s = c.statistics
        let perSlab = s.objectsPerSlab
        guard s.pagesPerSlab == 1 && slabs <= 64 && slabs > s.colors && size >= MemoryLayout<UInt>.size else {
            return checks.check("colouring: set-up", false, "not one-page slabs, or too many slabs")
        }
        var firsts = InlineArray<64, UInt>(repeating: 0)
        var chain: UInt = 0
        var crossing = 0
        var n = 0
        while n < slabs * perSlab {
            guard let p = try? c.allocate() else { break }
            p.storeBytes(of: chain, as: UInt.self)
            chain = UInt(bitPattern: p)
            if n % perSlab == 0 { firsts[n / perSlab] = UInt(bitPattern: p) }
            if (UInt(bitPattern: p) & 4095) + UInt(s.objectSize) > 4096 { crossing += 1 }
            n += 1
        }
        checks.checkEqual("colouring: every object allocated", n, slabs * perSlab)
        var rotation = true
        var j = 0
        while j < n / perSlab {
            if Int(firsts[j] & 4095) != (j % s.colors) * 64 { rotation = false }
            j += 1
        }
        checks.check(
            "colouring: slabs take the colours in cache-line steps, in turn, and wrap",
            s.colors > 1 && rotation && firsts[s.colors] & 4095 == firsts[0] & 4095, "wrong colour")
        checks.checkEqual("colouring: no object crosses its slab's end", crossing, 0)
        while chain != 0 {
            // Sound: an object of this cache, allocated above, holding the next link.
            let p = UnsafeMutableRawPointer(bitPattern: chain).unsafelyUnwrapped
            chain = p.load(as: UInt.self)
            _ = try? c.free(p)
        }
        q.checkInvariants()
        checks.checkEqual("colouring: cache destroyed empty", c.destroy(), 0)
    }
}
