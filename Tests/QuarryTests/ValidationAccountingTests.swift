// ValidationAccountingTests: slub_kunit-style tests of `validate()`'s accounting checks and
// of poison on an object's last bytes: each corrupts one word of Quarry's own records (or
// one freed byte) on purpose, expects exactly the findings it must cause, at the exact
// address, then repairs it and expects none.
// Neighbours: SlabCache+Debug (validate), Quarry+Invariants (the heap's page count),
// SafetyTests and CorruptionSurvivalTests (free-list and red-zone corruption).

import Testing

@testable import Quarry

@Suite struct ValidationAccountingTests {
    /// The cache's count of objects out of their slabs, off by one: one finding, at the
    /// cache's own address, from the cache and from the heap; none once repaired.
    @Test func cacheCountersOffByOne() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "counted", size: 64)
        let p = try c.allocate()
        c.state.pointee.lock.withLock(ThreadPlatform<1>.self) { $0.counters.inUse += 1 }
        let r = c.validate()
        #expect(r.total == 1 && r.accountingMismatches == 1)
        #expect(r.first == ValidationFinding(error: .accountingMismatch, address: UInt(bitPattern: c.state)))
        let f = try #require(q.validate())
        #expect(f.error == .accountingMismatch && f.address == UInt(bitPattern: c.state) && f.cache.equals("counted"))
        c.state.pointee.lock.withLock(ThreadPlatform<1>.self) { $0.counters.inUse -= 1 }
        #expect(c.validate() == ValidationReport() && q.validate() == nil)
        try c.free(p)
        #expect(c.destroy() == 0)
    }

    /// A slab descriptor claiming more carved objects than a slab holds: one finding, at
    /// the slab's first byte.
    @Test func slabDescriptorBeyondItsCapacity() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "carved", size: 64)
        let p = try c.allocate()
        let head = try #require(PageMap.slabHead(of: UInt(bitPattern: p), in: c.heap))
        let carved = head.entry.carved
        head.entry.carved = UInt32(c.geometry.objectsPerSlab + 1)
        let r = c.validate()
        #expect(r.total == 1 && r.accountingMismatches == 1)
        #expect(
            r.first
                == ValidationFinding(
                    error: .accountingMismatch, address: UInt(bitPattern: p) & ~UInt(Geometry.pageSize - 1)))
        head.entry.carved = carved
        #expect(c.validate() == ValidationReport())
        try c.free(p)
        #expect(c.destroy() == 0)
    }

    /// A magazine round that is not an object of the cache (an interior address where a
    /// freed object was): that round is a finding at its address, and the object it
    /// replaced, now neither cached nor the user's, makes the counters disagree.
    @Test func aMagazineRoundThatIsNoObject() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "rounds", size: 64)
        let p = try c.allocate()
        try c.free(p)
        let loaded = c.cpu(0).pointee.loaded
        let top = loaded.count - 1
        #expect(loaded.rounds[top] == UInt(bitPattern: p), "the freed object is the top round")
        loaded.rounds[top] = UInt(bitPattern: p) + 8
        let r = c.validate()
        #expect(r.total == 2 && r.accountingMismatches == 2)
        #expect(r.first == ValidationFinding(error: .accountingMismatch, address: UInt(bitPattern: p) + 8))
        loaded.rounds[top] = UInt(bitPattern: p)
        #expect(c.validate() == ValidationReport())
        #expect(c.destroy() == 0)
    }

    /// The heap's span page count off by one: every cache is consistent, the heap's page
    /// equation is not; `Quarry.validate` names the arena's first data byte and no cache.
    @Test func heapPageCountOffByOne() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let block = try q.front.malloc(SizeClasses.largest + 1)
        q.heap.pointee.pages.withLock(ThreadPlatform<1>.self) { $0.spans.pages += 1 }
        let f = try #require(q.validate())
        #expect(f.error == .accountingMismatch)
        #expect(f.address == q.heap.pointee.arena.dataStart && f.cache.equals(""))
        q.heap.pointee.pages.withLock(ThreadPlatform<1>.self) { $0.spans.pages -= 1 }
        #expect(q.validate() == nil)
        try q.front.free(block)
    }

    /// Poison covers an object's last bytes too (a size that is not a whole number of
    /// words): a write after free there is one `.useAfterFree` finding in `validate`,
    /// none once the byte is repaired, and one report when the object is handed out again.
    @Test func poisonReachesTheLastByte() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "tail", size: 61, options: CacheOptions(poison: true))
        let p = try c.allocate()
        try c.free(p)
        #expect(c.validate() == ValidationReport())
        let last = p + 60
        #expect(last.load(as: UInt8.self) == CacheOptions.poisonByte)
        last.storeBytes(of: 0, as: UInt8.self)
        let r = c.validate()
        #expect(r.total == 1 && r.poisonDamaged == 1)
        #expect(r.first == ValidationFinding(error: .useAfterFree, address: UInt(bitPattern: p)))
        last.storeBytes(of: CacheOptions.poisonByte, as: UInt8.self)
        #expect(c.validate() == ValidationReport())
        last.storeBytes(of: 0, as: UInt8.self)
        let again = try c.allocate()
        #expect(again == p, "the magazine hands the last freed object out first")
        #expect(c.statistics.count(of: .useAfterFree) == 1)
        try c.free(again)
        #expect(c.validate() == ValidationReport(), "freed again, the object is poisoned again")
        #expect(c.destroy() == 0)
    }
}
