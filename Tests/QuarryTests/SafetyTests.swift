// SafetyTests: misuse detection through the per-CPU path, the error hook, the debug
// options (poison, red zones, zeroing), randomized carving, and slub_kunit-style
// corruption tests that expect an exact number and kind of reports, then zero from
// `validate()` after repair. Neighbours: BadInputTests (refusals and counters).

import Testing
@testable import Quarry

/// What the error hook saw. Only this suite's heaps set the hook, and the suite runs
/// serialized on one thread, so plain globals suffice. The hook itself never allocates.
nonisolated(unsafe) var hookCounts = [Int](repeating: 0, count: 64)
nonisolated(unsafe) var hookLastCache: UnsafeMutableRawPointer? = nil
nonisolated(unsafe) var hookLastAddress: UInt = 0

let recordingHook: ErrorHook = { code, cache, address in
    hookCounts[Int(code) & 63] += 1
    hookLastCache = cache
    hookLastAddress = address
}

func resetHook() {
    for i in hookCounts.indices { hookCounts[i] = 0 }
    hookLastCache = nil
    hookLastAddress = 0
}

func hookCount(_ e: QuarryError) -> Int { hookCounts[Int(e.rawValue)] }
var hookTotal: Int { hookCounts.reduce(0, +) }

@Suite(.serialized) struct SafetyTests {
    /// Objects under 64 bytes keep their allocation bits at the end of their slab
    /// (AllocationBitmap); larger ones out of band. On both sides of 64 bytes, through
    /// the magazines and straight to the slabs: a full slab's objects all freed once
    /// (accepted) then again (each a double free, nothing changed), a free into the
    /// slab's last bytes (its bits, or slack) refused as interior, and the bits agree
    /// with the slab's counts (`validate`, `checkInvariants`).
    @Test(arguments: [8, 16, 24, 48, 56, 64, 72])
    func doubleFreesFoundWhereverTheBitsLive(size: Int) throws {
        // Both slabs stay when empty, so a second free meets an object of a live slab.
        for tuning in [Tuning(emptySlabReserve: 2), Tuning(emptySlabReserve: 2, magazineSize: 0)] {
            let arena = TestArena(size: 1 << 20)
            defer { arena.release() }
            let q = try arena.quarry(tuning: tuning)
            let c = try q.createCache(name: "bits", size: size)
            var objects: [UnsafeMutableRawPointer] = []
            for _ in 0..<(2 * c.statistics.objectsPerSlab) { objects.append(try c.allocate()) }
            #expect(c.validate() == ValidationReport())
            let end = try #require(c.slabBounds(of: objects[0])).end
            let last = try #require(UnsafeMutableRawPointer(bitPattern: end - 8))
            #expect(throws: QuarryError.interiorPointer) { try c.free(last) }
            for p in objects { try c.free(p) }
            for p in objects { #expect(throws: QuarryError.doubleFree) { try c.free(p) } }
            #expect(c.validate() == ValidationReport() && q.validate() == nil)
            q.checkInvariants()
            // Nothing is handed out twice after the refused frees.
            var again = Set<UInt>()
            for _ in objects { again.insert(UInt(bitPattern: try c.allocate())) }
            #expect(again.count == objects.count)
            for p in again { try c.free(UnsafeMutableRawPointer(bitPattern: p)) }
            q.checkInvariants()
        }
    }

    /// Every misuse kind is refused before the object reaches a magazine, counted
    /// once, and reported once to the hook with the cache and the address.
    @Test func everyMisuseThroughThePerCPUPath() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        q.setErrorHook(recordingHook)
        defer { resetHook() }
        resetHook()
        let a = try q.createCache(name: "a", size: 40)
        let b = try q.createCache(name: "b", size: 40)
        #expect(a.magazineCapacity > 0, "the per-CPU layer is on")
        // Warm the per-CPU layer: magazines loaded, some objects cached.
        var warm: [UnsafeMutableRawPointer] = []
        for _ in 0..<5 { warm.append(try a.allocate()) }
        for p in warm.suffix(3) { try a.free(p) }
        let pa = warm[0]
        let pb = try b.allocate()
        let freed = warm[1]
        try a.free(freed)
        var outside = UInt64(0)
        let cases: [(UnsafeMutableRawPointer, QuarryError)] = [
            (UnsafeMutableRawPointer(&outside), .outsideArena),
            (UnsafeMutableRawPointer(q.heap) + 64, .metadataPointer),
            (UnsafeMutableRawPointer(bitPattern: q.heap.pointee.arena.end - 4096)!, .freePage),
            (pa + 8, .interiorPointer),
            (pa + 1, .misaligned),
            (pb, .wrongCache),
            (freed, .doubleFree),
        ]
        for (pointer, expected) in cases {
            let before = a.statistics
            #expect(throws: expected) { try a.free(pointer) }
            let after = a.statistics
            #expect(hookCount(expected) == 1, "one hook call: \(expected)")
            // The hook names the cache by its C handle: the state's address plus its generation.
            #expect(hookLastCache == CacheState.handle(of: a.state) && hookLastAddress == UInt(bitPattern: pointer))
            #expect(after.count(of: expected) == 1)
            #expect(after.cachedObjects == before.cachedObjects && after.frees == before.frees,
                    "nothing entered a magazine: \(expected)")
        }
        #expect(hookTotal == cases.count)
        #expect(a.validate() == ValidationReport())
        #expect(b.validate() == ValidationReport())
        try a.free(pa)
        try b.free(pb)
        q.checkInvariants()
    }

    /// A randomized cache carves each slab in a permutation; validation still accepts
    /// exactly the carved objects, and everything frees back.
    @Test func randomizedCarveOrder() throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let plain = try q.createCache(name: "plain", size: 64)
        let shuffled = try q.createCache(name: "shuffled", size: 64, options: CacheOptions(randomizeFreeSlots: true))
        let n = shuffled.geometry.objectsPerSlab
        var ordered: [UInt] = []
        var random: [UInt] = []
        for _ in 0..<n {
            ordered.append(UInt(bitPattern: try plain.allocate()))
            random.append(UInt(bitPattern: try shuffled.allocate()))
        }
        #expect(ordered == ordered.sorted(), "address order without the option")
        #expect(random != random.sorted(), "a permutation with it")
        #expect(Set(random).count == n)
        let bounds = try #require(shuffled.slabBounds(of: UnsafeMutableRawPointer(bitPattern: random[0])!))
        #expect(random.allSatisfy { $0 >= bounds.start && $0 < bounds.end }, "one slab, all of its objects")
        // A second slab gets another permutation (its start differs).
        var second: [UInt] = []
        for _ in 0..<n { second.append(UInt(bitPattern: try shuffled.allocate())) }
        let base2 = second.min()!
        let base1 = random.min()!
        #expect(second.map { $0 - base2 } != random.map { $0 - base1 } || n < 4)
        q.checkInvariants()
        #expect(shuffled.validate() == ValidationReport())
        for p in ordered { try plain.free(UnsafeMutableRawPointer(bitPattern: p)) }
        for p in random + second { try shuffled.free(UnsafeMutableRawPointer(bitPattern: p)) }
        q.drainAll()
        q.checkInvariants()
        #expect(shuffled.validate() == ValidationReport())
    }

    /// slub_kunit's "flip a link": one free link flipped; validate counts it, repair
    /// gives zero; left in place, the allocation that meets it reports exactly once
    /// and quarantines the slab (CorruptionSurvivalTests: what follows).
    @Test func flippedFreeLink() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        q.setErrorHook(recordingHook)
        defer { resetHook() }
        resetHook()
        let c = try q.createCache(name: "links", size: 48)
        var objects: [UnsafeMutableRawPointer] = []
        for _ in 0..<4 { objects.append(try c.allocate()) }
        for p in objects { try c.free(p) }
        c.drainCPU()  // the objects go back onto their slab's free list
        guard case .success(let page) = c.locate(UInt(bitPattern: objects[0])) else { Issue.record("locate"); return }
        let head = UnsafeMutableRawPointer(bitPattern: q.heap.pointee.map[page].freeHead)!
        let byte = MemoryLayout<UInt>.size - 2  // a high byte: the link leaves the slab
        head.storeBytes(of: head.load(fromByteOffset: byte, as: UInt8.self) ^ 0x40, toByteOffset: byte, as: UInt8.self)
        #expect(c.validate().corruptFreeLists == 1)
        #expect(c.validate().total == 1)
        #expect(hookTotal == 0, "validate counts, it does not report")
        head.storeBytes(of: head.load(fromByteOffset: byte, as: UInt8.self) ^ 0x40, toByteOffset: byte, as: UInt8.self)
        #expect(c.validate() == ValidationReport())
        // Corrupt again and allocate: the refill meets the bad link, cuts the list, reports once.
        head.storeBytes(of: head.load(fromByteOffset: byte, as: UInt8.self) ^ 0x40, toByteOffset: byte, as: UInt8.self)
        #expect(throws: QuarryError.corruptFreeList) { try c.allocate() }
        #expect(hookCount(.corruptFreeList) == 1 && hookTotal == 1)
        #expect(c.statistics.count(of: .corruptFreeList) == 1)
        // The slab is quarantined, its free objects counted as leaked: consistent again.
        #expect(c.statistics.quarantinedSlabs == 1
                    && c.statistics.leakedObjects == Int(q.heap.pointee.map[page].carved), "all of them were free")
        #expect(c.validate() == ValidationReport())
        q.checkInvariants()
    }

    /// slub_kunit's "write past an object": the red zone catches it on free (once),
    /// validate counts it before, and the free restores it.
    @Test func writePastAnObject() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        q.setErrorHook(recordingHook)
        defer { resetHook() }
        resetHook()
        let c = try q.createCache(name: "rz", size: 24, options: CacheOptions(redZone: 8))
        #expect(c.objectSize == 32)
        let p = try c.allocate()
        let other = try c.allocate()
        p.storeBytes(of: 0, toByteOffset: 24, as: UInt8.self)  // one byte past the end
        #expect(c.validate().redZoneDamaged == 1 && c.validate().total == 1)
        try c.free(p)
        #expect(hookCount(.redZoneOverwritten) == 1 && hookTotal == 1)
        #expect(hookLastAddress == UInt(bitPattern: p))
        #expect(c.statistics.count(of: .redZoneOverwritten) == 1)
        #expect(c.validate() == ValidationReport(), "the free restored the red zone")
        try c.free(other)
        #expect(hookTotal == 1)
        q.drainAll()
        q.checkInvariants()
    }

    /// slub_kunit's "write after free": poison catches it on the next allocation of
    /// the object, also while the object sits in a magazine, and on the slab free list.
    @Test func writeAfterFree() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        q.setErrorHook(recordingHook)
        defer { resetHook() }
        resetHook()
        let c = try q.createCache(name: "poison", size: 40, options: CacheOptions(poison: true))
        let p = try c.allocate()
        try c.free(p)  // into this CPU's magazine, poisoned first
        #expect(SlabCache<HostPlatform>.holds(UInt(bitPattern: p) + 8, 32, CacheOptions.poisonByte))
        p.storeBytes(of: 1, toByteOffset: 16, as: UInt8.self)
        #expect(c.validate().poisonDamaged == 1 && c.validate().total == 1)
        let again = try c.allocate()
        #expect(again == p, "LIFO magazine")
        #expect(hookCount(.useAfterFree) == 1 && hookTotal == 1)
        #expect(c.statistics.count(of: .useAfterFree) == 1)
        #expect(c.validate() == ValidationReport())
        // On the slab free list (after a drain) the link word is skipped, damage is not.
        try c.free(again)
        c.drainCPU()
        #expect(c.validate() == ValidationReport())
        p.storeBytes(of: 2, toByteOffset: 24, as: UInt8.self)
        #expect(c.validate().poisonDamaged == 1)
        p.storeBytes(of: CacheOptions.poisonByte, toByteOffset: 24, as: UInt8.self)  // repair
        #expect(c.validate() == ValidationReport())
        q.drainAll()
        q.checkInvariants()
        #expect(hookTotal == 1)
    }

    /// slub_kunit's "free twice" and "free an interior pointer" on a debug cache: one
    /// report each, and the cache is intact.
    @Test func freeTwiceAndInterior() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        q.setErrorHook(recordingHook)
        defer { resetHook() }
        resetHook()
        let c = try q.createCache(name: "dbg", size: 40, options: CacheOptions(poison: true, redZone: 16))
        let p = try c.allocate()
        #expect(throws: QuarryError.interiorPointer) { try c.free(p + 8) }
        try c.free(p)
        #expect(throws: QuarryError.doubleFree) { try c.free(p) }
        #expect(hookCount(.doubleFree) == 1 && hookCount(.interiorPointer) == 1 && hookTotal == 2)
        #expect(c.statistics.errors == 2)
        #expect(c.validate() == ValidationReport())
        q.drainAll()
        q.checkInvariants()
    }

    @Test func zeroOnAllocateAndFree() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "zero", size: 40, options: CacheOptions(zeroOnAllocate: true, zeroOnFree: true))
        let p = try c.allocate()
        #expect(SlabCache<HostPlatform>.holds(UInt(bitPattern: p), 40, 0))
        SlabCache<HostPlatform>.fill(UInt(bitPattern: p), 40, 0xFF)
        try c.free(p)
        // Zeroed on free but for the link word, which holds the cached mark.
        #expect(SlabCache<HostPlatform>.holds(UInt(bitPattern: p), 40, 0, skip: 0), "zeroed on free")
        let again = try c.allocate()
        #expect(SlabCache<HostPlatform>.holds(UInt(bitPattern: again), 40, 0))
        try c.free(again)
        #expect(c.validate() == ValidationReport())
        // Conflicting options are dropped: a constructor keeps its bytes.
        let ctor = try q.createCache(name: "ctor", size: 16, constructor: { _ in },
                                     options: CacheOptions(poison: true, zeroOnAllocate: true))
        #expect(!ctor.state.pointee.options.poison && !ctor.state.pointee.options.zeroOnAllocate)
        q.drainAll()
        q.checkInvariants()
    }
}
