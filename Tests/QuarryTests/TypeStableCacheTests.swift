// TypeStableCacheTests: caches created with `typeStable: true` (SLAB_TYPESAFE_BY_RCU):
// slabs stay with the cache, freeing writes nothing into the caller's bytes, objects are
// reused at once, and readers holding stale pointers always find an object of the type.
// Neighbours: SlabCacheTests (ordinary caches), EpochReclaimerTests (deferred freeing).

import QuarryScenarios
import Synchronization
import Testing

@testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

/// The type tag every object of the type-stable test cache carries from its constructor on.
let typeTag: UInt = 0x7E57_AB1E

@Suite struct TypeStableCacheTests {
    @Test func theFreeLinkMovesPastTheCallersBytes() throws {
        for (size, alignment) in [(1, 8), (8, 8), (24, 8), (60, 64), (4096, 4096), (Geometry.maxObjectSize - 8, 8)] {
            let g = try SlabGeometry.make(size: size, alignment: alignment, tuning: .standard, linkOutside: true)
            #expect(g.linkOffset >= size && g.linkOffset % Geometry.granule == 0)
            #expect(g.linkOffset + MemoryLayout<UInt>.size <= g.objectSize)
            #expect(g.objectSize % max(alignment, Geometry.granule) == 0)
            let plain = try SlabGeometry.make(size: size, alignment: alignment, tuning: .standard)
            #expect(plain.linkOffset == 0)
        }
        #expect(throws: QuarryError.sizeTooLarge) {
            try SlabGeometry.make(size: Geometry.maxObjectSize, alignment: 8, tuning: .standard, linkOutside: true)
        }
    }

    /// Freed objects keep every byte; the same addresses come back at once; empty slabs
    /// are never released by free or shrink; destroy gives the pages back.
    @Test func slabsStayAndBytesSurviveFree() throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: Tuning(maxObjectsPerSlab: 8, emptySlabReserve: 0))
        let first = q.pageStatistics.pagesInUse
        let c = try q.createCache(name: "stable", size: 40, typeStable: true)
        #expect(c.isTypeStable && c.statistics.typeStable)
        var objects: [UnsafeMutableRawPointer] = []
        for i in 0..<64 {
            let p = try c.allocate()
            Cookie.fill(p, size: 40, key: UInt(i))
            objects.append(p)
        }
        let pages = c.statistics.pages
        for p in objects { try c.free(p) }
        for (i, p) in objects.enumerated() {
            #expect(Cookie.intact(p, size: 40, key: UInt(i)), "free wrote into the caller's bytes")
        }
        let again = try c.allocate()
        #expect(again == objects.last!, "reused at once")
        try c.free(again)
        // The per-CPU layer holds freed objects; emptied into the slabs (links written
        // past the caller's bytes), the slabs are empty and still stay.
        q.drainAll()
        for (i, p) in objects.enumerated() {
            #expect(Cookie.intact(p, size: 40, key: UInt(i)), "a flush wrote into the caller's bytes")
        }
        #expect(c.statistics.pages == pages, "a type-stable cache released a slab on free")
        #expect(c.statistics.emptySlabs == 8)
        #expect(c.shrink() == 0 && q.shrink() == 0)
        #expect(c.statistics.pages == pages)
        q.checkInvariants()
        #expect(c.destroy() == 0)
        q.shrink()
        #expect(q.pageStatistics.pagesInUse == first, "destroy gives the pages back")
        q.checkInvariants()
    }

    /// The contrast: an ordinary cache's slab layer writes its free link into the object's
    /// first word and gives empty slabs back beyond its reserve (without magazines, whose
    /// rounds would keep the objects out of the slab until a flush).
    @Test func ordinaryCachesOverwriteAndRelease() throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: Tuning(maxObjectsPerSlab: 8, emptySlabReserve: 0, magazineSize: 0))
        let c = try q.createCache(name: "plain", size: 40)
        var objects: [UnsafeMutableRawPointer] = []
        for i in 0..<8 {
            let p = try c.allocate()
            Cookie.fill(p, size: 40, key: UInt(i))
            objects.append(p)
        }
        try c.free(objects[0])
        #expect(!Cookie.intact(objects[0], size: 40, key: 0), "the free link is in the first word")
        for p in objects.dropFirst() { try c.free(p) }
        #expect(c.statistics.slabs == 0, "the empty slab went back")
        #expect(c.destroy() == 0)
    }

    /// SLAB_TYPESAFE_BY_RCU's contract under threads: writers free an object and
    /// allocate again at once (no retire, no grace period) while readers follow stale
    /// pointers without any critical section. Readers read only atomic fields; every
    /// object they reach carries the type tag its constructor wrote, whatever its life.
    @Test func staleReadersAlwaysFindTheType() throws {
        VirtualCPU.register(cpu: 0)
        defer { VirtualCPU.unregister() }
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        let q = try Quarry<ThreadPlatform<16>>.initialize(base: arena.base, size: arena.size)
        let c = try q.createCache(
            name: "typesafe", size: 3 * MemoryLayout<UInt>.size,
            constructor: { p in
                p.assumingMemoryBound(to: Atomic<UInt>.self).pointee.store(typeTag, ordering: .relaxed)
            }, typeStable: true)
        let slots = 16
        let table = UnsafeMutablePointer<Atomic<UInt>>.allocate(capacity: slots)
        for i in 0..<slots { (table + i).initialize(to: Atomic(0)) }
        defer { table.deallocate() }
        let wrongType = Atomic<Int>(0)
        let reads = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        let iterations = stressOperations(40_000) / 4
        let shared = Shared((c, table))
        runOnCPUs(4) { t in
            let (c, table) = shared.value
            var rng = SeededGenerator(seed: UInt64(t) &+ 7)
            if t >= 2 {
                // Readers: load a slot, read the object's fields (atomically), never enter.
                var n = 0
                while !stop.load(ordering: .acquiring) {
                    let x = table[Int(rng.next() % UInt64(slots))].load(ordering: .acquiring)
                    guard x != 0 else { continue }
                    let fields = UnsafeMutablePointer<Atomic<UInt>>(bitPattern: x)!
                    if fields[0].load(ordering: .relaxed) != typeTag { wrongType.add(1, ordering: .relaxed) }
                    _ = fields[1].load(ordering: .relaxed)
                    n += 1
                    if n % 16 == 0 { sched_yield() }  // two vCPUs here: let the writers run
                }
                reads.add(n, ordering: .relaxed)
                return
            }
            for _ in 0..<iterations {
                let i = Int(rng.next() % UInt64(slots))
                let p = try! c.allocate()
                let fields = p.assumingMemoryBound(to: Atomic<UInt>.self)
                fields[1].store(UInt(t), ordering: .relaxed)
                let old = table[i].exchange(UInt(bitPattern: p), ordering: .acquiringAndReleasing)
                if old != 0 { try! c.free(UnsafeMutableRawPointer(bitPattern: old)) }  // at once
            }
            if t == 0 {
                while reads.load(ordering: .relaxed) == 0 && !stop.load(ordering: .relaxed) { sched_yield() }
            }
            stop.store(true, ordering: .releasing)
        }
        #expect(wrongType.load(ordering: .relaxed) == 0, "a stale reader found memory of another type")
        for i in 0..<slots {
            let x = table[i].load(ordering: .relaxed)
            if x != 0 { try c.free(UnsafeMutableRawPointer(bitPattern: x)) }
        }
        q.checkInvariants()
        #expect(c.destroy() == 0)
        q.shrink()
        #expect(q.pageStatistics.pagesInUse == 0)
    }
}
