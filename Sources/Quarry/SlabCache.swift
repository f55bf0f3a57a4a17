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
// nolock rule in CPUCache.swift. Everything else on a cache (`drainCPU`, `drainDepot`,
// `shrink`, `statistics`, `checkInvariants`, `destroy`) is for thread context only and
// traps if called while the CPU holds a Quarry lock.
//
// Lock order: registry -> depot -> cache -> page (HeapState). The fast path takes none.

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
    /// a re-entrant call, when the object would need a lock this CPU holds), and
    /// `.corruptFreeList` when a free-list link was overwritten (the damaged list is cut).
    ///
    /// Fast path (a hit in this CPU's loaded magazine). Measured (docs/percpu.md):
    /// 17 instructions on x86-64 release, 16 on Embedded i686, from loading the slot's
    /// `loaded` magazine to the bitmap's branch: test `count` and branch, pop (3),
    /// bump the hit counter (one non-locked `inc`), index the bitmap (6), one `lock bts`
    /// and its branch. No call, no lock; the only atomic RMW is the bitmap bit. The
    /// platform adds its mask and CPU index (X86Platform: `pushf; pop; cli`,
    /// `push; popf`, `mov %fs:0`: 6 instructions, 0 for SingleCPUPlatform).
    @inline(__always)
    public func allocate() throws(QuarryError) -> UnsafeMutableRawPointer {
        hook(.allocateEnter)
        let saved = P.disableInterrupts()
        hook(.allocateMasked)
        let slot = cpu(P.cpuIndex)
        let m = slot.pointee.loaded
        let n = m.count
        if n > 0 {
            m.count = n &- 1
            let object = m.rounds[n &- 1]
            slot.counters.pointee.allocHits.bump()
            P.restoreInterrupts(saved)
            return try handOut(object)
        }
        return try allocateSlow(saved)
    }

    /// The last step of every allocation: the object becomes the caller's. One atomic
    /// bit set; it fails only if the object is already allocated (a free list handed
    /// it out twice: memory was overwritten).
    @inline(__always)
    func handOut(_ object: UInt) throws(QuarryError) -> UnsafeMutableRawPointer {
        hook(.allocateHandOut)
        guard state.pointee.bitmap.markAllocated(object) else { throw handOutCorrupt(object) }
        unpoisonHandedOut(object)
        if state.pointee.objectWork { checkOnAllocate(object) }
        // Sound: the address is an object of a live slab of this cache (it came from a
        // magazine, a reserve or a slab of this cache) and is now marked allocated.
        return UnsafeMutableRawPointer(bitPattern: object).unsafelyUnwrapped
    }

    // MARK: Free

    /// Returns `object` to the cache. `nil` is a no-op. A pointer this cache did not
    /// hand out is refused with the reason, counted in the statistics, and changes
    /// nothing else. The checks run before the object can enter a magazine: the
    /// pointer is validated (lock-free, see `locate`), then its allocation bit is
    /// cleared with one atomic RMW, so of two frees of one object (twice on one CPU,
    /// or at once on two CPUs) exactly one succeeds and the other gets `.doubleFree`.
    ///
    /// Throws `.busy` only in a re-entrant call (an interrupt handler that interrupted
    /// this CPU inside Quarry's slow path) when the magazines and the per-CPU reserve
    /// are full: the object stays the caller's, nothing changed.
    ///
    /// Fast path (the loaded magazine has room). Measured (docs/percpu.md), x86-64
    /// release: about 42 instructions of validation (alignment, arena bounds, bump
    /// limit, one acquire load of the descriptor's kind-and-colour word, the owning
    /// cache, a multiply by the reciprocal and its check, the carved bound), 9 for the
    /// bitmap's `lock btr`, then 9 for the magazine (test `count < capacity` and
    /// branch, push, bump the hit counter): no call, no lock. Platform mask and CPU
    /// index as for `allocate`.
    @inline(__always)
    public func free(_ object: UnsafeMutableRawPointer?) throws(QuarryError) {
        guard let object else { return }
        let address = UInt(bitPattern: object)
        hook(.freeEnter)
        if case .failure(let error) = locate(address) { throw refuse(error, address) }
        guard state.pointee.bitmap.markFree(address) else { throw refuse(.doubleFree, address) }
        if state.pointee.objectWork { checkOnFree(address) }
        poisonFreed(address)
        hook(.freeValidated)
        let saved = P.disableInterrupts()
        hook(.freeMasked)
        let slot = cpu(P.cpuIndex)
        let m = slot.pointee.loaded
        let n = m.count
        if n < m.capacity {
            m.rounds[n] = address
            m.count = n &+ 1
            slot.counters.pointee.freeHits.bump()
            P.restoreInterrupts(saved)
            return
        }
        try freeSlow(address, saved)
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
    /// per-CPU counters; exact at quiescence).
    public var activeObjects: Int {
        var allocated: UInt = 0
        var freed: UInt = 0
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
