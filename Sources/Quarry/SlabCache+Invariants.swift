// SlabCache+Invariants: the whole-cache walk that checks every invariant of
// CacheState, SlabList and Slab. Neighbours: Quarry+Invariants (calls it for every cache).

extension SlabCache {
    /// Traps with a message on the first broken invariant:
    /// - every slab on a list is a live slab head of this cache, on the list its
    ///   `inUse` calls for (empty: 0, full: capacity, partial: in between)
    /// - per slab: `inUse + |free list| == carved <= capacity`, the colour is one of
    ///   the cache's colours, and the bitmap has exactly `inUse` bits set in the slab
    /// - `counters.active == Σ inUse`; `slabsCreated - slabsReleased == slab count`
    /// - `empty.count <= emptySlabReserve` (type-stable caches keep every empty slab)
    /// O(slabs × slab bytes / granule). Call it at quiescence (tests, debug shells).
    public func checkInvariants() {
        let saved = state.pointee.lock.acquire(P.self)
        let h = heap
        let map = h.pointee.map
        let arena = h.pointee.arena
        let g = geometry
        let secret = state.pointee.secret
        let me = UInt(bitPattern: state)
        // `checkSlab` returns the slab's count rather than adding to `active` itself: a
        // local function that captured the variable would box it (an allocation, which
        // the Embedded library's -no-allocations refuses).
        func checkSlab(_ page: PageNumber) -> Int {
            let d = map[page]
            precondition(d.cache == me, "SlabCache: slab of another cache on this cache's list")
            precondition(Int(d.pages) == g.slabPages, "SlabCache: slab length")
            precondition(Int(d.carved) <= g.objectsPerSlab, "SlabCache: carved beyond capacity")
            precondition(Int(d.color) % g.colorStep == 0 && Int(d.color) / g.colorStep < g.colorCount,
                         "SlabCache: colour out of range")
            let slab = Slab(page: page, map: map, arena: arena)
            guard let free = slab.freeListLength(g, secret: secret) else {
                preconditionFailure("SlabCache: corrupt free list")
            }
            precondition(Int(d.inUse) + free == Int(d.carved), "SlabCache: inUse + free != carved")
            let bits = h.pointee.bitmap.count(from: page, pages: g.slabPages)
            precondition(bits == Int(d.inUse), "SlabCache: bitmap disagrees with inUse")
            return Int(d.inUse)
        }
        var active = 0
        state.pointee.partial.check(map) { page in
            let n = Int(map[page].inUse)
            precondition(n > 0 && n < g.objectsPerSlab, "SlabCache: partial slab not partial")
            active += checkSlab(page)
        }
        state.pointee.full.check(map) { page in
            precondition(Int(map[page].inUse) == g.objectsPerSlab, "SlabCache: full slab not full")
            active += checkSlab(page)
        }
        state.pointee.empty.check(map) { page in
            precondition(map[page].inUse == 0, "SlabCache: empty slab not empty")
            active += checkSlab(page)
        }
        precondition(active == state.pointee.counters.active, "SlabCache: active counter")
        let c = state.pointee.counters
        precondition(c.slabsCreated - c.slabsReleased == UInt64(word: UInt(state.pointee.slabCount)),
                     "SlabCache: slab count")
        precondition(state.pointee.typeStable || state.pointee.empty.count <= max(h.pointee.tuning.emptySlabReserve, 0),
                     "SlabCache: empty reserve exceeded")
        precondition(state.pointee.magic == CacheState.liveMagic, "SlabCache: dead cache")
        state.pointee.lock.release(P.self, saved)
    }

    /// Pages this cache's slabs hold.
    var pagesHeld: Int { state.pointee.slabCount * geometry.slabPages }
}
