// Quarry: the allocator instance over one arena: start-up, the cache registry, lookups.
// Neighbours: HeapState (its state), SlabCache (the caches it creates), Arena (layout),
// Quarry+Statistics (snapshots and slabinfo), Quarry+Invariants (whole-heap checks).

import Synchronization

/// A handle on one Quarry instance. All of its state lives at the start of the arena,
/// so the handle is one pointer and may be copied freely (a kernel keeps it in a global).
public struct Quarry<P: Platform> {
    let heap: UnsafeMutablePointer<HeapState>

    init(heap: UnsafeMutablePointer<HeapState>) { self.heap = heap }

    /// Takes over `[base, base + size)` (the caller keeps it alive and untouched).
    /// O(1): writes only the header at the region's start; no page is touched until
    /// it is first used. Throws `.arenaTooSmall` when the region cannot hold the
    /// header, the metadata and one page.
    public static func initialize(
        base: UnsafeMutableRawPointer, size: Int, tuning: Tuning = .standard
    ) throws(QuarryError) -> Quarry {
        guard size > 0, let arena = Arena(
            base: UInt(bitPattern: base), size: UInt(size), headerBytes: HeapState.headerBytes)
        else { throw .arenaTooSmall }
        // Sound: Arena reserved `headerBytes` at regionStart for HeapState and the cache
        // of caches, page-aligned, and nothing else uses them.
        let heap = UnsafeMutableRawPointer(bitPattern: arena.regionStart)!
            .bindMemory(to: HeapState.self, capacity: 1)
        heap.initialize(to: HeapState(arena: arena, tuning: tuning))
        let geometry: SlabGeometry
        do {
            geometry = try SlabGeometry.make(
                size: MemoryLayout<CacheState>.stride, alignment: MemoryLayout<CacheState>.alignment,
                tuning: tuning)
        } catch {
            preconditionFailure("Quarry: the cache of caches has no valid geometry")
        }
        let caches = cacheOfCachesState(heap)
        caches.initialize(to: CacheState(
            name: CacheName("quarry_cache"), size: MemoryLayout<CacheState>.stride,
            geometry: geometry, constructor: nil, secret: P.entropy(), heap: heap))
        let quarry = Quarry(heap: heap)
        quarry.register(caches)
        return quarry
    }

    static func cacheOfCachesState(_ heap: UnsafeMutablePointer<HeapState>) -> UnsafeMutablePointer<CacheState> {
        // Sound: headerBytes reserved a CacheState at this offset after HeapState.
        (UnsafeMutableRawPointer(heap) + HeapState.cacheOfCachesOffset)
            .assumingMemoryBound(to: CacheState.self)
    }

    /// The cache whose objects hold every other cache's state.
    var cacheOfCaches: SlabCache<P> { SlabCache(state: Self.cacheOfCachesState(heap)) }

    // MARK: Caches

    /// Creates a cache of objects of `size` bytes aligned to `alignment` (a power of two,
    /// at most the page size; objects are at least 8-byte aligned). `constructor`, if
    /// given, runs once on each object when its slab first hands it out.
    ///
    /// `typeStable` (Linux's `SLAB_TYPESAFE_BY_RCU`): the cache's slabs never go back
    /// to the page allocator until `destroy`, and freeing writes nothing into the
    /// caller's bytes, so a pointer to one of its objects always points at an object of
    /// this cache, possibly freed and handed out again at once. See docs/epochs.md.
    public func createCache(
        name: StaticString, size: Int, alignment: Int = Geometry.granule,
        constructor: ObjectConstructor? = nil, typeStable: Bool = false
    ) throws(QuarryError) -> SlabCache<P> {
        try createCache(name: CacheName(name), size: size, alignment: alignment, constructor: constructor,
                        typeStable: typeStable)
    }

    public func createCache(
        name: CacheName, size: Int, alignment: Int = Geometry.granule,
        constructor: ObjectConstructor? = nil, typeStable: Bool = false
    ) throws(QuarryError) -> SlabCache<P> {
        let geometry = try SlabGeometry.make(
            size: size, alignment: alignment, tuning: heap.pointee.tuning, linkOutside: typeStable)
        let memory = try cacheOfCaches.allocate()
        // Sound: an object of the cache of caches is sized and aligned for a CacheState.
        let state = memory.bindMemory(to: CacheState.self, capacity: 1)
        state.initialize(to: CacheState(
            name: name, size: size, geometry: geometry, constructor: constructor,
            secret: P.entropy(), heap: heap, typeStable: typeStable))
        register(state)
        return SlabCache(state: state)
    }

    /// Destroys `cache` if it has no allocated objects: its slabs go back to the page
    /// allocator (type-stable ones too: no reader may still hold a pointer into the
    /// cache, e.g. after `EpochReclaimer.synchronize()`) and the handle becomes invalid.
    /// Otherwise nothing changes, the leak is printed through the platform, and the
    /// number of leaked objects is returned.
    @discardableResult
    public func destroy(_ cache: SlabCache<P>) -> Int {
        let state = cache.state
        precondition(state != Self.cacheOfCachesState(heap), "Quarry: the cache of caches cannot be destroyed")
        precondition(state.pointee.magic == CacheState.liveMagic, "Quarry: destroy of a destroyed cache")
        precondition(!front.isClassCache(state), "Quarry: a malloc class cache is destroyed only by front.shrink")
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
        _ = cache.releaseEmptySlabs()
        unregister(state)
        state.pointee.magic = 0
        state.deinitialize(count: 1)
        do {
            try cacheOfCaches.free(UnsafeMutableRawPointer(state))
        } catch {
            preconditionFailure("Quarry: a cache's state was not an object of the cache of caches")
        }
        return 0
    }

    /// The cache that owns the object at `pointer`, or nil if no live slab holds it.
    /// O(1): one page-map lookup.
    public func cache(owning pointer: UnsafeRawPointer) -> SlabCache<P>? {
        let address = UInt(bitPattern: pointer)
        guard case .page(let page) = heap.pointee.arena.classify(address) else { return nil }
        let limit = PageNumber(heap.pointee.bumpLimit.load(ordering: .acquiring))
        guard let head = heap.pointee.map.owner(of: page, limit: limit) else { return nil }
        let d = heap.pointee.map[head]
        guard d.kind == .slab, let state = UnsafeMutablePointer<CacheState>(bitPattern: d.cache) else { return nil }
        return SlabCache(state: state)
    }

    /// Calls `body` with every live cache, the cache of caches first.
    public func forEachCache(_ body: (SlabCache<P>) -> Void) {
        let saved = heap.pointee.registryLock.acquire(P.self)
        var c = heap.pointee.firstCache
        while let state = c {
            body(SlabCache(state: state))
            c = state.pointee.nextCache
        }
        heap.pointee.registryLock.release(P.self, saved)
    }

    /// Releases every empty slab of every cache (reserves included), the cache of
    /// caches too. Returns the number of pages given back.
    @discardableResult
    public func shrink() -> Int {
        var pages = 0
        forEachCache { pages += $0.shrink() }
        return pages
    }

    /// Number of live caches, the cache of caches included.
    public var cacheCount: Int { heap.pointee.cacheCount }

    private func register(_ state: UnsafeMutablePointer<CacheState>) {
        let saved = heap.pointee.registryLock.acquire(P.self)
        state.pointee.previousCache = heap.pointee.lastCache
        state.pointee.nextCache = nil
        if let last = heap.pointee.lastCache { last.pointee.nextCache = state } else { heap.pointee.firstCache = state }
        heap.pointee.lastCache = state
        heap.pointee.cacheCount += 1
        heap.pointee.registryLock.release(P.self, saved)
    }

    private func unregister(_ state: UnsafeMutablePointer<CacheState>) {
        let saved = heap.pointee.registryLock.acquire(P.self)
        let previous = state.pointee.previousCache
        let next = state.pointee.nextCache
        if let previous { previous.pointee.nextCache = next } else { heap.pointee.firstCache = next }
        if let next { next.pointee.previousCache = previous } else { heap.pointee.lastCache = previous }
        heap.pointee.cacheCount -= 1
        heap.pointee.registryLock.release(P.self, saved)
    }
}

extension SlabCache {
    /// Destroys this cache (see `Quarry.destroy`); returns the number of leaked objects.
    @discardableResult
    public func destroy() -> Int { Quarry<P>(heap: heap).destroy(self) }
}
