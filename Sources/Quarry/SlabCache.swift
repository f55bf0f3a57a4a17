// SlabCache: a kmem_cache of fixed-size objects: allocate, free, shrink, destroy.
// Neighbours: CacheState (its state and slab table), Slab (one slab's objects),
// PageAllocator (slab pages, through Quarry's page lock), AllocationBitmap (misuse checks).

import Synchronization

/// A handle on one cache. Copying the handle does not copy the cache.
///
/// Concurrency and interrupt contract: every operation takes the cache's
/// interrupt-saving spinlock (`CacheState.lock`), and the page lock inside it when
/// a slab is created or released. `allocate` and `free` may be called with
/// interrupts disabled, but not from an interrupt handler that interrupted this
/// CPU while it held this cache's lock (it would spin forever); the per-CPU layer
/// lifts that restriction.
public struct SlabCache<P: Platform> {
    let state: UnsafeMutablePointer<CacheState>

    init(state: UnsafeMutablePointer<CacheState>) { self.state = state }

    @inline(__always) var heap: UnsafeMutablePointer<HeapState> { state.pointee.heap }
    @inline(__always) var geometry: SlabGeometry { state.pointee.geometry }

    public var name: CacheName { state.pointee.name }
    /// Bytes between consecutive objects (the size rounded up to the alignment).
    public var objectSize: Int { state.pointee.geometry.objectSize }

    // MARK: Allocate

    /// Hands out one object, `alignment`-aligned, constructed if the cache has a
    /// constructor. Throws `.outOfMemory` when no page is left for a new slab, and
    /// `.corruptFreeList` when a free-list link was overwritten (the damaged list is cut).
    ///
    /// Cost with a partial slab: one lock round trip, one descriptor read, one link
    /// decode, one atomic bit set.
    public func allocate() throws(QuarryError) -> UnsafeMutableRawPointer {
        let saved = state.pointee.lock.acquire(P.self)
        let result = allocateLocked()
        state.pointee.lock.release(P.self, saved)
        switch result {
        case .success(let (object, fresh)):
            // Sound: the address lies in a live slab of this cache and was just marked allocated.
            let pointer = UnsafeMutableRawPointer(bitPattern: object)!
            if fresh, let constructor = state.pointee.constructor { constructor(pointer) }
            return pointer
        case .failure(let error):
            throw error
        }
    }

    private func allocateLocked() -> Result<(UInt, Bool), QuarryError> {
        let map = heap.pointee.map
        var page = state.pointee.partial.head
        if page == .none {
            page = state.pointee.empty.head
            if page != .none {
                state.pointee.empty.remove(page, map)
                state.pointee.partial.push(page, map)
            } else if let fresh = createSlab() {
                page = fresh
            } else {
                state.pointee.counters.failures += 1
                return .failure(.outOfMemory)
            }
        }
        let slab = Slab(page: page, map: map, arena: heap.pointee.arena)
        switch slab.pop(geometry, secret: state.pointee.secret) {
        case .object(let object, let fresh):
            guard heap.pointee.bitmap.markAllocated(object) else {
                // The free list handed out an object that is already allocated: the
                // list was overwritten. Undo the pop's count and cut the list.
                map[page].inUse -= 1
                map[page].freeHead = 0
                state.pointee.counters.count(.corruptFreeList)
                return .failure(.corruptFreeList)
            }
            if Int(map[page].inUse) == geometry.objectsPerSlab {
                state.pointee.partial.remove(page, map)
                state.pointee.full.push(page, map)
            }
            state.pointee.counters.allocations += 1
            state.pointee.counters.active += 1
            if state.pointee.counters.active > state.pointee.counters.highWater {
                state.pointee.counters.highWater = state.pointee.counters.active
            }
            return .success((object, fresh))
        case .corrupt:
            state.pointee.counters.count(.corruptFreeList)
            return .failure(.corruptFreeList)
        case .full:
            preconditionFailure("SlabCache: a full slab on the partial list")
        }
    }

    /// Takes pages for a new slab, gives it the next colour and puts it on the partial list.
    private func createSlab() -> PageNumber? {
        let g = geometry
        let saved = heap.pointee.pageLock.acquire(P.self)
        let page = heap.pointee.pages.allocate(g.slabPages)
        heap.pointee.bumpLimit.store(heap.pointee.pages.bump.raw, ordering: .releasing)
        heap.pointee.pageLock.release(P.self, saved)
        guard let page else { return nil }
        let map = heap.pointee.map
        map[page] = PageDescriptor(
            kind: .slab, color: UInt16(g.color(state.pointee.nextColor)),
            pages: UInt32(g.slabPages), head: page, cache: UInt(bitPattern: state))
        map.markTails(of: page, count: g.slabPages)
        state.pointee.nextColor = (state.pointee.nextColor + 1) % g.colorCount
        state.pointee.counters.slabsCreated += 1
        state.pointee.partial.push(page, map)
        return page
    }

    // MARK: Free

    /// Returns `object` to the cache. `nil` is a no-op. A pointer this cache did not
    /// hand out is refused with the reason, counted in the statistics, and changes
    /// nothing else.
    public func free(_ object: UnsafeMutableRawPointer?) throws(QuarryError) {
        guard let object else { return }
        let address = UInt(bitPattern: object)
        let saved = state.pointee.lock.acquire(P.self)
        let error = freeLocked(address)
        if let error { state.pointee.counters.count(error) }
        state.pointee.lock.release(P.self, saved)
        if let error { throw error }
    }

    /// The slab of this cache whose object starts at `address`, or why there is none.
    @inline(__always)
    func locate(_ address: UInt) -> Result<PageNumber, QuarryError> {
        guard address & UInt(Geometry.granule - 1) == 0 else { return .failure(.misaligned) }
        let h = heap
        let page: PageNumber
        switch h.pointee.arena.classify(address) {
        case .outside: return .failure(.outsideArena)
        case .metadata: return .failure(.metadataPointer)
        case .page(let p): page = p
        }
        let limit = PageNumber(h.pointee.bumpLimit.load(ordering: .acquiring))
        guard let head = h.pointee.map.owner(of: page, limit: limit) else { return .failure(.freePage) }
        let d = h.pointee.map[head]
        guard d.kind == .slab, d.cache == UInt(bitPattern: state) else { return .failure(.wrongCache) }
        let slab = Slab(page: head, map: h.pointee.map, arena: h.pointee.arena)
        guard slab.objectIndex(of: address, geometry) != nil else { return .failure(.interiorPointer) }
        return .success(head)
    }

    private func freeLocked(_ address: UInt) -> QuarryError? {
        let page: PageNumber
        switch locate(address) {
        case .success(let p): page = p
        case .failure(let e): return e
        }
        guard heap.pointee.bitmap.markFree(address) else { return .doubleFree }
        let map = heap.pointee.map
        let wasFull = map[page].list == .full
        Slab(page: page, map: map, arena: heap.pointee.arena).push(address, geometry, secret: state.pointee.secret)
        state.pointee.counters.frees += 1
        state.pointee.counters.active -= 1
        if wasFull {
            state.pointee.full.remove(page, map)
            state.pointee.partial.push(page, map)
        }
        if map[page].inUse == 0 {
            state.pointee.partial.remove(page, map)
            if state.pointee.empty.count < state.pointee.emptySlabReserve {
                state.pointee.empty.push(page, map)
            } else {
                releaseSlab(page)
            }
        }
        return nil
    }

    /// Gives an empty slab's pages back to the page allocator. The slab is on no list.
    private func releaseSlab(_ page: PageNumber) {
        state.pointee.counters.slabsReleased += 1
        let saved = heap.pointee.pageLock.acquire(P.self)
        heap.pointee.pages.free(page, geometry.slabPages)
        heap.pointee.bumpLimit.store(heap.pointee.pages.bump.raw, ordering: .releasing)
        heap.pointee.pageLock.release(P.self, saved)
    }

    // MARK: Shrink and destroy

    /// Releases every empty slab, reserve included. Returns the number of pages given back.
    /// A type-stable cache keeps its slabs (returns 0): only `destroy` releases them.
    @discardableResult
    public func shrink() -> Int {
        if state.pointee.typeStable { return 0 }
        return releaseEmptySlabs()
    }

    /// Releases every empty slab, type-stable or not (`shrink`, and `destroy`).
    func releaseEmptySlabs() -> Int {
        let saved = state.pointee.lock.acquire(P.self)
        let map = heap.pointee.map
        var released = 0
        while state.pointee.empty.head != .none {
            let page = state.pointee.empty.head
            state.pointee.empty.remove(page, map)
            releaseSlab(page)
            released += geometry.slabPages
        }
        state.pointee.lock.release(P.self, saved)
        return released
    }

    /// Number of objects allocated from this cache and not yet freed.
    public var activeObjects: Int { state.pointee.counters.active }

    /// True for a type-stable cache (`createCache(..., typeStable: true)`).
    public var isTypeStable: Bool { state.pointee.typeStable }
}
