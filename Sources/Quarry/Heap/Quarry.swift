// Quarry: the allocator instance over one arena: start-up, the cache registry, lookups.
// Neighbours: HeapState (its state and header layout), SlabCache (the caches it creates),
// Arena (layout), SlabCache+Drain (drainAll), Quarry+Statistics (snapshots and slabinfo),
// Quarry+Invariants (whole-heap checks).

import Synchronization

/// A handle on one Quarry instance. All of its state lives at the start of the arena,
/// so the handle is one pointer and may be copied freely (a kernel keeps it in a global).
public struct Quarry<P: Platform> {
    let heap: UnsafeMutablePointer<HeapState>

    init(heap: UnsafeMutablePointer<HeapState>) { self.heap = heap }

    /// Takes over `[base, base + size)` (the caller keeps it alive and untouched).
    /// O(maxCPUs): writes only the header at the region's start; no page is touched
    /// until it is first used. Throws `.arenaTooSmall` when the region cannot hold the
    /// header, the metadata and one page. A `tuning` that breaks its relations (see
    /// Tuning) traps. `mallocOptions` are the options of every malloc class cache
    /// (poison, zeroing, randomized slots); a red zone or type stability, which a class
    /// cannot have (its stride is its size; its memory is not typed), is `.badOptions`.
    public static func initialize(
        base: UnsafeMutableRawPointer, size: Int, tuning: Tuning = .standard,
        mallocOptions: CacheOptions = CacheOptions()
    ) throws(QuarryError) -> Quarry {
        precondition(tuning.isValid, "Quarry: tuning out of range")
        precondition(P.maxCPUs >= 1, "Quarry: a platform needs at least one CPU")
        guard mallocOptions.redZone == 0 && !mallocOptions.typeStable else { throw .badOptions }
        let layout = HeaderLayout(maxCPUs: P.maxCPUs)
        guard size > 0,
            let arena = Arena(
                base: UInt(bitPattern: base), size: UInt(size), headerBytes: layout.bytes)
        else { throw .arenaTooSmall }
        // Sound: Arena reserved `layout.bytes` at regionStart for the header (HeapState,
        // per-CPU records, sentinel, the two internal caches), page-aligned, and nothing
        // else uses them.
        let heap = UnsafeMutableRawPointer(bitPattern: arena.regionStart)!
            .bindMemory(to: HeapState.self, capacity: 1)
        heap.initialize(
            to: HeapState(
                arena: arena, tuning: tuning, maxCPUs: P.maxCPUs, layout: layout,
                mallocOptions: mallocOptions))
        let stateBytes = CacheState.footprint(maxCPUs: P.maxCPUs)
        let magazineBytes = Magazine.bytes(capacity: max(tuning.magazineSize, 1))
        let caches: SlabGeometry
        let magazines: SlabGeometry
        do {
            // Aligned for C handles (CacheState, "C handles").
            caches = try SlabGeometry.make(size: stateBytes, alignment: CacheState.handleAlignment, tuning: tuning)
            magazines = try SlabGeometry.make(size: magazineBytes, alignment: Geometry.cacheLine, tuning: tuning)
        } catch {
            preconditionFailure("Quarry: an internal cache has no valid geometry")
        }
        let base = UnsafeMutableRawPointer(heap)
        let sentinel = heap.pointee.sentinel
        _ = CacheState.initialize(
            base + layout.cacheOfCaches, maxCPUs: P.maxCPUs, sentinel: sentinel,
            CacheState(
                at: base + layout.cacheOfCaches, name: CacheName("quarry_cache"), size: stateBytes, geometry: caches,
                constructor: nil,
                secret: P.entropy(), heap: heap, magazineCapacity: 0, isInternal: true))
        _ = CacheState.initialize(
            base + layout.magazineCache, maxCPUs: P.maxCPUs, sentinel: sentinel,
            CacheState(
                at: base + layout.magazineCache, name: CacheName("quarry_magazine"), size: magazineBytes,
                geometry: magazines,
                constructor: nil, secret: P.entropy(), heap: heap, magazineCapacity: 0, isInternal: true))
        let quarry = Quarry(heap: heap)
        quarry.register(heap.pointee.cacheOfCaches)
        quarry.register(heap.pointee.magazineCache)
        return quarry
    }

    /// The cache whose objects hold every other cache's state.
    var cacheOfCaches: SlabCache<P> { SlabCache(state: heap.pointee.cacheOfCaches) }
    /// The cache whose objects are magazines.
    var magazineCache: SlabCache<P> { SlabCache(state: heap.pointee.magazineCache) }

    // MARK: Caches

    /// Creates a cache of objects of `size` bytes aligned to `alignment` (a power of two,
    /// at most the page size; objects are at least 8-byte aligned). `constructor`, if
    /// given, runs once on each object when its slab first hands it out (under the
    /// cache lock, interrupts masked). Not interrupt-safe.
    ///
    /// `typeStable` (Linux's `SLAB_TYPESAFE_BY_RCU`): the cache's slabs never go back
    /// to the page allocator until `destroy`, and freeing writes nothing into the
    /// caller's bytes, so a pointer to one of its objects always points at an object of
    /// this cache, possibly freed and handed out again at once. See docs/design.md ("Deferred freeing").
    public func createCache(
        name: StaticString, size: Int, alignment: Int = Geometry.granule,
        constructor: ObjectConstructor? = nil, typeStable: Bool = false
    ) throws(QuarryError) -> SlabCache<P> {
        try createCache(
            name: CacheName(name), size: size, alignment: alignment, constructor: constructor,
            options: CacheOptions(typeStable: typeStable))
    }

    /// `createCache` with a name built at run time (``CacheName``, e.g. written through
    /// ``ByteSink``) instead of a string literal.
    public func createCache(
        name: CacheName, size: Int, alignment: Int = Geometry.granule,
        constructor: ObjectConstructor? = nil, typeStable: Bool = false
    ) throws(QuarryError) -> SlabCache<P> {
        try createCache(
            name: name, size: size, alignment: alignment, constructor: constructor,
            options: CacheOptions(typeStable: typeStable))
    }

    /// `createCache` with hardening and debugging options (CacheOptions, docs/design.md ("Safety")).
    public func createCache(
        name: StaticString, size: Int, alignment: Int = Geometry.granule,
        constructor: ObjectConstructor? = nil, options: CacheOptions
    ) throws(QuarryError) -> SlabCache<P> {
        try createCache(
            name: CacheName(name), size: size, alignment: alignment, constructor: constructor,
            options: options)
    }

    /// `createCache` with a run-time ``CacheName`` and ``CacheOptions``: the one the
    /// others call. Not interrupt-safe. Throws `.zeroSize`, `.sizeTooLarge`,
    /// `.badAlignment`, or `.outOfMemory` (after a reclaim) when no page is left for
    /// the cache's state.
    public func createCache(
        name: CacheName, size: Int, alignment: Int = Geometry.granule,
        constructor: ObjectConstructor? = nil, options: CacheOptions
    ) throws(QuarryError) -> SlabCache<P> {
        heap.pointee.requireNotReentrant(P.self)
        // The next generation (CacheState, "C handles"): the next cache made in a
        // destroyed one's memory has another, until it wraps.
        let generation =
            heap.pointee.cacheGenerations.wrappingAdd(1, ordering: .relaxed).newValue
            % UInt32(CacheState.generations)
        let cache: SlabCache<P>
        do {
            cache = try createCacheUnchecked(
                name: name, size: size, alignment: alignment, constructor: constructor,
                options: options, generation: generation)
        } catch {
            guard error == .outOfMemory, reclaimBeforeFailing() else { throw error }
            cache = try createCacheUnchecked(
                name: name, size: size, alignment: alignment, constructor: constructor,
                options: options, generation: generation)
        }
        assert(
            UInt(bitPattern: cache.state) % UInt(CacheState.handleAlignment) == 0,
            "Quarry: a cache state off its alignment")
        CacheState.handleEntry(CacheState.handle(of: cache.state)).pointee.store(
            CacheState.userHandleMagic, ordering: .releasing)
        return cache
    }

    /// Sets (or, with nil, removes) the hook called on every misuse or corruption any
    /// cache of this heap detects (see ErrorHook). Any context; takes effect at once.
    public func setErrorHook(_ hook: ErrorHook?) {
        // Sound: a C function pointer is one word; nil is 0.
        heap.pointee.errorHook.store(hook.map { unsafeBitCast($0, to: UInt.self) } ?? 0, ordering: .releasing)
    }

    /// `createCache` for Quarry's own callers that hold a lock earlier in the lock order
    /// (the malloc front's lock).
    func createCacheUnchecked(
        name: CacheName, size: Int, alignment: Int, constructor: ObjectConstructor?,
        options: CacheOptions = CacheOptions(), generation: UInt32 = 0
    ) throws(QuarryError) -> SlabCache<P> {
        let tuning = heap.pointee.tuning
        let geometry = try SlabGeometry.make(
            size: size, alignment: alignment, tuning: tuning,
            linkOutside: options.typeStable || constructor != nil, redZone: options.redZone,
            randomized: options.randomizeFreeSlots)
        let memory = try cacheOfCaches.allocateForQuarry()
        // Sound: an object of the cache of caches is `CacheState.footprint(maxCPUs:)`
        // bytes, `CacheState.handleAlignment`-aligned: room for a CacheState and its parts.
        let state = CacheState.initialize(
            memory, maxCPUs: P.maxCPUs, sentinel: heap.pointee.sentinel,
            CacheState(
                at: memory, name: name, size: size, geometry: geometry, constructor: constructor,
                secret: P.entropy(), heap: heap,
                magazineCapacity: tuning.magazineCapacity(
                    objectSize: geometry.objectSize,
                    budget: heap.pointee.reclaim.budget),
                isInternal: false, options: options, generation: generation))
        register(state)
        return SlabCache(state: state)
    }

    /// Destroys `cache` if it has no allocated objects: every CPU's magazines and the
    /// depot are emptied, its slabs go back to the page allocator (type-stable ones
    /// too: no reader may still hold a pointer into the cache, e.g. after
    /// `EpochReclaimer.synchronize()`) and the handle becomes invalid. Otherwise nothing changes, the leak is printed through the
    /// platform, and the number of leaked objects is returned. Requires quiescence for
    /// this cache (no CPU inside it; see SlabCache+Drain). Not interrupt-safe.
    @discardableResult
    public func destroy(_ cache: SlabCache<P>) -> Int {
        heap.pointee.requireNotReentrant(P.self)
        precondition(!front.isClassCache(cache.state), "Quarry: a malloc class cache is destroyed only by front.shrink")
        return destroyUnchecked(cache)
    }

    /// `destroy` for Quarry's own callers (the malloc front's shrink, under its lock).
    func destroyUnchecked(_ cache: SlabCache<P>) -> Int {
        let state = cache.state
        precondition(!state.pointee.isInternal, "Quarry: an internal cache cannot be destroyed")
        precondition(
            state.pointee.magic.load(ordering: .relaxed) == CacheState.liveMagic,
            "Quarry: destroy of a destroyed cache")
        let leaked = cache.activeObjects
        if leaked > 0 {
            var out = PlatformOutput<P>()
            out.write("quarry: cache '")
            out.write(state.pointee.name)
            out.write("' not destroyed: ")
            out.write(leaked)
            out.write(" objects still allocated\n")
            return leaked
        }
        // Out of the registry first: a reclaim running on another CPU (Quarry+Reclaim)
        // finishes its walk before `unregister` gets the registry lock, and no later
        // one finds the cache.
        unregister(state)
        cache.drainAllSlots()
        cache.releaseAllSlabs()
        precondition(
            state.pointee.lock.withLock(P.self) { slabs in slabs.slabCount } == 0,
            "Quarry: a destroyed cache still holds slabs")
        state.pointee.magic.store(0, ordering: .relaxed)
        state.pointee.handleMagic.store(0, ordering: .relaxed)
        CacheState.handleEntry(CacheState.handle(of: state)).pointee.store(0, ordering: .relaxed)
        // No `deinitialize`: the state and its parts are plain words and atomics, and
        // running Atomic's deinit through an InlineArray crashes the Embedded compiler
        // (Swift 6.3.1, "hasValidSignatureForEmbedded"). The memory goes back as is.
        cacheOfCaches.freeForQuarry(UInt(bitPattern: state))
        return 0
    }

    /// Gives back everything that can be taken without waiting for another CPU (the
    /// reclaim, Quarry+Reclaim): this CPU's magazines and reserves in every cache (the
    /// slots it can claim), every depot, every empty slab of every cache (reserves and
    /// internal caches included; type-stable caches keep theirs), and a flush request
    /// that every other CPU honours on its next slow path. Callable at any time on any
    /// CPU from thread context (or a maskable interrupt handler), while other CPUs
    /// allocate and free; traps if the CPU holds a Quarry lock. Returns the pages in use
    /// before minus after (what this call gave back, if no other CPU took pages meanwhile).
    @discardableResult
    public func shrink() -> Int {
        heap.pointee.requireNotReentrant(P.self)
        let before = pageStatistics.pagesInUse
        reclaim(cpu: P.cpuIndex, claimed: nil)
        return max(before - pageStatistics.pagesInUse, 0)
    }

    /// At quiescence (no CPU inside Quarry; see SlabCache+Drain): empties every CPU's
    /// magazines and every depot into the slabs, frees the magazines, and releases every
    /// empty slab of every cache. Afterwards the heap holds only pages with allocated
    /// objects (and the slabs of the cache of caches that hold live caches' states).
    /// Returns the number of pages given back. Not interrupt-safe.
    @discardableResult
    public func drainAll() -> Int {
        heap.pointee.requireNotReentrant(P.self)
        forEachCache { cache in cache.drainAllSlots() }
        var released = 0
        forEachCache { cache in released += cache.shrinkUnchecked() }
        return released
    }

    /// The cache that owns the object at `pointer`, or nil if no live slab holds it.
    /// O(1): one page-map lookup (`PageMap.lookup`, of the granule `pointer` is in: any
    /// byte of a slab names its cache).
    public func cache(owning pointer: UnsafeRawPointer) -> SlabCache<P>? {
        let address = UInt(bitPattern: pointer) & ~UInt(Geometry.granule - 1)
        guard case .success(.slab(let head)) = PageMap.lookup(address, in: heap),
            let state = UnsafeMutablePointer<CacheState>(bitPattern: head.entry.cache)
        else { return nil }
        return SlabCache(state: state)
    }

    /// Calls `body` with every live cache, the two internal caches (`quarry_cache`,
    /// `quarry_magazine`) first, under the registry lock.
    public func forEachCache(_ body: (SlabCache<P>) -> Void) {
        heap.pointee.registry.withLock(P.self) { registry in
            registry.forEach { state in body(SlabCache(state: state)) }
        }
    }

    /// Number of live caches, the two internal caches included.
    public var cacheCount: Int {
        heap.pointee.registry.withLock(P.self) { registry in registry.count }
    }

    private func register(_ state: UnsafeMutablePointer<CacheState>) {
        heap.pointee.registry.withLock(P.self) { registry in registry.append(state) }
    }

    private func unregister(_ state: UnsafeMutablePointer<CacheState>) {
        heap.pointee.registry.withLock(P.self) { registry in registry.remove(state) }
    }
}

extension SlabCache {
    /// Destroys this cache (see `Quarry.destroy`); returns the number of leaked objects.
    @discardableResult
    public func destroy() -> Int { Quarry<P>(heap: heap).destroy(self) }
}
