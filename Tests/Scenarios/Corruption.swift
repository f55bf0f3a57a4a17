// Corruption: slub_kunit's tests, written once for the host tests (SafetyTests) and the
// test kernel (CorruptionSuite): memory corrupted on purpose (a flipped free link, a write
// past an object, a write after free, a double and an interior free on a debug cache),
// each expecting an exact number and kind of findings from `validate()` and of reports
// (error hook and counters), then zero after repair or after the report.
// Neighbours: ScenarioChecks (reporting, the hook recorder), CorruptionSurvival (what
// follows a damaged link: many allocations), Quarry/Slabs/SlabCache+Debug (validate, the
// @_spi(Testing) link hooks), docs/design.md ("After a corruption").

@_spi(Testing) import Quarry

public enum CorruptionScenario<P: Platform> {
    /// Every scenario on `q`, each on a cache of its own, with ErrorHookRecorder.hook
    /// installed (and removed after); the heap's invariants hold after each one.
    public static func run<C: ScenarioChecks>(_ q: Quarry<P>, _ checks: C) {
        q.setErrorHook(ErrorHookRecorder.hook)
        flippedLink(q, checks)
        writePastObject(q, checks)
        writeAfterFree(q, checks)
        freeTwiceAndInterior(q, checks)
        q.setErrorHook(nil)
        q.checkInvariants()
        checks.check(
            "corruption: validate finds nothing in the whole heap after every scenario",
            q.validate() == nil, "a finding")
    }

    /// A high byte of the link word flipped: the decoded link leaves the slab.
    static func flipByte(_ p: UnsafeMutableRawPointer) {
        let byte = MemoryLayout<UInt>.size - 2
        p.storeBytes(of: p.load(fromByteOffset: byte, as: UInt8.self) ^ 0x40, toByteOffset: byte, as: UInt8.self)
    }

    /// One free link flipped: validate counts it and reports nothing, repair gives zero;
    /// left in place, the allocation that meets it is refused and reported once, and
    /// the slab is quarantined with all its free objects counted as leaked; the cache
    /// serves on from other slabs and is destroyed, quarantined slab and all.
    public static func flippedLink<C: ScenarioChecks>(_ q: Quarry<P>, _ checks: C) {
        ErrorHookRecorder.reset()
        guard let c = try? q.createCache(name: "corrupt-link", size: 48),
            let o0 = try? c.allocate(), let o1 = try? c.allocate(), let o2 = try? c.allocate(),
            let o3 = try? c.allocate()
        else { return checks.check("corruption: flipped link: set-up", false, "allocation failed") }
        _ = try? c.free(o0)
        _ = try? c.free(o1)
        _ = try? c.free(o2)
        _ = try? c.free(o3)
        c.drainCPU()  // the objects go back onto their slab's free list
        guard let head = c.freeListHead(ofSlabHolding: o0) else {
            return checks.check("corruption: flipped link: set-up", false, "no free list")
        }
        // Every carved object of the slab is free, so the list holds them all.
        var listed = 1
        var cursor = head
        while listed <= 4096, let next = c.freeLink(of: cursor) {
            listed += 1
            cursor = next
        }
        flipByte(head)
        let found = c.validate()
        checks.check(
            "corruption: flipped link: validate counts exactly one corrupt list and reports nothing",
            found.corruptFreeLists == 1 && found.total == 1 && ErrorHookRecorder.calls == 0, "wrong count")
        flipByte(head)
        checks.checkEqual("corruption: flipped link repaired: validate finds nothing", c.validate().total, 0)
        flipByte(head)
        var refusedWith: QuarryError? = nil
        do throws(QuarryError) { _ = try c.allocate() } catch { refusedWith = error }
        checks.check(
            "corruption: flipped link: the allocation is refused, reported once, counted once",
            refusedWith == .corruptFreeList && ErrorHookRecorder.reportedOnce(.corruptFreeList)
                && c.statistics.count(of: .corruptFreeList) == 1, "wrong report")
        let s = c.statistics
        checks.check(
            "corruption: flipped link: slab quarantined, every free object of it counted as leaked",
            s.quarantinedSlabs == 1 && s.leakedObjects == listed, "wrong quarantine")
        checks.checkEqual("corruption: flipped link: validate then finds nothing", c.validate().total, 0)
        q.checkInvariants()
        // The cache serves on from other slabs.
        var objects = InlineArray<64, UInt>(repeating: 0)
        var served = 0
        while served < 64, let o = try? c.allocate() {
            objects[served] = UInt(bitPattern: o)
            served += 1
        }
        var i = 0
        while i < served {
            _ = try? c.free(UnsafeMutableRawPointer(bitPattern: objects[i]))
            i += 1
        }
        checks.check(
            "corruption: flipped link: 64 objects served after, one report in all",
            served == 64 && ErrorHookRecorder.calls == 1, "refused or reported again")
        checks.checkEqual("corruption: flipped link: cache destroyed, quarantined slab and all", c.destroy(), 0)
    }

    /// One byte written past an object: validate counts the red zone before, the free
    /// reports it once (with the address) and restores it.
    public static func writePastObject<C: ScenarioChecks>(_ q: Quarry<P>, _ checks: C) {
        ErrorHookRecorder.reset()
        guard let c = try? q.createCache(name: "corrupt-rz", size: 24, options: CacheOptions(redZone: 8)),
            let p = try? c.allocate(), let other = try? c.allocate()
        else { return checks.check("corruption: red zone: set-up", false, "allocation failed") }
        checks.checkEqual("corruption: red zone: 24 bytes and an 8-byte red zone make 32", c.objectSize, 32)
        p.storeBytes(of: 0, toByteOffset: 24, as: UInt8.self)
        let found = c.validate()
        checks.check(
            "corruption: write past an object: validate counts one red zone",
            found.redZoneDamaged == 1 && found.total == 1, "wrong count")
        _ = try? c.free(p)
        checks.check(
            "corruption: write past an object: the free reports it once, with the address, counted once",
            ErrorHookRecorder.reportedOnce(.redZoneOverwritten)
                && ErrorHookRecorder.lastAddress == UInt(bitPattern: p)
                && c.statistics.count(of: .redZoneOverwritten) == 1, "wrong report")
        checks.checkEqual("corruption: red zone restored by the free: validate finds nothing", c.validate().total, 0)
        _ = try? c.free(other)
        checks.checkEqual("corruption: red zone: an intact neighbour reports nothing", ErrorHookRecorder.calls, 1)
        checks.checkEqual("corruption: red-zone cache destroyed", c.destroy(), 0)
    }

    /// A write into a freed, poisoned object: validate counts it while the object sits
    /// in a magazine, the next allocation of it reports it once; on the slab free list
    /// (after a drain) validate skips the link word but not the damage.
    public static func writeAfterFree<C: ScenarioChecks>(_ q: Quarry<P>, _ checks: C) {
        ErrorHookRecorder.reset()
        guard let c = try? q.createCache(name: "corrupt-poison", size: 40, options: CacheOptions(poison: true)),
            let p = try? c.allocate()
        else { return checks.check("corruption: poison: set-up", false, "allocation failed") }
        _ = try? c.free(p)  // poisoned, then into this CPU's magazine
        p.storeBytes(of: 1, toByteOffset: 16, as: UInt8.self)
        let found = c.validate()
        checks.check(
            "corruption: write after free: validate counts one poisoned object",
            found.poisonDamaged == 1 && found.total == 1, "wrong count")
        let again = try? c.allocate()
        checks.check(
            "corruption: write after free: the next allocation (the same object) reports it once, counted once",
            again == p && ErrorHookRecorder.reportedOnce(.useAfterFree)
                && c.statistics.count(of: .useAfterFree) == 1, "wrong report")
        checks.checkEqual("corruption: write after free: validate then finds nothing", c.validate().total, 0)
        _ = try? c.free(again)
        c.drainCPU()
        checks.checkEqual(
            "corruption: poisoned object on its slab's free list: validate finds nothing",
            c.validate().total, 0)
        p.storeBytes(of: 2, toByteOffset: 24, as: UInt8.self)
        checks.checkEqual(
            "corruption: write after free on the slab free list: validate counts it",
            c.validate().poisonDamaged, 1)
        p.storeBytes(of: CacheOptions.poisonByte, toByteOffset: 24, as: UInt8.self)  // repair
        checks.checkEqual("corruption: poison repaired: validate finds nothing", c.validate().total, 0)
        checks.checkEqual("corruption: poison: one report in all", ErrorHookRecorder.calls, 1)
        checks.checkEqual("corruption: poison cache destroyed", c.destroy(), 0)
    }

    /// An interior free and a double free on a debug cache (poison and red zone): one
    /// report each, counted, and the cache intact.
    public static func freeTwiceAndInterior<C: ScenarioChecks>(_ q: Quarry<P>, _ checks: C) {
        ErrorHookRecorder.reset()
        guard
            let c = try? q.createCache(
                name: "corrupt-debug", size: 40,
                options: CacheOptions(poison: true, redZone: 16)),
            let p = try? c.allocate()
        else { return checks.check("corruption: debug cache: set-up", false, "allocation failed") }
        var interior: QuarryError? = nil
        do throws(QuarryError) { try c.free(p + 8) } catch { interior = error }
        var first: QuarryError? = nil
        do throws(QuarryError) { try c.free(p) } catch { first = error }
        var second: QuarryError? = nil
        do throws(QuarryError) { try c.free(p) } catch { second = error }
        checks.check(
            "corruption: debug cache: interior free and double free refused, one report each, counted",
            interior == .interiorPointer && first == nil && second == .doubleFree
                && ErrorHookRecorder.count(.interiorPointer) == 1 && ErrorHookRecorder.count(.doubleFree) == 1
                && ErrorHookRecorder.calls == 2 && c.statistics.errors == 2, "wrong reports")
        checks.checkEqual("corruption: debug cache after the refusals: validate finds nothing", c.validate().total, 0)
        checks.checkEqual("corruption: debug cache destroyed", c.destroy(), 0)
    }
}
