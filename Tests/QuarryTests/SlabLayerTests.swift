// SlabLayerTests: the slab layer on its own, driven through the cache lock's scope with
// no per-CPU layer in between: which list a slab is on as objects leave and come back,
// the empty-slab reserve, runs, and a second give-back of the same object.
// Neighbours: SlabLayer (under test), SlabCacheTests (the same through the public API),
// TestArena.

import Testing

@testable import Quarry

@Suite struct SlabLayerTests {
    /// A cache of four 64-byte objects per slab, one empty slab kept.
    func makeCache(_ arena: TestArena) throws -> (Quarry<ThreadPlatform<1>>, SlabCache<ThreadPlatform<1>>) {
        let q = try arena.quarry(tuning: Tuning(maxObjectsPerSlab: 4, emptySlabReserve: 1))
        let c = try q.createCache(name: "layer", size: 64)
        #expect(c.statistics.objectsPerSlab == 4)
        return (q, c)
    }

    /// Lists follow `inUse`: full at capacity, partial in between, empty at 0, and an
    /// emptied slab past the reserve goes back to the page allocator.
    @Test func slabsMoveBetweenListsAsObjectsLeaveAndReturn() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let (q, c) = try makeCache(arena)
        c.state.pointee.lock.withLock(ThreadPlatform<1>.self) { slabs in
            var first: [UInt] = []
            for _ in 0..<4 {
                guard case .success(let object) = slabs.take(.spin, for: c) else { Issue.record("take"); return }
                first.append(object)
            }
            #expect(slabs.full.count == 1 && slabs.partial.count == 0 && slabs.empty.count == 0)
            guard case .success(let lone) = slabs.take(.spin, for: c) else { Issue.record("take"); return }
            #expect(slabs.full.count == 1 && slabs.partial.count == 1)
            #expect(c.slabOf(lone) != c.slabOf(first[0]))
            #expect(slabs.counters.inUse == 5 && slabs.counters.slabsCreated == 2)

            var returned = slabs.giveBack(first[0], .spin, for: c)
            #expect(returned)
            #expect(slabs.full.count == 0 && slabs.partial.count == 2)
            for object in first.dropFirst() {
                returned = slabs.giveBack(object, .spin, for: c)
                #expect(returned)
            }
            #expect(slabs.partial.count == 1 && slabs.empty.count == 1)
            // The reserve (1) is full: the next slab to empty goes back to the pages.
            returned = slabs.giveBack(lone, .spin, for: c)
            #expect(returned)
            #expect(slabs.partial.count == 0 && slabs.empty.count == 1)
            #expect(slabs.counters.slabsReleased == 1 && slabs.counters.inUse == 0)
            #expect(slabs.counters.slabAllocations == 5 && slabs.counters.slabFrees == 5)
            let released = slabs.releaseEmptySlabs(keeping: 0, for: c)
            #expect(released == c.geometry.slabPages)
            #expect(slabs.slabCount == 0)
        }
        q.checkInvariants()
    }

    /// A run takes from one slab only and moves it to full when it empties it.
    @Test func aRunStopsAtTheEndOfItsSlab() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let (q, c) = try makeCache(arena)
        let out = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 10)
        defer { out.deallocate() }
        c.state.pointee.lock.withLock(ThreadPlatform<1>.self) { slabs in
            guard case .success(let taken) = slabs.takeRun(into: out, 10, .spin, for: c) else {
                Issue.record("takeRun")
                return
            }
            #expect(taken == 4 && slabs.full.count == 1 && slabs.counters.inUse == 4)
            let objects = (0..<taken).map { UInt(bitPattern: out[$0]) }
            #expect(Set(objects).count == 4 && objects.allSatisfy { c.slabOf($0) == c.slabOf(objects[0]) })
            for i in 0..<taken { slabs.giveBack(UInt(bitPattern: out[i]), .spin, for: c) }
            #expect(slabs.empty.count == 1 && slabs.counters.inUse == 0)
        }
        q.checkInvariants()
    }

    /// A second give-back of one object (two frees that raced past the checks) is
    /// dropped: false, counted, reported, and the lists and counters are unchanged.
    @Test func aSecondGiveBackIsDroppedAndCounted() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let (_, c) = try makeCache(arena)
        let before = c.state.pointee.atomics.errorCount(.doubleFree)
        c.state.pointee.lock.withLock(ThreadPlatform<1>.self) { slabs in
            guard case .success(let kept) = slabs.take(.spin, for: c),
                case .success(let object) = slabs.take(.spin, for: c)
            else {
                Issue.record("take")
                return
            }
            let first = slabs.giveBack(object, .spin, for: c)
            let counters = slabs.counters
            let second = slabs.giveBack(object, .spin, for: c)
            #expect(first && !second)
            #expect(slabs.counters.inUse == counters.inUse && slabs.counters.slabFrees == counters.slabFrees)
            #expect(slabs.partial.count == 1)
            let last = slabs.giveBack(kept, .spin, for: c)
            #expect(last)
        }
        #expect(c.state.pointee.atomics.droppedDuplicates.load(ordering: .relaxed) == 1)
        #expect(c.state.pointee.atomics.errorCount(.doubleFree) == before + 1)
        // No `checkInvariants` here: a dropped copy counts as an allocation (in the race
        // it stands for, the copy was also counted as a free), which this direct test
        // never made, so `active` is one above `inUse` on purpose.
    }
}
