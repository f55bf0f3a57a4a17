// OutOfMemory: a heap of 64 KiB run out of pages through every path, written once for the
// host tests (BadInputTests) and the test kernel (AllocatorSuite): a cache's next slab, a
// new cache's first slab, a multi-page slab, the cache of caches itself. Each refusal is
// `.outOfMemory` (an error, not a trap), nothing is lost, everything works again after
// frees, and every page comes back at the end.
// Neighbours: ScenarioChecks (reporting), Misuse (the other refusals). Embedded Swift:
// no allocation, no existentials.

import Quarry

public enum OutOfMemoryScenario<P: Platform> {
    /// `q` is a fresh heap of about 64 KiB (8 to 15 pages) with no cache of its own.
    public static func run<C: ScenarioChecks>(_ q: Quarry<P>, _ checks: C) {
        guard let c = try? q.createCache(name: "oom", size: 4000) else {
            return checks.check("out of memory: set-up", false, "create failed")
        }
        // One object per page until the arena is full.
        var held = InlineArray<32, UInt>(repeating: 0)
        var n = 0
        var refusal: QuarryError? = nil
        while n < 32 {
            do throws(QuarryError) {
                held[n] = UInt(bitPattern: try c.allocate())
                n += 1
            } catch {
                refusal = error
                break
            }
        }
        checks.check(
            "out of memory: a full arena refuses with .outOfMemory, not a trap", refusal == .outOfMemory,
            "no refusal, or another error")
        let pages = q.pageStatistics
        checks.checkEqual("out of memory: every page in use before refusing", pages.pagesInUse, pages.pageCount)
        checks.checkEqual(
            "out of memory: every object of the cache handed out before refusing", n,
            c.statistics.totalObjects)
        checks.checkEqual("out of memory: the refusal counted once", Int(c.statistics.failures), 1)
        // A new cache's first slab and a multi-page slab cannot come from a full arena either.
        refused("out of memory: a new cache's first object is refused", checks) { () throws(QuarryError) in
            let small = try q.createCache(name: "oom-small", size: 8)
            defer { _ = small.destroy() }
            _ = try small.allocate()
        }
        guard let big = try? q.createCache(name: "oom-big", size: 8000) else {  // 2-page slabs
            return checks.check("out of memory: set-up", false, "create failed")
        }
        refused("out of memory: a multi-page slab is refused", checks) { () throws(QuarryError) in
            _ = try big.allocate()
        }
        q.checkInvariants()
        // Four pages back (drained out of this CPU's magazines to their slabs, the empty
        // slabs released), then the 2-page slab fits.
        var i = 0
        while i < 4 && i < n {
            _ = try? c.free(UnsafeMutableRawPointer(bitPattern: held[i]))
            i += 1
        }
        c.drainCPU()
        c.shrink()
        var reused = false
        if let b = try? big.allocate() {
            reused = true
            _ = try? big.free(b)
        }
        checks.check("out of memory: pages freed after the refusals serve a multi-page slab", reused, "still refused")
        while i < n {
            _ = try? c.free(UnsafeMutableRawPointer(bitPattern: held[i]))
            i += 1
        }
        checks.checkEqual("out of memory: caches destroyed empty", c.destroy() + big.destroy(), 0)
        q.checkInvariants()
        cacheOfCaches(q, checks)
        q.shrink()
        checks.checkEqual("out of memory: every page came back", q.pageStatistics.pagesInUse, 0)
    }

    /// Every page held by one cache, then caches created until the cache of caches needs
    /// a slab: refused with `.outOfMemory`; everything destroyed after.
    static func cacheOfCaches<C: ScenarioChecks>(_ q: Quarry<P>, _ checks: C) {
        guard let hog = try? q.createCache(name: "oom-hog", size: 4096) else {
            return checks.check("out of memory: set-up", false, "create failed")
        }
        var held = InlineArray<32, UInt>(repeating: 0)
        var n = 0
        while n < 32, let p = try? hog.allocate() {
            held[n] = UInt(bitPattern: p)
            n += 1
        }
        var made = InlineArray<256, SlabCache<P>?>(repeating: nil)
        var count = 0
        var refusal: QuarryError? = nil
        while refusal == nil && count < 256 {
            do throws(QuarryError) {
                made[count] = try q.createCache(name: "oom-made", size: 8)
                count += 1
            } catch {
                refusal = error
            }
        }
        checks.check(
            "out of memory: creating a cache when the cache of caches needs a page is refused",
            refusal == .outOfMemory, "no refusal, or another error")
        q.checkInvariants()
        var leaked = 0
        var i = 0
        while i < count {
            leaked += made[i].unsafelyUnwrapped.destroy()
            i += 1
        }
        i = 0
        while i < n {
            _ = try? hog.free(UnsafeMutableRawPointer(bitPattern: held[i]))
            i += 1
        }
        leaked += hog.destroy()
        checks.checkEqual("out of memory: the caches made before the refusal destroyed empty", leaked, 0)
        q.checkInvariants()
    }

    /// `body` throws `.outOfMemory`.
    static func refused<C: ScenarioChecks>(_ name: StaticString, _ checks: C, _ body: () throws(QuarryError) -> Void) {
        do throws(QuarryError) {
            try body()
            checks.check(name, false, "accepted")
        } catch {
            checks.check(name, error == .outOfMemory, "refused with another error")
        }
    }
}
