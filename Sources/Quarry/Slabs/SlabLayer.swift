// SlabLayer: one cache's slabs under its cache lock: the four lists, the colour cursor and
// the counters, and the operations on them: take objects from slabs, give them back,
// create and release slabs. The per-CPU layer (SlabCache+PerCPU, SlabCache+Bulk) refills
// and flushes through it.
// Neighbours: Slab (one slab's free list), SlabList (a list of slabs), CacheState (holds
// it behind `lock`), PageAllocator (through the page lock), SlabCache+Slabs (the
// one-object entry points that take the lock).
//
// A SlabLayer is reached only as the `inout` value of the cache lock's scope
// (`CacheState.lock.withLock` / `tryWithLock`), so "under the cache lock" is a type fact:
// every method here is mutating and runs inside that scope. The page lock is taken
// inside, after it (lock order: depot -> cache -> page). This is the only code that
// writes a slab object's allocation bit: set when the object leaves its slab, cleared
// when it comes back (AllocationBitmap), so the bit of an object held by a user or by the
// per-CPU layer is set, and bits set == `inUse`. `cache` names the cache whose layer this
// is (its geometry, secret, bitmap and heap).

import Synchronization

/// The slab layer of one cache: its four lists, colour cursor and counters, and the
/// operations on them. Reached only through the cache lock (`CacheState.lock`).
struct SlabLayer: LockedState {
    var nextColor = 0
    var partial = SlabList(kind: .partial)
    var full = SlabList(kind: .full)
    var empty = SlabList(kind: .empty)
    var quarantined = SlabList(kind: .quarantined)
    var counters = CacheCounters()

    var slabCount: Int { partial.count + full.count + empty.count + quarantined.count }

    /// Takes one object from the slabs: from a partial slab, else an empty one, else a
    /// new slab (page lock, taken the way `mode` allows). Runs the constructor on an
    /// object its slab never handed out before (under the cache lock, interrupts
    /// masked: constructors must be short, and a constructor that calls Quarry gets
    /// the re-entrant `.tryOnly` behaviour).
    ///
    /// `.corruptFreeList` when the slab's free list is found corrupt (Slab.pop), or
    /// names an object that is already out (its bit is set): the slab is quarantined
    /// and the corruption reported, once; the next call takes another slab. So one
    /// corrupted slab refuses at most one allocation (a refill that already holds
    /// objects is not refused at all), and nothing on this path traps.
    @inline(__always)
    mutating func take<P>(_ mode: LockMode, for cache: SlabCache<P>) -> Result<UInt, QuarryError> {
        let map = cache.map
        guard let page = slabToTakeFrom(mode, for: cache) else { return .failure(.outOfMemory) }
        let slab = Slab(page: page, map: map, arena: cache.arena)
        switch slab.pop(cache.geometry, secret: cache.secret, bitmap: cache.bitmap) {
        case .object(let object, let fresh):
            guard cache.bitmap.setLocked(object) else {
                // Out already (a randomized slab's list named an object not yet carved,
                // which was handed out and is now carved again): never hand it out twice.
                map[page].inUse -= 1
                return quarantine(page, reporting: object, for: cache)
            }
            if Int(map[page].inUse) == cache.geometry.objectsPerSlab {
                partial.remove(page, map)
                full.push(page, map)
            }
            counters.slabAllocations += 1
            counters.inUse += 1
            if counters.inUse > counters.highWater {
                counters.highWater = counters.inUse
            }
            if fresh && cache.state.pointee.objectWork { cache.prepareFresh(object) }
            if fresh, let constructor = cache.state.pointee.constructor {
                // Sound: a never-used object of a live slab of this cache, owned by the caller.
                constructor(UnsafeMutableRawPointer(bitPattern: object).unsafelyUnwrapped)
            }
            return .success(object)
        case .corrupt(let address):
            return quarantine(page, reporting: address, for: cache)
        }
    }

    /// The slab the next object comes from: the first partial slab, else an empty one
    /// (moved to partial), else a new slab; nil when no page is left.
    @inline(__always)
    mutating func slabToTakeFrom<P>(_ mode: LockMode, for cache: SlabCache<P>) -> PageNumber? {
        let map = cache.map
        var page = partial.head
        if page == .none {
            page = empty.head
            if page != .none {
                empty.remove(page, map)
                partial.push(page, map)
            } else if let fresh = createSlab(mode, for: cache) {
                page = fresh
            } else {
                return nil
            }
        }
        return page
    }

    /// `take` for up to `n` objects of one slab, into `out`: the count
    /// taken (at least 1), or the error with none taken. The slab's descriptor words
    /// and the cache's counters are written once per run, not once per object
    /// (the bulk allocation's slab section).
    mutating func takeRun<P>(
        into out: UnsafeMutablePointer<UnsafeMutableRawPointer?>, _ n: Int, _ mode: LockMode,
        for cache: SlabCache<P>
    ) -> Result<Int, QuarryError> {
        let map = cache.map
        guard let page = slabToTakeFrom(mode, for: cache) else { return .failure(.outOfMemory) }
        let slab = Slab(page: page, map: map, arena: cache.arena)
        let g = cache.geometry
        let secret = cache.secret
        let bitmap = cache.bitmap
        let objectWork = cache.state.pointee.objectWork
        let constructor = cache.state.pointee.constructor
        var taken = 0
        var failure: QuarryError? = nil
        var corruptAt: UInt? = nil
        run: while taken < n && Int(map[page].inUse) < g.objectsPerSlab {
            switch slab.pop(g, secret: secret, bitmap: bitmap) {
            case .object(let object, let fresh):
                guard bitmap.setLocked(object) else {
                    // As in take: never hand an object out twice.
                    map[page].inUse -= 1
                    corruptAt = object
                    break run
                }
                if fresh && objectWork { cache.prepareFresh(object) }
                if fresh, let constructor {
                    // Sound: a never-used object of a live slab of this cache, owned by the caller.
                    constructor(UnsafeMutableRawPointer(bitPattern: object).unsafelyUnwrapped)
                }
                out[taken] = UnsafeMutableRawPointer(bitPattern: object)
                taken += 1
            case .corrupt(let address):
                corruptAt = address
                break run
            }
        }
        if Int(map[page].inUse) == g.objectsPerSlab {
            partial.remove(page, map)
            full.push(page, map)
        }
        counters.slabAllocations += UInt64(word: UInt(taken))
        counters.inUse += taken
        if counters.inUse > counters.highWater {
            counters.highWater = counters.inUse
        }
        if let corruptAt {
            // Quarantine first, then give the run back: its objects join the slab's
            // leaked objects (a quarantined slab is never taken from again).
            if case .failure(let error) = quarantine(page, reporting: corruptAt, for: cache) { failure = error }
            while taken > 0 {
                taken -= 1
                giveBack(UInt(bitPattern: out[taken]), mode, for: cache, slab: page)
            }
        }
        if let failure { return .failure(failure) }
        return .success(taken)
    }

    /// Takes the partial slab at `page`, whose free list was found corrupt, out of
    /// service: off the partial list onto the quarantined one, its free list dropped
    /// (never followed again), its free objects (`carved - inUse`) counted as leaked.
    /// Reports `.corruptFreeList` at `address` (once per slab: a quarantined slab is
    /// never taken from again) and returns it as the failure.
    @inline(never)
    mutating func quarantine<P>(
        _ page: PageNumber, reporting address: UInt, for cache: SlabCache<P>
    ) -> Result<UInt, QuarryError> {
        let map = cache.map
        let d = map[page]
        partial.remove(page, map)
        d.freeHead = 0
        quarantined.push(page, map)
        counters.slabsQuarantined += 1
        counters.leakedObjects += Int(d.carved - d.inUse)
        cache.report(.corruptFreeList, address)
        return .failure(.corruptFreeList)
    }

    /// Gives `object` (of this cache, out of its slab) back to its slab and clears its
    /// bit. A slab that becomes empty goes to the empty list, or back to the page
    /// allocator when the reserve is full (a quarantined slab keeps the object, counted
    /// as leaked, and stays quarantined); in `.tryOnly` mode it stays on the empty
    /// list and the cache is marked for a trim (releasing pages needs the page lock).
    /// False, with `.doubleFree` reported and nothing changed, when the object is
    /// already in its slab (bit clear: two frees raced past the hit path's checks and
    /// the object was cached twice; the copy is dropped and counted).
    /// `slab`: the object's slab head when the caller already resolved it (under this
    /// lock: `locate` of a free checked under it), else it is looked up here.
    @discardableResult
    mutating func giveBack<P>(
        _ object: UInt, _ mode: LockMode, for cache: SlabCache<P>, slab: PageNumber? = nil
    ) -> Bool {
        guard cache.bitmap.clearLocked(object) else {
            cache.state.pointee.atomics.droppedDuplicates.wrappingAdd(1, ordering: .relaxed)
            cache.report(.doubleFree, object)
            return false
        }
        let map = cache.map
        let page = slab ?? cache.slabOf(object)
        counters.slabFrees += 1
        counters.inUse -= 1
        let list = map[page].list
        if list == .quarantined {
            // Accounted, never reused: it joins the slab's leaked objects.
            map[page].inUse -= 1
            counters.leakedObjects += 1
            return true
        }
        let wasFull = list == .full
        Slab(page: page, map: map, arena: cache.arena).push(object, cache.geometry, secret: cache.secret)
        if wasFull {
            full.remove(page, map)
            partial.push(page, map)
        }
        if map[page].inUse == 0 {
            partial.remove(page, map)
            let reserve = cache.state.pointee.emptySlabReserve
            if empty.count < reserve || mode == .tryOnly {
                empty.push(page, map)
                if empty.count > reserve {
                    cache.state.pointee.atomics.trimNeeded.store(true, ordering: .relaxed)
                }
            } else {
                releaseSlab(page, for: cache)
            }
        }
        return true
    }

    /// Takes pages for a new slab, gives it the next colour and puts it on the partial list.
    mutating func createSlab<P>(_ mode: LockMode, for cache: SlabCache<P>) -> PageNumber? {
        let g = cache.geometry
        let h = cache.heap
        let taken = h.pointee.pages.tryWithLock(P.self, mode) { pages -> PageNumber? in
            cache.hook(.pageLocked)
            return pages.allocate(g.slabPages)
        }
        guard let page = taken ?? nil else { return nil }
        AddressSanitizer.unpoison(h.pointee.arena.address(of: page), g.slabPages << Geometry.pageShift)
        cache.bitmap.clearSlab(page, pages: g.slabPages)
        let map = h.pointee.map
        map[page].setSlabHead(
            color: g.color(nextColor), pages: g.slabPages,
            head: page, cache: UInt(bitPattern: cache.state))
        map.markTails(of: page, count: g.slabPages)
        nextColor = (nextColor + 1) % g.colorCount
        counters.slabsCreated += 1
        partial.push(page, map)
        return page
    }

    /// Gives an empty slab's pages back to the page allocator. The slab is on no list.
    mutating func releaseSlab<P>(_ page: PageNumber, for cache: SlabCache<P>) {
        counters.slabsReleased += 1
        let count = cache.geometry.slabPages
        cache.heap.pointee.pages.withLock(P.self) { pages in
            cache.hook(.pageLocked)
            pages.free(page, count)
        }
    }

    /// Releases empty slabs beyond `keep`. Returns the number of pages given back.
    mutating func releaseEmptySlabs<P>(keeping keep: Int, for cache: SlabCache<P>) -> Int {
        let map = cache.map
        var released = 0
        while empty.count > keep {
            let page = empty.head
            empty.remove(page, map)
            releaseSlab(page, for: cache)
            released += cache.geometry.slabPages
        }
        return released
    }

    /// Releases every quarantined slab (`destroy`: no object of the cache is out, so
    /// each has `inUse == 0`), and forgets their leaked objects.
    mutating func releaseQuarantinedSlabs<P>(for cache: SlabCache<P>) {
        let map = cache.map
        while quarantined.count > 0 {
            let page = quarantined.head
            quarantined.remove(page, map)
            assert(map[page].inUse == 0, "SlabCache: a quarantined slab released with objects out")
            counters.leakedObjects -= Int(map[page].carved - map[page].inUse)
            releaseSlab(page, for: cache)
        }
    }
}
