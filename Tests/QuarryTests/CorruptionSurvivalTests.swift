// CorruptionSurvivalTests: after every kind of damage to a free object's link (issue 11)
// the cache keeps serving: 100,000 allocations and frees follow, every object handed out
// is distinct and the cache's, at most one allocation is refused (the one whose refill
// met the corruption), and the invariants hold afterwards. Then `validate` (per cache
// and heap-wide) reports instead of trapping. The scenario is Tests/Scenarios (also run
// by the kernel); the C ABI's version is CABITests+Corruption.
// Neighbours: SafetyTests (exact reports), SlabLayer (quarantine).

import QuarryScenarios
import Testing

@_spi(Testing) @testable import Quarry

/// Runs the survival scenario on a fresh 64-byte cache of a fresh heap and checks what
/// every kind must give; returns the report for the caller's own checks.
@discardableResult
func survive(
    _ damage: FreeLinkDamage, tuning: Tuning, allocations: Int = 100_000,
    seed: UInt32 = 0x1234_5678
) throws -> SurvivalReport {
    let arena = TestArena(size: 8 << 20)
    defer { arena.release() }
    let q = try arena.quarry(tuning: tuning)
    let c = try q.createCache(name: "survive", size: 64)
    var live = [UInt](repeating: 0, count: 1024)
    let report = live.withUnsafeMutableBufferPointer { buffer in
        var scenario = CorruptionSurvival(cache: c, live: buffer, seed: seed)
        return scenario.run(damage, allocations: allocations)
    }
    let name =
        "\(damage.name) (\(tuning.magazineSize == 0 ? "no magazines" : tuning.maxObjectsPerSlab < 8 ? "tiny" : "standard"))"
    print(
        "survival: \(name): refusals \(report.refusals) at allocation \(report.firstRefusal)...\(report.lastRefusal), "
            + "reports \(report.reports), quarantined \(report.quarantinedSlabs), leaked \(report.leakedObjects)")
    #expect(report.survived, "\(name): \(report)")
    #expect(report.allocations == allocations)
    #expect(report.reports == 1 && report.quarantinedSlabs == 1, "\(name): detected once, one slab quarantined")
    #expect(report.refusals <= 1 && report.firstRefusal == report.lastRefusal, "\(name): at most one refusal")
    // Consistent afterwards: the invariants (quarantine included) and validate agree.
    q.checkInvariants()
    #expect(c.validate() == ValidationReport(), "\(name)")
    #expect(q.validate() == nil, "\(name)")
    let s = c.statistics
    #expect(s.activeObjects == 0 && s.leakedObjects == report.leakedObjects && s.slabs >= 1)
    // Destroy gives the quarantined slab back with the rest: the heap is as it began.
    #expect(c.destroy() == 0)
    q.drainAll()
    q.checkInvariants()
    #expect(q.pageStatistics.pagesInUse == q.cacheOfCaches.pagesHeld + q.magazineCache.pagesHeld)
    return report
}

@Suite(.serialized) struct CorruptionSurvivalTests {
    static let tunings: [Tuning] = [.standard, .tiny, .noMagazines]

    @Test(arguments: 0..<FreeLinkDamage.count)
    func survivesEveryDamage(kind: Int) throws {
        for tuning in Self.tunings { try survive(FreeLinkDamage.kind(kind), tuning: tuning) }
    }

    /// Other seeds move the damage and the workload; still one report, no trap.
    @Test func survivesUnderOtherSeeds() throws {
        for seed: UInt32 in [1, 77, 0xDEAD_BEEF] {
            for kind in 0..<FreeLinkDamage.count {
                try survive(FreeLinkDamage.kind(kind), tuning: .standard, allocations: 10_000, seed: seed)
            }
        }
    }

    /// Every value of the link's low byte (some decode to another object of the slab,
    /// a skip or a cycle; most off a boundary): each detected once, each survived.
    @Test func survivesEveryLowByte() throws {
        for v in 0...255 { try survive(.lowByte(UInt8(v)), tuning: .standard, allocations: 2_000) }
    }

    /// Issue 11 as reported: a high bit flipped, the list cut, then a few hundred
    /// allocations; before the quarantine, the 60th or so trapped ("a full slab on the
    /// partial list"). Objects of the quarantined slab that were out are freed into it
    /// and counted as leaked.
    @Test func quarantinedSlabAccountsItsObjects() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "links", size: 48)
        var objects: [UnsafeMutableRawPointer] = []
        for _ in 0..<20 { objects.append(try c.allocate()) }
        for p in objects[10...] { try c.free(p) }
        c.drainCPU()
        c.drainDepot()
        let head = try #require(c.freeListHead(ofSlabHolding: objects[0]))
        let byte = MemoryLayout<UInt>.size - 2
        head.storeBytes(of: head.load(fromByteOffset: byte, as: UInt8.self) ^ 0x40, toByteOffset: byte, as: UInt8.self)
        let found = try #require(q.validate())
        #expect(
            found.error == .corruptFreeList && found.address == UInt(bitPattern: head) && found.cache.equals("links"))
        #expect(throws: QuarryError.corruptFreeList) { try c.allocate() }
        guard case .success(let page) = c.locate(UInt(bitPattern: objects[0])) else { Issue.record("locate"); return }
        let d = q.heap.pointee.map[page]
        var s = c.statistics
        #expect(d.list == .quarantined && d.freeHead == 0 && d.inUse >= 10)
        #expect(s.quarantinedSlabs == 1 && s.leakedObjects == Int(d.carved - d.inUse) && s.leakedObjects >= 10)
        #expect(s.count(of: .corruptFreeList) == 1)
        #expect(q.validate() == nil)
        q.checkInvariants()
        var more: [UnsafeMutableRawPointer] = []
        for _ in 0..<500 { more.append(try c.allocate()) }
        #expect(Set(more + objects[..<10]).count == 510, "distinct")
        #expect(more.allSatisfy { c.locate(UInt(bitPattern: $0)) != .success(page) }, "none from the quarantined slab")
        for p in objects[..<10] { try c.free(p) }
        c.drainCPU()
        c.drainDepot()
        s = c.statistics
        #expect(d.inUse == 0 && s.leakedObjects == Int(d.carved), "the objects that were out came back into quarantine")
        #expect(s.count(of: .corruptFreeList) == 1)
        q.checkInvariants()
        for p in more { try c.free(p) }
        q.drainAll()
        #expect(c.statistics.quarantinedSlabs == 1, "shrink keeps a quarantined slab")
        q.checkInvariants()
        #expect(c.destroy() == 0)
        q.checkInvariants()
    }

    /// `validate` finds each kind of damage without trapping, names the first finding,
    /// and the heap-wide check names the cache.
    @Test func validateReportsTheFirstFinding() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "first", size: 64, options: CacheOptions(redZone: 8))
        var objects: [UnsafeMutableRawPointer] = []
        for _ in 0..<8 { objects.append(try c.allocate()) }
        #expect(q.validate() == nil)
        // A red zone: the object.
        objects[1].storeBytes(of: 0, toByteOffset: 64, as: UInt8.self)
        var r = c.validate()
        #expect(
            r.redZoneDamaged == 1 && r.total == 1
                && r.first
                    == ValidationFinding(
                        error: .redZoneOverwritten,
                        address: UInt(bitPattern: objects[1]))
        )
        var f = try #require(q.validate())
        #expect(f.error == .redZoneOverwritten && f.cache.equals("first"))
        objects[1].storeBytes(of: CacheOptions.redZoneByte, toByteOffset: 64, as: UInt8.self)
        // A link that closes a cycle: the walk stops where the cycle comes round.
        for p in objects[4...] { try c.free(p) }
        c.drainCPU()
        let head = try #require(c.freeListHead(ofSlabHolding: objects[0]))
        let second = try #require(c.freeLink(of: head))
        let third = c.freeLink(of: second)
        c.writeFreeLink(into: second, to: head)
        r = c.validate()
        #expect(r.corruptFreeLists == 1 && r.total == 1 && r.first?.error == .corruptFreeList)
        // A link that skips objects: well-formed but short; found at the slab.
        c.writeFreeLink(into: second, to: nil)
        r = c.validate()
        #expect(
            r.corruptFreeLists == 1 && r.total == 1
                && r.first == ValidationFinding(error: .corruptFreeList, address: c.slabBounds(of: head)!.start))
        c.writeFreeLink(into: second, to: third)
        #expect(c.validate() == ValidationReport() && q.validate() == nil)
        // Metadata: the bit of a live object cleared behind the cache's back.
        _ = c.state.pointee.bitmap.markFree(UInt(bitPattern: objects[0]))
        r = c.validate()
        #expect(r.accountingMismatches >= 1 && r.first?.error == .accountingMismatch)
        f = try #require(q.validate())
        #expect(f.error == .accountingMismatch && f.cache.equals("first"))
        _ = c.state.pointee.bitmap.markAllocated(UInt(bitPattern: objects[0]))
        #expect(q.validate() == nil)
        for p in objects[..<4] { try c.free(p) }
        q.drainAll()
        q.checkInvariants()
    }
}
