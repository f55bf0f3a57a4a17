// SlabCache: a kmem_cache of fixed-size objects: the public allocate and free (the
// per-CPU fast path), pointer validation, and the cache's name and size.
// Neighbours: CPUCache and Magazine (what the fast path touches), SlabCache+PerCPU (the
// slow path: depot exchange, refill, flush), SlabCache+Slabs (the slab layer under the
// cache lock), SlabCache+Drain (drain, shrink), CacheState (its state), AllocationBitmap.
//
// ## Concurrency and interrupt contract
//
// `allocate` and `free` may be called from any CPU, with interrupts enabled or
// disabled, and from interrupt handlers (also handlers that interrupted `allocate` or
// `free` on the same CPU). They never wait for a lock their own CPU holds: see the
// in-use marker and nested path in CPUCache.swift. Everything else on a cache (`drainCPU`, `drainDepot`,
// `shrink`, `statistics`, `checkInvariants`, `destroy`) is for thread context only and
// traps if called while the CPU holds a Quarry lock.
//
// Lock order: registry -> depot -> cache -> page (HeapState). The hit paths take none and
// mask nothing: each CPU's slot has an in-use marker (CPUCache.swift) that sends a call
// which interrupted the slot's owner to the nested path.

import Synchronization

/// A handle on one cache. Copying the handle does not copy the cache.
public struct SlabCache<P: Platform> {
    let state: UnsafeMutablePointer<CacheState>

    init(state: UnsafeMutablePointer<CacheState>) { self.state = state }

    @inline(__always) var heap: UnsafeMutablePointer<HeapState> { state.pointee.heap }
    @inline(__always) var geometry: SlabGeometry { state.pointee.geometry }

    public var name: CacheName { state.pointee.name }
    /// Bytes between consecutive objects (the size rounded up to the alignment).
    public var objectSize: Int { state.pointee.geometry.objectSize }
    /// Rounds per magazine (0 when this cache has no per-CPU layer).
    public var magazineCapacity: Int { state.pointee.magazineCapacity }

    /// This CPU's slot in the cache's per-CPU array.
    @inline(__always)
    func cpu(_ index: Int) -> UnsafeMutablePointer<CPUCache> {
        assert(index >= 0 && index < P.maxCPUs, "Quarry: CPU index out of range")
        return CacheState.cpu(index, of: state)
    }

    /// The slab layer (under the cache lock) and the depot (under the depot lock).
    @inline(__always) var slabs: UnsafeMutablePointer<SlabLayer> { CacheState.slabLayer(of: state) }
    @inline(__always) var depot: UnsafeMutablePointer<Depot> { CacheState.depot(of: state) }

    @inline(__always)
    func hook(_ point: HookPoint) { heap.pointee.hook(point) }

    // MARK: Allocate

    /// Hands out one object, `alignment`-aligned, constructed if the cache has a
    /// constructor. Throws `.outOfMemory` when no page is left for a new slab (or, in
    /// a nested call, when the object would need a lock this CPU holds), and
    /// `.corruptFreeList` when a free-list link was overwritten (the damaged list is cut).
    @inline(__always)
    public func allocate() throws(QuarryError) -> UnsafeMutableRawPointer {
        if let object = allocateHit() { return object }
        return try allocateSlow()
    }

    /// The hit path: pops this CPU's loaded magazine, or returns nil (magazine empty,
    /// or the slot claimed by code this call interrupted) for `allocateSlow`.
    ///
    /// Cost (docs/benchmarks.md, `make budgets`): about 20 instructions, no call, no
    /// locked instruction, no interrupt masking: the CPU index (one `mov` from the
    /// per-CPU segment on x86), claim the slot (load, test, store), load `loaded` and
    /// its count, test and branch, pop (load the round, store the count), bump the hit
    /// counter (load, add, store: one writer), give the slot up (store), clear the
    /// object's cached mark (store). A handler that lands anywhere inside finds the
    /// slot claimed and takes the nested path, which never touches the slot.
    @inline(__always)
    func allocateHit() -> UnsafeMutableRawPointer? {
        hook(.allocateEnter)
        let slot = cpu(P.cpuIndex)
        guard slot.claim() else { return nil }
        hook(.allocateClaimed)
        let m = slot.pointee.loaded
        let n = m.count
        guard n > 0 else {
            slot.unclaim()
            return nil
        }
        let object = m.rounds[n &- 1]
        m.count = n &- 1
        slot.counters.pointee.allocHits.bump()
        slot.unclaim()
        handOut(object)
        // Sound: an object of a live slab of this cache that was in this CPU's magazine.
        return UnsafeMutableRawPointer(bitPattern: object).unsafelyUnwrapped
    }

    /// The last step of every allocation: the object becomes the caller's. Clears its
    /// cached mark (so the caller's own free is not taken for a double free), then the
    /// debug options' work.
    @inline(__always)
    func handOut(_ object: UInt) {
        hook(.allocateHandOut)
        FreeLink.setWord(0, of: object, offset: geometry.linkOffset)
        unpoisonHandedOut(object)
        if state.pointee.objectWork { checkOnAllocate(object) }
    }

    // MARK: Free

    /// Returns `object` to the cache. `nil` is a no-op. A pointer this cache did not
    /// hand out is refused with the reason, counted in the statistics, and changes
    /// nothing else: outside the arena, metadata, a free page, another cache's object,
    /// an interior or misaligned pointer, and a double free (the object is already in
    /// its slab, or already in the per-CPU layer: its cached mark is set). Two frees
    /// of one object that race on two CPUs at the same instant may both pass (both
    /// read the object as allocated before either marks it); the refill and flush
    /// paths then find the duplicate under the cache lock (docs/design.md, Safety).
    ///
    /// Throws `.busy` only in a nested call (a handler that interrupted this CPU inside
    /// Quarry) that cannot take the cache lock: the object stays the caller's.
    @inline(__always)
    public func free(_ object: UnsafeMutableRawPointer?) throws(QuarryError) {
        guard let object else { return }
        let address = UInt(bitPattern: object)
        hook(.freeEnter)
        if case .failure(let error) = locate(address) { throw refuse(error, address) }
        try freeLocated(address)
    }

    /// `free` of an address already validated as an object boundary of this cache
    /// (`locate`, or the malloc front's door). The double-free checks, the debug
    /// options, then the hit path or `freeSlow`.
    ///
    /// Cost of the hit path after validation: about 16 instructions, no call, no
    /// locked instruction, no masking: load the object's bitmap word and test its bit
    /// (clear: already in its slab), load its link word and compare with the cached
    /// mark (equal: already cached), claim the slot, test `count < capacity`, store
    /// the mark, push, bump the hit counter, give the slot up.
    @inline(__always)
    func freeLocated(_ address: UInt) throws(QuarryError) {
        guard isUserHeld(address) else { throw refuse(.doubleFree, address) }
        if state.pointee.objectWork { checkOnFree(address) }
        poisonFreed(address)
        hook(.freeValidated)
        let slot = cpu(P.cpuIndex)
        if slot.claim() {
            hook(.freeClaimed)
            let m = slot.pointee.loaded
            let n = m.count
            if n < m.capacity {
                FreeLink.setWord(FreeLink.mark(of: address, secret: state.pointee.secret),
                                 of: address, offset: geometry.linkOffset)
                m.rounds[n] = address
                m.count = n &+ 1
                slot.counters.pointee.freeHits.bump()
                slot.unclaim()
                return
            }
            slot.unclaim()
        }
        try freeSlow(address)
    }

    /// True when the object at `address` (an object boundary of this cache) is held by
    /// a user: out of its slab and without the cached mark. The free hit path's test.
    @inline(__always)
    func isUserHeld(_ address: UInt) -> Bool {
        state.pointee.bitmap.isAllocated(address)
            && FreeLink.word(of: address, offset: geometry.linkOffset)
                != FreeLink.mark(of: address, secret: state.pointee.secret)
    }

    /// Counts a refused free and calls the error hook; returns the error to throw.
    @inline(never)
    func refuse(_ error: QuarryError, _ address: UInt) -> QuarryError {
        report(error, address)
        return error
    }

    /// Counts a detected misuse or corruption in this cache and calls the heap's error
    /// hook (if set). Never allocates; any context.
    @inline(never)
    func report(_ error: QuarryError, _ address: UInt) {
        state.pointee.atomics.count(error)
        heap.pointee.callErrorHook(error, state, address)
    }

    /// The slab of this cache whose object starts at `address`, or why there is none.
    /// Lock-free: reads the bump limit and the shared words of page descriptors with
    /// atomic loads (PageMap), never a word another CPU writes non-atomically; each
    /// descriptor's kind-and-colour word is loaded once. Exact at quiescence; while
    /// another CPU releases or reuses the page the answer may be stale, and the bitmap
    /// RMW that follows decides.
    @inline(__always)
    func locate(_ address: UInt) -> Result<PageNumber, QuarryError> {
        guard address & UInt(Geometry.granule - 1) == 0 else { return .failure(.misaligned) }
        let h = heap
        let dataOffset = address &- h.pointee.arena.dataStart
        guard dataOffset < h.pointee.arena.dataBytes else {
            return .failure(h.pointee.arena.isMetadata(address) ? .metadataPointer : .outsideArena)
        }
        let page = PageNumber(UInt32(truncatingIfNeeded: dataOffset >> UInt(Geometry.pageShift)))
        guard page.raw < h.pointee.bumpLimit.load(ordering: .acquiring) else { return .failure(.freePage) }
        var d = h.pointee.map[page]
        var shape = d.shape
        var head = page
        // Objects of a one-page slab, and the first page of a bigger one: its own head.
        var first = (address & ~UInt(Geometry.pageSize - 1)) &+ PageEntry.color(of: shape)
        if PageEntry.kind(of: shape) != .slab {
            switch locateHead(page) {
            case .failure(let error): return .failure(error)
            case .success(let h): head = h
            }
            d = h.pointee.map[head]
            shape = d.shape
            first = h.pointee.arena.address(of: head) &+ PageEntry.color(of: shape)
        }
        guard d.cache == UInt(bitPattern: state) else { return .failure(.wrongCache) }
        guard geometry.objectIndex(offset: address &- first, carved: d.carved) != nil else {
            return .failure(.interiorPointer)
        }
        return .success(head)
    }

    /// `locate` for a page that is not a slab head: the slab head a tail page belongs
    /// to, or why there is none.
    @inline(never)
    func locateHead(_ page: PageNumber) -> Result<PageNumber, QuarryError> {
        let map = heap.pointee.map
        switch map[page].kind {
        case .tail:
            let head = map[page].head
            guard head < page else { return .failure(.freePage) }
            let kind = map[head].kind
            guard kind == .slab || kind == .span, page.raw &- head.raw < map[head].pages else {
                return .failure(.freePage)
            }
            return kind == .slab ? .success(head) : .failure(.wrongCache)
        case .span:
            return .failure(.wrongCache)
        case .free, .slab:
            return .failure(.freePage)
        }
    }

    /// True for a type-stable cache (`createCache(..., typeStable: true)`).
    public var isTypeStable: Bool { state.pointee.typeStable }

    /// Number of objects allocated from this cache and not yet freed (sum of the
    /// per-CPU and nested-path counters; exact at quiescence).
    public var activeObjects: Int {
        var allocated = state.pointee.atomics.nestedAllocations.load(ordering: .relaxed)
            &+ state.pointee.atomics.droppedDuplicates.load(ordering: .relaxed)
        var freed = state.pointee.atomics.nestedFrees.load(ordering: .relaxed)
        var i = 0
        while i < P.maxCPUs {
            let slot = CacheState.cpu(i, of: state)
            allocated &+= slot.counters.pointee.allocHits.value &+ slot.counters.pointee.allocMisses.value
            freed &+= slot.counters.pointee.freeHits.value &+ slot.counters.pointee.freeMisses.value
            i += 1
        }
        return Int(bitPattern: allocated &- freed)
    }
}
