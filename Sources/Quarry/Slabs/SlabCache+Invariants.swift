// SlabCache+Invariants: the whole-cache walk that checks every invariant of CacheState,
// SlabList, Slab, CPUCache, Magazine and Depot. Neighbours: Quarry+Invariants (calls it
// for every cache and checks the magazine cache's accounting against it).

import Synchronization

extension SlabCache {
    /// Traps with a message on the first broken invariant:
    /// - every slab on a list is a live slab head of this cache, on the list its
    ///   `inUse` calls for (empty: 0, full: capacity, partial: in between; quarantined:
    ///   any, with no free list)
    /// - per slab: `inUse + |free list| + leaked == carved <= capacity` (`leaked` is
    ///   `carved - inUse` for a quarantined slab, else 0), the colour is one of the
    ///   cache's colours, and the bitmap has exactly `inUse` bits set in the slab
    ///   (objects held by users or by the per-CPU layer)
    /// - per CPU slot: both magazines the sentinel, or two distinct magazines of
    ///   capacity `magazineCapacity` with `count <= capacity`; `reserveCount <= cpuReserve`
    /// - depot: stack lengths match the counts, full magazines full, empty ones empty,
    ///   `fullCount <= depotFullLimit`, `emptyCount <= depotEmptyLimit` unless a trim is due
    /// - every cached object (magazines, reserves, depot) is an object of a live slab of
    ///   this cache, with its bitmap bit set, held once
    /// - `counters.inUse == Σ slab.inUse == active + cached`; `counters.leakedObjects ==
    ///   Σ (carved - inUse)` over quarantined slabs; `slabsCreated - slabsReleased ==
    ///   slab count`; `empty.count <= emptySlabReserve` unless a trim is due
    /// O(slabs × slab bytes / granule + cached objects). Call it at quiescence only (it
    /// reads every CPU's slot, and briefly clears the bitmap bits of cached objects to
    /// find duplicates). Not interrupt-safe.
    public func checkInvariants() {
        _ = checkInvariantsCountingMagazines()
    }

    /// `checkInvariants`, returning the number of magazines the cache holds (its CPUs'
    /// and its depot's), for the heap-wide magazine accounting.
    func checkInvariantsCountingMagazines() -> Int {
        state.pointee.depot.withLock(P.self) { depot in
            state.pointee.lock.withLock(P.self) { slabs in checkInvariantsCountingMagazines(depot, slabs) }
        }
    }

    /// `checkInvariantsCountingMagazines` inside the depot's and the cache lock's scopes.
    private func checkInvariantsCountingMagazines(_ depot: Depot, _ slabs: SlabLayer) -> Int {
        let h = heap
        let tuning = h.pointee.tuning
        let capacity = state.pointee.magazineCapacity
        let sentinel = h.pointee.sentinel
        let trimDue = state.pointee.atomics.trimNeeded.load(ordering: .relaxed)
        precondition(sentinel.count == 0 && sentinel.capacity == 0, "Magazine: the sentinel holds objects")
        precondition(state.pointee.magic.load(ordering: .relaxed) == CacheState.liveMagic, "SlabCache: dead cache")

        // Structure of the per-CPU slots and the depot.
        var magazines = 0
        var i = 0
        while i < P.maxCPUs {
            let slot = CacheState.cpu(i, of: state)
            let l = slot.pointee.loaded
            let p = slot.pointee.previous
            if l == sentinel || p == sentinel {
                precondition(l == p, "CPUCache: one magazine attached, the other not")
            } else {
                precondition(capacity > 0, "CPUCache: magazines in a cache without a per-CPU layer")
                precondition(l != p, "CPUCache: loaded and previous are one magazine")
                precondition(l.capacity == capacity && p.capacity == capacity, "Magazine: capacity")
                precondition(
                    l.count >= 0 && l.count <= capacity && p.count >= 0 && p.count <= capacity,
                    "Magazine: count out of range")
                magazines += 2
            }
            precondition(
                slot.pointee.reserveCount >= 0 && slot.pointee.reserveCount <= Geometry.cpuReserve,
                "CPUCache: reserve count out of range")
            i += 1
        }
        var fulls = 0
        var empties = 0
        depot.forEach { m, isFull in
            precondition(m != sentinel && m.capacity == capacity, "Depot: magazine capacity")
            if isFull {
                precondition(m.isFull, "Depot: a magazine on the full stack is not full")
                fulls += 1
            } else {
                precondition(m.count == 0, "Depot: a magazine on the empty stack is not empty")
                empties += 1
            }
        }
        precondition(
            fulls == depot.fullCount && empties == depot.emptyCount,
            "Depot: counts disagree with the stacks")
        precondition(fulls <= tuning.depotFullLimit, "Depot: more full magazines than depotFullLimit")
        precondition(empties <= tuning.depotEmptyLimit || trimDue, "Depot: more empty magazines than depotEmptyLimit")
        precondition(capacity > 0 || fulls + empties == 0, "Depot: magazines in a cache without a per-CPU layer")
        magazines += fulls + empties

        // Cached objects: valid, bit set, held once, marked. Clearing each one's bit
        // finds a duplicate (the second clear fails); the bits are set again below.
        var cached = 0
        forEachCachedObject(depot) { object in
            guard case .success = locate(object) else {
                preconditionFailure("CPUCache: a cached object is not an object of this cache")
            }
            precondition(
                bitmap.markFree(object),
                "CPUCache: a cached object is in its slab, or cached twice")
            cached += 1
        }
        forEachCachedObject(depot) { object in _ = bitmap.markAllocated(object) }

        let map = h.pointee.map
        let arena = h.pointee.arena
        let g = geometry
        let secret = state.pointee.secret
        let me = UInt(bitPattern: state)
        // `checkSlab` returns the slab's count rather than adding to a captured variable:
        // a local function that captures a variable may box it (an allocation, which
        // the Embedded library's -no-allocations refuses).
        func checkSlab(_ page: PageNumber) -> Int {
            let d = map[page]
            precondition(d.cache == me, "SlabCache: slab of another cache on this cache's list")
            precondition(Int(d.pages) == g.slabPages, "SlabCache: slab length")
            precondition(Int(d.carved) <= g.objectsPerSlab, "SlabCache: carved beyond capacity")
            precondition(
                Int(d.color) % g.colorStep == 0 && Int(d.color) / g.colorStep < g.colorCount,
                "SlabCache: colour out of range")
            let slab = Slab(page: page, map: map, arena: arena)
            guard case .length(let free) = slab.walkFreeList(g, secret: secret, bitmap: bitmap) else {
                preconditionFailure("SlabCache: corrupt free list")
            }
            let leaked = d.list == .quarantined ? Int(d.carved) - Int(d.inUse) : 0
            precondition(
                leaked >= 0 && (d.list != .quarantined || free == 0),
                "SlabCache: a quarantined slab with a free list, or more objects out than carved")
            precondition(Int(d.inUse) + free + leaked == Int(d.carved), "SlabCache: inUse + free + leaked != carved")
            let bits = bitmap.count(slab: page, pages: g.slabPages)
            precondition(bits == Int(d.inUse), "SlabCache: bitmap (allocated + cached) disagrees with inUse")
            return Int(d.inUse)
        }
        var inUse = 0
        slabs.partial.check(map) { page in
            let n = Int(map[page].inUse)
            precondition(n > 0 && n < g.objectsPerSlab, "SlabCache: partial slab not partial")
            inUse += checkSlab(page)
        }
        slabs.full.check(map) { page in
            precondition(Int(map[page].inUse) == g.objectsPerSlab, "SlabCache: full slab not full")
            inUse += checkSlab(page)
        }
        slabs.empty.check(map) { page in
            precondition(map[page].inUse == 0, "SlabCache: empty slab not empty")
            inUse += checkSlab(page)
        }
        var leaked = 0
        slabs.quarantined.check(map) { page in
            let n = checkSlab(page)
            inUse += n
            leaked += Int(map[page].carved) - n
        }

        let c = slabs.counters
        precondition(inUse == c.inUse, "SlabCache: inUse counter != Σ slab inUse")
        precondition(leaked == c.leakedObjects, "SlabCache: leaked objects != Σ quarantined (carved - inUse)")
        precondition(activeObjects + cached == c.inUse, "SlabCache: active + cached != objects out of slabs")
        precondition(
            c.slabsCreated - c.slabsReleased == UInt64(word: UInt(slabs.slabCount)),
            "SlabCache: slab count")
        precondition(
            slabs.empty.count <= state.pointee.emptySlabReserve || trimDue,
            "SlabCache: empty reserve exceeded")
        return magazines
    }

    /// Calls `body` with every object the per-CPU layer holds: every CPU's magazines
    /// and reserve, and the full magazines of `depot` (this cache's, inside its lock
    /// scope). At quiescence.
    func forEachCachedObject(_ depot: Depot, _ body: (UInt) -> Void) {
        let sentinel = heap.pointee.sentinel
        func rounds(_ m: Magazine) {
            guard m != sentinel else { return }
            var k = 0
            while k < m.count { body(m.rounds[k]); k += 1 }
        }
        var i = 0
        while i < P.maxCPUs {
            let slot = CacheState.cpu(i, of: state)
            rounds(slot.pointee.loaded)
            rounds(slot.pointee.previous)
            var r = 0
            while r < slot.pointee.reserveCount { body(slot.pointee.reserve[r]); r += 1 }
            i += 1
        }
        depot.forEach { m, isFull in
            if isFull { rounds(m) }
        }
    }

    /// Pages this cache's slabs hold.
    var pagesHeld: Int { state.pointee.lock.withLock(P.self) { slabs in slabs.slabCount } * geometry.slabPages }
}
