// Misuse: every refused input, written once for the host tests (SafetyTests) and the test
// kernel (CorruptionSuite): each refusal with its own error, counted once in the cache's
// statistics, reported once to the error hook with the cache and the address, and nothing
// else changed; after them the heap is consistent (validate, invariants) and the objects
// the refused calls named still free normally.
// Neighbours: ScenarioChecks (reporting, the hook recorder), Quarry/Platform/QuarryError (the
// reasons), Quarry/Slabs/SlabCache (`locate`, the one door a free goes through).

@_spi(CABI) import Quarry

public enum MisuseScenario<P: Platform> {
    /// Everything observable about a heap that a refused call must leave unchanged: the
    /// page allocator's counters and, per cache in registry order, its active, cached
    /// and allocated objects, frees and slabs (mixed into one word: any change of one
    /// of them changes it).
    struct Snapshot: Equatable {
        var pages: (inUse: Int, freeRuns: Int, bump: Int, runsAllocated: Int, runsFreed: Int)
        var caches = 0
        var mix: UInt64 = 0xCBF2_9CE4_8422_2325

        init(_ q: Quarry<P>) {
            let p = q.pageStatistics
            pages = (p.pagesInUse, p.freeRunPages, p.bump, p.runsAllocated, p.runsFreed)
            var caches = 0
            var mix = self.mix
            q.forEachCache { c in
                let s = c.statistics
                caches += 1
                let values: InlineArray<6, UInt64> = [
                    UInt64(s.activeObjects), UInt64(s.cachedObjects), s.allocations,
                    s.frees, UInt64(s.slabs), UInt64(s.partialSlabs),
                ]
                var i = 0
                while i < 6 {
                    mix = (mix ^ values[i]) &* 0x100_0000_01B3  // FNV-1a, a word at a time
                    i += 1
                }
            }
            self.caches = caches
            self.mix = mix
        }

        static func == (a: Snapshot, b: Snapshot) -> Bool {
            a.pages == b.pages && a.caches == b.caches && a.mix == b.mix
        }
    }

    /// Every creation the heap must refuse (caches and reclaimers), each with its error,
    /// leaving the heap as it was.
    public static func creation<C: ScenarioChecks>(_ q: Quarry<P>, _ checks: C) {
        let before = Snapshot(q)
        let caches = q.cacheCount
        refused("misuse: a cache of size 0 is refused: zero size", .zeroSize, checks) { () throws(QuarryError) in
            _ = try q.createCache(name: "z", size: 0)
        }
        refused("misuse: a cache above the largest object is refused: size too large", .sizeTooLarge, checks) {
            () throws(QuarryError) in _ = try q.createCache(name: "big", size: Geometry.maxObjectSize + 1)
        }
        refused("misuse: a cache of Int.max bytes is refused: size too large", .sizeTooLarge, checks) {
            () throws(QuarryError) in _ = try q.createCache(name: "huge", size: Int.max)
        }
        refused("misuse: alignment 3 is refused: bad alignment", .badAlignment, checks) { () throws(QuarryError) in
            _ = try q.createCache(name: "a3", size: 8, alignment: 3)
        }
        refused("misuse: alignment 0 is refused: bad alignment", .badAlignment, checks) { () throws(QuarryError) in
            _ = try q.createCache(name: "a0", size: 8, alignment: 0)
        }
        refused("misuse: alignment 8192 is refused: bad alignment", .badAlignment, checks) { () throws(QuarryError) in
            _ = try q.createCache(name: "a8k", size: 8, alignment: 8192)
        }
        refused("misuse: a reclaimer with no retired slots is refused: zero size", .zeroSize, checks) {
            () throws(QuarryError) in _ = try q.createReclaimer(retiredPerCPU: 0)
        }
        refused("misuse: a reclaimer with 2^20 retired slots is refused: size too large", .sizeTooLarge, checks) {
            () throws(QuarryError) in _ = try q.createReclaimer(retiredPerCPU: 1 << 20)
        }
        checks.check(
            "misuse: refused creations change nothing, leave no cache behind",
            Snapshot(q) == before && q.cacheCount == caches, "the heap changed")
    }

    /// Every free the heap must refuse, through the per-CPU path (magazines loaded):
    /// outside the arena, into the metadata, a page no slab owns, an interior pointer,
    /// a misaligned one, another cache's object, an object already free. Each is
    /// refused with its error before the object reaches a magazine, counted once and
    /// reported once (the hook names the cache and the address). `q` was initialised on
    /// `[base, base + size)` (page-aligned) and its last page was never used. Installs
    /// ErrorHookRecorder.hook for the run and removes it after.
    public static func free<C: ScenarioChecks>(_ q: Quarry<P>, base: UnsafeMutableRawPointer, size: Int, _ checks: C) {
        guard let a = try? q.createCache(name: "misuse-a", size: 40),
            let b = try? q.createCache(name: "misuse-b", size: 40),
            let w0 = try? a.allocate(), let w1 = try? a.allocate(), let w2 = try? a.allocate(),
            let w3 = try? a.allocate(), let w4 = try? a.allocate(), let pb = try? b.allocate()
        else {
            return checks.check("misuse: set-up", false, "allocation failed")
        }
        checks.check("misuse: the per-CPU layer is on", a.magazineCapacity > 0, "no magazines")
        // Warm the per-CPU layer: magazines loaded, objects cached; `gone` is free.
        let pa = w0, gone = w1
        _ = try? a.free(w2)
        _ = try? a.free(w3)
        _ = try? a.free(w4)
        _ = try? a.free(gone)
        q.setErrorHook(ErrorHookRecorder.hook)
        let errorsBefore = a.statistics.errors
        let heapBefore = Snapshot(q)
        var local: UInt64 = 0
        withUnsafeMutablePointer(to: &local) { p in
            refusedFree(
                "misuse: free outside the arena: refused, counted, hooked once", .outsideArena,
                UnsafeMutableRawPointer(p), a, checks)
        }
        refusedFree(
            "misuse: free into the metadata: refused, counted, hooked once", .metadataPointer,
            base + 64, a, checks)
        refusedFree(
            "misuse: free of a page no slab owns: refused, counted, hooked once", .freePage,
            base + (size - 4096), a, checks)
        refusedFree(
            "misuse: free of an interior pointer: refused, counted, hooked once", .interiorPointer,
            pa + 8, a, checks)
        refusedFree(
            "misuse: free of a misaligned pointer: refused, counted, hooked once", .misaligned,
            pa + 1, a, checks)
        refusedFree("misuse: free into the wrong cache: refused, counted, hooked once", .wrongCache, pb, a, checks)
        refusedFree("misuse: double free: refused, counted, hooked once", .doubleFree, gone, a, checks)
        checks.checkEqual("misuse: seven refused frees counted as errors", Int(a.statistics.errors - errorsBefore), 7)
        checks.check("misuse: refused frees change nothing in the heap", Snapshot(q) == heapBefore, "the heap changed")
        q.setErrorHook(nil)
        checks.check(
            "misuse: validate after the refusals finds nothing",
            a.validate().total == 0 && b.validate().total == 0 && q.validate() == nil, "a finding")
        q.checkInvariants()
        var freedAfter = true
        do throws(QuarryError) {
            try a.free(nil)
            try a.free(pa)
            try b.free(pb)
        } catch {
            freedAfter = false
        }
        checks.check(
            "misuse: a nil free is a no-op; the objects named by refused calls free normally",
            freedAfter, "refused")
        refused("misuse: freeing one of them again is a double free", .doubleFree, checks) { () throws(QuarryError) in
            try a.free(pa)
        }
        q.checkInvariants()
        checks.checkEqual("misuse: caches destroyed empty", a.destroy() + b.destroy(), 0)
    }

    /// `body` throws exactly `expected`.
    static func refused<C: ScenarioChecks>(
        _ name: StaticString, _ expected: QuarryError, _ checks: C, _ body: () throws(QuarryError) -> Void
    ) {
        do throws(QuarryError) {
            try body()
            checks.check(name, false, "accepted")
        } catch {
            checks.check(name, error == expected, "refused with another error")
        }
    }

    /// Freeing `pointer` into `cache` is refused with `expected`, counted once, reported
    /// once to the recorder with the cache's handle and the address, and no object
    /// entered or left a magazine.
    static func refusedFree<C: ScenarioChecks>(
        _ name: StaticString, _ expected: QuarryError, _ pointer: UnsafeMutableRawPointer,
        _ cache: SlabCache<P>, _ checks: C
    ) {
        ErrorHookRecorder.reset()
        let before = cache.statistics
        do throws(QuarryError) {
            try cache.free(pointer)
            checks.check(name, false, "accepted")
        } catch {
            let after = cache.statistics
            checks.check(
                name,
                error == expected && after.count(of: expected) == before.count(of: expected) + 1
                    && ErrorHookRecorder.reportedOnce(expected)
                    && ErrorHookRecorder.lastCache == cache.handle
                    && ErrorHookRecorder.lastAddress == UInt(bitPattern: pointer)
                    && after.cachedObjects == before.cachedObjects && after.frees == before.frees,
                "wrong error, count or report, or an object entered a magazine")
        }
    }
}
