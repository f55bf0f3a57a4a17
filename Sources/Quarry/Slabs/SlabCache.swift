// SlabCache: a kmem_cache of fixed-size objects: the public allocate and free (the
// per-CPU fast path), pointer validation, and the cache's name and size.
// Neighbours: CPUCache and Magazine (what the fast path touches), SlabCache+PerCPU (the
// slow path: depot exchange, refill, flush), SlabLayer (the slab layer under the
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
// Lock order: front -> registry -> depot -> cache -> page (HeapState). The hit paths take none and
// mask nothing: each CPU's slot has an in-use marker (CPUCache.swift) that sends a call
// which interrupted the slot's owner to the nested path.

import Synchronization

/// A handle on one cache. Copying the handle does not copy the cache.
public struct SlabCache<P: Platform> {
    let state: UnsafeMutablePointer<CacheState>

    init(state: UnsafeMutablePointer<CacheState>) { self.state = state }

    @inline(__always) var heap: UnsafeMutablePointer<HeapState> { state.pointee.heap }
    @inline(__always) var geometry: SlabGeometry { state.pointee.geometry }
    @inline(__always) var map: PageMap { heap.pointee.map }
    @inline(__always) var arena: Arena { heap.pointee.arena }
    @inline(__always) var bitmap: AllocationBitmap { state.pointee.bitmap }
    @inline(__always) var secret: UInt { state.pointee.secret }

    /// The name given to `createCache` (at most 31 bytes), as slabinfo prints it.
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

    @inline(__always)
    func hook(_ point: HookPoint) { heap.pointee.hook(point) }

    // MARK: Allocate

    /// Hands out one object, `alignment`-aligned, constructed if the cache has a
    /// constructor. Throws `.outOfMemory` when no page is left for a new slab (or, in
    /// a nested call, when the object would need a lock this CPU holds), and
    /// `.corruptFreeList` when a free-list link was overwritten (once: the damaged slab is quarantined).
    @inline(__always)
    public func allocate() throws(QuarryError) -> UnsafeMutableRawPointer {
        if let object = allocateHit() { return object }
        return try allocateSlow()
    }

    /// The hit path: pops this CPU's loaded magazine, or returns nil for `allocateSlow`
    /// (magazine empty, the slot claimed by code this call interrupted, or a cache
    /// with debug options, whose per-object work is done out of line).
    ///
    /// Cost (`make budgets`, docs/benchmarks.md): no call, no locked instruction, no
    /// interrupt masking: the options flag (load, test), the CPU index (one `mov` from
    /// the per-CPU segment on x86), claim the slot (load, test, store), load `loaded`
    /// and its count, test and branch, pop (load the round, store the count), bump the
    /// hit counter (one writer: no lock prefix), give the slot up (store), clear the
    /// object's cached mark (store). A handler that lands anywhere inside finds the slot
    /// claimed and takes the nested path, which never touches the slot.
    @inline(__always)
    func allocateHit() -> UnsafeMutableRawPointer? { allocateHit(orElse: { nil }) }

    /// `allocateHit`, calling `miss` where it would return nil: a caller that goes on
    /// to the slow path then needs no test of the result (the hit returns the object
    /// straight through).
    @inline(__always)
    func allocateHit(orElse miss: () -> UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        hook(.allocateEnter)
        guard !state.pointee.objectWork else { return miss() }
        let slot = cpu(P.cpuIndex)
        guard slot.claim() else { return miss() }
        hook(.allocateClaimed)
        let m = slot.pointee.loaded
        let n = m.count
        guard n > 0 else {
            slot.unclaim()
            return miss()
        }
        let object = m.rounds[n &- 1]
        m.count = n &- 1
        slot.counters.pointee.allocHits.bump()
        slot.unclaim()
        hook(.allocateHandOut)
        FreeLink.setWord(0, of: object, offset: geometry.linkOffset)
        unpoisonHandedOut(object)
        // Sound: an object of a live slab of this cache that was in this CPU's magazine.
        return UnsafeMutableRawPointer(bitPattern: object).unsafelyUnwrapped
    }

    /// The last step of an allocation on the slow path: the object becomes the
    /// caller's. Clears its cached mark (so the caller's own free is not taken for a
    /// double free), then the debug options' work.
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
        if freeHit(address) { return }
        try freeChecked(address)
    }

    /// The hit path of free: true when the object went into this CPU's loaded
    /// magazine. False for anything else, which `freeChecked` then decides and reports:
    /// a failed check, an object on a tail page of a multi-page slab, a cache with
    /// debug options, a full magazine, a claimed slot.
    ///
    /// Cost: no call, no locked instruction, no masking. The door (`PageMap.slabHead`:
    /// alignment, arena bounds, bump limit, the descriptor's kind), the owner (one
    /// compare), the object boundary (a multiply by the reciprocal, a compare, the
    /// carved bound), then `freeLocatedHit`.
    @inline(__always)
    func freeHit(_ address: UInt) -> Bool {
        hook(.freeEnter)
        guard let head = PageMap.slabHead(of: address, in: heap),
            head.entry.cache == UInt(bitPattern: state),
            geometry.objectIndex(offset: address &- head.first, carved: head.entry.carved) != nil
        else { return false }
        return freeLocatedHit(address)
    }

    /// The hit path after validation: the object's state (its bit set: not in its
    /// slab; its link word not the cached mark: not in the per-CPU layer), then claim
    /// the slot, write the cached mark, push, bump the hit counter, give the slot up.
    /// False (nothing changed) when any of that cannot be done here. One byte
    /// (`freeHitMode`) says both "no object work" and where the bit is, so the common
    /// case (out of band) costs one test, as the object-work flag alone did.
    @inline(__always)
    func freeLocatedHit(_ address: UInt) -> Bool {
        if _fastPath(state.pointee.freeHitMode == CacheState.freeHitOutOfBand) {
            return freeLocatedHit(address, inSlab: false)
        }
        return state.pointee.freeHitMode == CacheState.freeHitInSlab && freeLocatedHit(address, inSlab: true)
    }

    @inline(__always)
    func freeLocatedHit(_ address: UInt, inSlab: Bool) -> Bool {
        let mark = FreeLink.mark(of: address, secret: secret)
        let offset = geometry.linkOffset
        guard bitmap.isAllocated(address, inSlab: inSlab),
            FreeLink.word(of: address, offset: offset) != mark
        else { return false }
        poisonFreed(address)
        hook(.freeValidated)
        return push(address, mark: mark, offset: offset)
    }

    /// Claims the slot and pushes the freed object, with its cached mark, onto the
    /// loaded magazine; false (nothing changed) when the slot is claimed or the
    /// magazine full.
    @inline(__always)
    func push(_ address: UInt, mark: UInt, offset: Int) -> Bool {
        let slot = cpu(P.cpuIndex)
        guard slot.claim() else { return false }
        hook(.freeClaimed)
        let m = slot.pointee.loaded
        let n = m.count
        guard n < m.capacity else {
            slot.unclaim()
            return false
        }
        FreeLink.setWord(mark, of: address, offset: offset)
        m.rounds[n] = address
        m.count = n &+ 1
        slot.counters.pointee.freeHits.bump()
        slot.unclaim()
        return true
    }

    /// `free` when the hit path did not take the object: the door (`PageMap.lookup`)
    /// and `locate`'s checks with their reason, then `freeLocated`.
    @inline(never)
    func freeChecked(_ address: UInt) throws(QuarryError) {
        switch PageMap.lookup(address, in: heap) {
        case .success(let owner): try freeChecked(address, in: owner)
        case .failure(let error): throw refuse(error, address)
        }
    }

    /// `freeChecked` for an address whose owner the door already named (the malloc
    /// front's checked path hands it on).
    @inline(__always)
    func freeChecked(_ address: UInt, in owner: PageOwner) throws(QuarryError) {
        if case .failure(let error) = locate(address, in: owner) { throw refuse(error, address) }
        try freeLocated(address)
    }

    /// The checked path of free for an address validated as an object boundary of
    /// this cache (`locate`, or the malloc front's door): the state checks with their
    /// report, the debug options' work, then the magazine or `freeSlow`.
    @inline(never)
    func freeLocated(_ address: UInt) throws(QuarryError) {
        guard isUserHeld(address) else { throw refuse(.doubleFree, address) }
        try freeHeld(address)
    }

    /// `freeLocated` after its double-free checks, for an object known to be held by
    /// its caller (checked, or proved by a `CacheObject`): the debug options' work,
    /// then the hit path or `freeSlow`. Throws only `.busy` (see `free`).
    @inline(__always)
    func freeHeld(_ address: UInt) throws(QuarryError) {
        if state.pointee.objectWork { checkOnFree(address) }
        poisonFreed(address)
        hook(.freeValidated)
        if push(
            address, mark: FreeLink.mark(of: address, secret: secret),
            offset: geometry.linkOffset)
        {
            return
        }
        try freeSlow(address)
    }

    /// True when the object at `address` (an object boundary of this cache) is held by
    /// a user: out of its slab and without the cached mark. The free hit path's test.
    @inline(__always)
    func isUserHeld(_ address: UInt) -> Bool {
        bitmap.isAllocated(address)
            && FreeLink.word(of: address, offset: geometry.linkOffset)
                != FreeLink.mark(of: address, secret: secret)
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

    /// The slab of this cache whose object starts at `address`, or why there is none:
    /// the door's reasons (`PageMap.lookup`), then `locate(_:in:)`'s. Lock-free (see
    /// `PageMap.lookup`): exact at quiescence; while another CPU releases or reuses the
    /// page the answer may be stale, and the bitmap RMW that follows decides.
    @inline(__always)
    func locate(_ address: UInt) -> Result<PageNumber, QuarryError> {
        switch PageMap.lookup(address, in: heap) {
        case .success(let owner): return locate(address, in: owner)
        case .failure(let error): return .failure(error)
        }
    }

    /// `locate` for an address whose owner the door already named: `.wrongCache` for a
    /// span or another cache's slab, `.interiorPointer` for anything but the start of
    /// a carved object of the slab; else the slab's head page.
    @inline(__always)
    func locate(_ address: UInt, in owner: PageOwner) -> Result<PageNumber, QuarryError> {
        guard case .slab(let head) = owner, head.entry.cache == UInt(bitPattern: state) else {
            return .failure(.wrongCache)
        }
        guard geometry.objectIndex(offset: address &- head.first, carved: head.entry.carved) != nil else {
            return .failure(.interiorPointer)
        }
        return .success(head.page)
    }

    /// True for a type-stable cache (`createCache(..., typeStable: true)`).
    public var isTypeStable: Bool { state.pointee.typeStable }

    /// Number of objects allocated from this cache and not yet freed (sum of the
    /// per-CPU and nested-path counters; exact at quiescence).
    public var activeObjects: Int {
        var allocated =
            state.pointee.atomics.nestedAllocations.load(ordering: .relaxed)
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
