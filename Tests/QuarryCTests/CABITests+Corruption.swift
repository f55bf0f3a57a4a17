// CABITests+Corruption: issue 11 through the C ABI: the survival scenario (Tests/Scenarios)
// through quarry_malloc(64) and quarry_free, 100,000 allocations after each kind of damage,
// then quarry_check_invariants; and quarry_validate, which reports what
// quarry_check_invariants would trap on. Part of the serialized CABITests suite: it uses
// the one global instance. Neighbours: CorruptionSurvivalTests (the Swift API's runs).

import CQuarryHeader
@_spi(Testing) import Quarry
import QuarryScenarios
import Testing

@testable import QuarryC

/// What the C error hook saw (the suite is serialized; the hook never allocates).
nonisolated(unsafe) var cHookCorrupt = 0
nonisolated(unsafe) var cHookOther = 0
nonisolated(unsafe) var cHookLastOther: UInt8 = 0

let cCountingHook: quarry_error_hook = { error, _, _ in
    if UInt32(error) == QUARRY_ERR_CORRUPT_FREE_LIST.rawValue {
        cHookCorrupt += 1
    } else {
        cHookOther += 1
        cHookLastOther = error
    }
}

/// A fresh global instance over `size` bytes, torn down by the returned closure.
func freshInstance(_ size: Int) -> () -> Void {
    let arena = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
    #expect(quarry_init(arena, size) == QUARRY_OK)
    cHookCorrupt = 0
    cHookOther = 0
    quarry_set_error_hook(cCountingHook)
    return {
        quarry_set_error_hook(nil)
        CABI.instance = nil
        arena.deallocate()
    }
}

extension CABITests {
    @Test(arguments: 0..<FreeLinkDamage.count)
    func mallocSurvivesEveryDamage(kind: Int) throws {
        let damage = FreeLinkDamage.kind(kind)
        let tearDown = freshInstance(8 << 20)
        defer { tearDown() }
        let probe = try #require(quarry_malloc(64))
        let cache = try #require(CABI.instance!.cache(owning: probe))
        quarry_free(probe)
        var live = [UInt](repeating: 0, count: 1024)
        let report = live.withUnsafeMutableBufferPointer { buffer in
            var scenario = CorruptionSurvival(cache: cache, live: buffer, seed: 0xC0FF_EE01)
            return scenario.run(
                damage, allocations: 100_000,
                allocate: { () -> Result<UnsafeMutableRawPointer, QuarryError> in
                    if let p = quarry_malloc(64) { return .success(p) }
                    return .failure(QuarryError(rawValue: UInt8(quarry_last_error().rawValue)) ?? .outOfMemory)
                },
                free: { p in
                    let before = cHookOther
                    quarry_free(p)
                    return cHookOther == before ? nil : QuarryError(rawValue: cHookLastOther)
                })
        }
        print(
            "survival (C malloc): \(damage.name): refusals \(report.refusals) at allocation \(report.firstRefusal), "
                + "reports \(report.reports), quarantined \(report.quarantinedSlabs), leaked \(report.leakedObjects)")
        #expect(report.survived, "\(damage.name): \(report)")
        #expect(
            report.reports == 1 && cHookCorrupt == 1 && cHookOther == 0, "\(damage.name): reported once, hooked once")
        #expect(report.refusals <= 1)
        quarry_check_invariants()
        var found = quarry_validation()
        #expect(quarry_validate(&found) == QUARRY_OK && found.error == QUARRY_OK)
        // quarry_drain_all destroys the unused class cache, quarantined slab and all.
        quarry_drain_all()
        var heap = quarry_heap_statistics()
        #expect(quarry_heap_stats(&heap) == QUARRY_OK && heap.pages_in_use == 0)
        quarry_check_invariants()
    }

    /// quarry_validate names the first finding (error, address, cache) where
    /// quarry_check_invariants would trap; after the corruption is met and the slab
    /// quarantined, both pass, and the statistics count the quarantine.
    @Test func validateReportsInsteadOfTrapping() throws {
        #expect(quarry_validate(nil) == QUARRY_ERR_NOT_INITIALIZED)
        let tearDown = freshInstance(1 << 20)
        defer { tearDown() }
        let handle = try #require(quarry_cache_create("c-damage", 64, 0, nil))
        var objects: [UnsafeMutableRawPointer] = []
        for _ in 0..<16 { objects.append(try #require(quarry_cache_alloc(handle))) }
        for p in objects[8...] { #expect(quarry_cache_free(handle, p) == QUARRY_OK) }
        let cache = try #require(CABI.cache(handle))
        cache.drainCPU()
        cache.drainDepot()
        var found = quarry_validation()
        #expect(quarry_validate(&found) == QUARRY_OK && found.error == QUARRY_OK && found.cache.0 == 0)
        // A high byte of the head's link: the refill's first read.
        let head = try #require(cache.freeListHead(ofSlabHolding: objects[0]))
        let byte = MemoryLayout<UInt>.size - 2
        head.storeBytes(of: head.load(fromByteOffset: byte, as: UInt8.self) ^ 0x40, toByteOffset: byte, as: UInt8.self)
        #expect(quarry_validate(&found) == QUARRY_ERR_CORRUPT_FREE_LIST)
        #expect(found.error == QUARRY_ERR_CORRUPT_FREE_LIST && found.address == UInt(bitPattern: head))
        let name = withUnsafeBytes(of: found.cache) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        #expect(name == "c-damage")
        #expect(quarry_validate(nil) == QUARRY_ERR_CORRUPT_FREE_LIST, "out may be NULL")
        #expect(cHookCorrupt == 0, "validate reports nothing to the hook")
        // Met by an allocation: refused once, hooked once, then served again.
        #expect(quarry_cache_alloc(handle) == nil && quarry_last_error() == QUARRY_ERR_CORRUPT_FREE_LIST)
        #expect(cHookCorrupt == 1)
        var more: [UnsafeMutableRawPointer] = []
        for _ in 0..<1000 { more.append(try #require(quarry_cache_alloc(handle))) }
        #expect(Set(more + objects[..<8]).count == 1008)
        #expect(quarry_validate(&found) == QUARRY_OK)
        quarry_check_invariants()
        var stats = quarry_cache_statistics()
        #expect(quarry_cache_stats(handle, &stats) == QUARRY_OK)
        #expect(stats.quarantined_slabs == 1 && stats.leaked_objects > 0)
        #expect(stats.errors_by_kind.7 == 1, "QUARRY_ERR_CORRUPT_FREE_LIST - 16")
        for p in more + objects[..<8] { #expect(quarry_cache_free(handle, p) == QUARRY_OK) }
        #expect(quarry_cache_destroy(handle) == QUARRY_OK)
        quarry_check_invariants()
        #expect(quarry_validate(&found) == QUARRY_OK)
    }
}
