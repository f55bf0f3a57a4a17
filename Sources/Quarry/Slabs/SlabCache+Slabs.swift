// SlabCache+Slabs: the slab layer under the cache lock: take objects from slabs, give them
// back, create and release slabs. The per-CPU layer refills and flushes through it.
// Neighbours: Slab (one slab's free list), SlabList and CacheState (the lists and
// counters), PageAllocator (through the page lock), SlabCache+PerCPU (its callers).
//
// Everything here except `takeOne`, `allocateOneFromSlabs` and `freeOneToSlabs` works on
// the slab layer it is handed (`inout SlabLayer`), which only the cache lock's scope hands
// out (`CacheState.lock`); the page lock is taken inside, after it (lock order: depot ->
// cache -> page). This is the only code that writes a slab object's allocation bit: set
// when the object leaves its slab, cleared when it comes back (AllocationBitmap), so the
// bit of an object held by a user or by the per-CPU layer is set, and bits set == `inUse`.

import Synchronization

extension SlabCache {
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
    func takeFromSlabs(_ slabs: inout SlabLayer, _ mode: LockMode) -> Result<UInt, QuarryError> {
        let map = heap.pointee.map
        guard let page = slabToTakeFrom(&slabs, mode) else { return .failure(.outOfMemory) }
        let slab = Slab(page: page, map: map, arena: heap.pointee.arena)
        switch slab.pop(geometry, secret: state.pointee.secret, bitmap: state.pointee.bitmap) {
        case .object(let object, let fresh):
            guard state.pointee.bitmap.setLocked(object) else {
                // Out already (a randomized slab's list named an object not yet carved,
                // which was handed out and is now carved again): never hand it out twice.
                map[page].inUse -= 1
                return quarantine(&slabs, page, reporting: object)
            }
            if Int(map[page].inUse) == geometry.objectsPerSlab {
                slabs.partial.remove(page, map)
                slabs.full.push(page, map)
            }
            slabs.counters.slabAllocations += 1
            slabs.counters.inUse += 1
            if slabs.counters.inUse > slabs.counters.highWater {
                slabs.counters.highWater = slabs.counters.inUse
            }
            if fresh && state.pointee.objectWork { prepareFresh(object) }
            if fresh, let constructor = state.pointee.constructor {
                // Sound: a never-used object of a live slab of this cache, owned by the caller.
                constructor(UnsafeMutableRawPointer(bitPattern: object).unsafelyUnwrapped)
            }
            return .success(object)
        case .corrupt(let address):
            return quarantine(&slabs, page, reporting: address)
        }
    }

    /// The slab the next object comes from: the first partial slab, else an empty one
    /// (moved to partial), else a new slab; nil when no page is left.
    @inline(__always)
    func slabToTakeFrom(_ slabs: inout SlabLayer, _ mode: LockMode) -> PageNumber? {
        let map = heap.pointee.map
        var page = slabs.partial.head
        if page == .none {
            page = slabs.empty.head
            if page != .none {
                slabs.empty.remove(page, map)
                slabs.partial.push(page, map)
            } else if let fresh = createSlab(&slabs, mode) {
                page = fresh
            } else {
                return nil
            }
        }
        return page
    }

    /// `takeFromSlabs` for up to `n` objects of one slab, into `out`: the count
    /// taken (at least 1), or the error with none taken. The slab's descriptor words
    /// and the cache's counters are written once per run, not once per object
    /// (the bulk allocation's slab section).
    func takeRunFromSlabs(
        _ slabs: inout SlabLayer, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>,
        _ n: Int, _ mode: LockMode
    ) -> Result<Int, QuarryError> {
        let map = heap.pointee.map
        guard let page = slabToTakeFrom(&slabs, mode) else { return .failure(.outOfMemory) }
        let slab = Slab(page: page, map: map, arena: heap.pointee.arena)
        let g = geometry
        let secret = state.pointee.secret
        let bitmap = state.pointee.bitmap
        let objectWork = state.pointee.objectWork
        let constructor = state.pointee.constructor
        var taken = 0
        var failure: QuarryError? = nil
        var corruptAt: UInt? = nil
        run: while taken < n && Int(map[page].inUse) < g.objectsPerSlab {
            switch slab.pop(g, secret: secret, bitmap: bitmap) {
            case .object(let object, let fresh):
                guard bitmap.setLocked(object) else {
                    // As in takeFromSlabs: never hand an object out twice.
                    map[page].inUse -= 1
                    corruptAt = object
                    break run
                }
                if fresh && objectWork { prepareFresh(object) }
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
            slabs.partial.remove(page, map)
            slabs.full.push(page, map)
        }
        slabs.counters.slabAllocations += UInt64(word: UInt(taken))
        slabs.counters.inUse += taken
        if slabs.counters.inUse > slabs.counters.highWater {
            slabs.counters.highWater = slabs.counters.inUse
        }
        if let corruptAt {
            // Quarantine first, then give the run back: its objects join the slab's
            // leaked objects (a quarantined slab is never taken from again).
            if case .failure(let error) = quarantine(&slabs, page, reporting: corruptAt) { failure = error }
            while taken > 0 {
                taken -= 1
                returnToSlabs(&slabs, UInt(bitPattern: out[taken]), mode, slab: page)
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
    func quarantine(_ slabs: inout SlabLayer, _ page: PageNumber, reporting address: UInt) -> Result<UInt, QuarryError>
    {
        let map = heap.pointee.map
        let d = map[page]
        slabs.partial.remove(page, map)
        d.freeHead = 0
        slabs.quarantined.push(page, map)
        slabs.counters.slabsQuarantined += 1
        slabs.counters.leakedObjects += Int(d.carved - d.inUse)
        report(.corruptFreeList, address)
        return .failure(.corruptFreeList)
    }

    /// The slab head of `object`, an object of this cache that is out of its slab
    /// (counted in `inUse`, so the slab cannot be released under us).
    func slabOf(_ object: UInt) -> PageNumber {
        guard case .success(.slab(let head)) = PageMap.lookup(object, in: heap) else {
            preconditionFailure("SlabCache: an object held by Quarry is not in a live slab")
        }
        return head.page
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
    func returnToSlabs(_ slabs: inout SlabLayer, _ object: UInt, _ mode: LockMode, slab: PageNumber? = nil) -> Bool {
        guard state.pointee.bitmap.clearLocked(object) else {
            state.pointee.atomics.droppedDuplicates.wrappingAdd(1, ordering: .relaxed)
            report(.doubleFree, object)
            return false
        }
        let map = heap.pointee.map
        let page = slab ?? slabOf(object)
        slabs.counters.slabFrees += 1
        slabs.counters.inUse -= 1
        let list = map[page].list
        if list == .quarantined {
            // Accounted, never reused: it joins the slab's leaked objects.
            map[page].inUse -= 1
            slabs.counters.leakedObjects += 1
            return true
        }
        let wasFull = list == .full
        Slab(page: page, map: map, arena: heap.pointee.arena).push(object, geometry, secret: state.pointee.secret)
        if wasFull {
            slabs.full.remove(page, map)
            slabs.partial.push(page, map)
        }
        if map[page].inUse == 0 {
            slabs.partial.remove(page, map)
            let reserve = state.pointee.emptySlabReserve
            if slabs.empty.count < reserve || mode == .tryOnly {
                slabs.empty.push(page, map)
                if slabs.empty.count > reserve {
                    state.pointee.atomics.trimNeeded.store(true, ordering: .relaxed)
                }
            } else {
                releaseSlab(&slabs, page)
            }
        }
        return true
    }

    /// Takes pages for a new slab, gives it the next colour and puts it on the partial list.
    func createSlab(_ slabs: inout SlabLayer, _ mode: LockMode) -> PageNumber? {
        let g = geometry
        let h = heap
        let taken = h.pointee.pages.tryWithLock(P.self, mode) { pages -> PageNumber? in
            hook(.pageLocked)
            return pages.allocate(g.slabPages)
        }
        guard let page = taken ?? nil else { return nil }
        AddressSanitizer.unpoison(h.pointee.arena.address(of: page), g.slabPages << Geometry.pageShift)
        state.pointee.bitmap.clearSlab(page, pages: g.slabPages)
        let map = h.pointee.map
        map[page].setSlabHead(
            color: g.color(slabs.nextColor), pages: g.slabPages,
            head: page, cache: UInt(bitPattern: state))
        map.markTails(of: page, count: g.slabPages)
        slabs.nextColor = (slabs.nextColor + 1) % g.colorCount
        slabs.counters.slabsCreated += 1
        slabs.partial.push(page, map)
        return page
    }

    /// Gives an empty slab's pages back to the page allocator. The slab is on no list.
    func releaseSlab(_ slabs: inout SlabLayer, _ page: PageNumber) {
        slabs.counters.slabsReleased += 1
        let count = geometry.slabPages
        heap.pointee.pages.withLock(P.self) { pages in
            hook(.pageLocked)
            pages.free(page, count)
        }
    }

    /// Releases empty slabs beyond `keep`. Returns the number of pages given back.
    func releaseEmptySlabs(_ slabs: inout SlabLayer, keeping keep: Int) -> Int {
        let map = heap.pointee.map
        var released = 0
        while slabs.empty.count > keep {
            let page = slabs.empty.head
            slabs.empty.remove(page, map)
            releaseSlab(&slabs, page)
            released += geometry.slabPages
        }
        return released
    }

    /// Releases every quarantined slab (`destroy`: no object of the cache is out, so
    /// each has `inUse == 0`), and forgets their leaked objects.
    func releaseQuarantinedSlabs(_ slabs: inout SlabLayer) {
        let map = heap.pointee.map
        while slabs.quarantined.count > 0 {
            let page = slabs.quarantined.head
            slabs.quarantined.remove(page, map)
            assert(map[page].inUse == 0, "SlabCache: a quarantined slab released with objects out")
            slabs.counters.leakedObjects -= Int(map[page].carved - map[page].inUse)
            releaseSlab(&slabs, page)
        }
    }

    // MARK: One object at a time (caches without magazines, and fall-backs)

    /// One object from the slabs under one acquisition of the cache lock, taken the
    /// way `mode` allows (`.outOfMemory` if it cannot be). Interrupts masked.
    func takeOne(_ mode: LockMode) -> Result<UInt, QuarryError> {
        let result = state.pointee.lock.tryWithLock(P.self, mode) { slabs in
            hook(.cacheLocked)
            return takeFromSlabs(&slabs, mode)
        }
        return result ?? .failure(.outOfMemory)
    }

    /// `takeOne`, counted as a slow-path allocation of `slot`'s CPU. Interrupts
    /// masked, on that CPU, the slot claimed (or a cache without magazines).
    func allocateOneFromSlabs(_ slot: UnsafeMutablePointer<CPUCache>, _ mode: LockMode) -> Result<UInt, QuarryError> {
        let result = takeOne(mode)
        if case .success = result { slot.counters.pointee.allocMisses.bump() }
        return result
    }

    /// Gives one freed object straight back to its slab; counted as a slow-path free of
    /// `slot`'s CPU. In `.tryOnly` mode the object is parked in the slot's reserve
    /// instead (false when that is full). Interrupts masked, on that CPU.
    func freeOneToSlabs(_ object: UInt, _ slot: UnsafeMutablePointer<CPUCache>, _ mode: LockMode) -> Bool {
        guard mode == .spin else { return park(object, slot) }
        state.pointee.lock.withLock(P.self) { slabs in
            hook(.cacheLocked)
            _ = returnToSlabs(&slabs, object, .spin)
        }
        slot.counters.pointee.freeMisses.bump()
        return true
    }

    /// Parks a freed object in `slot`'s reserve (a re-entrant free that cannot take a
    /// lock); false when the reserve is full.
    func park(_ object: UInt, _ slot: UnsafeMutablePointer<CPUCache>) -> Bool {
        guard slot.pointee.park(object) else { return false }
        slot.counters.pointee.freeMisses.bump()
        state.pointee.atomics.nolockParked.wrappingAdd(1, ordering: .relaxed)
        return true
    }
}
