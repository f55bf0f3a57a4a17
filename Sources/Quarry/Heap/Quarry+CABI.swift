// Quarry+CABI: the two conversions the C ABI needs between a cache and the opaque
// `quarry_cache *` it hands to C, behind `@_spi(CABI)` rather than in the public API.
// Neighbours: Sources/QuarryC/CABI.swift (the only user), SlabCache, MallocFront.

import Synchronization

extension SlabCache {
    /// The cache's C handle, an opaque `quarry_cache *`: the address of its state plus
    /// 4 * its generation (CacheState, "C handles"), which the error hook also receives.
    @_spi(CABI) public var handle: UnsafeMutableRawPointer { CacheState.handle(of: state) }
}

extension Quarry {
    /// The cache named by a handle from C, or nil when the handle is not a live user
    /// cache's. O(1) and cheap in release builds: below `handleAlignment` (NULL) it is
    /// refused, then one load of the handle's own entry in its state's handle table
    /// (CacheState, "C handles"), which holds `userHandleMagic` only while a cache of
    /// the public `createCache` (not a malloc class cache) lives there with the handle's
    /// generation, so a destroyed cache's handle is refused even when a new cache lives
    /// in the same memory, unless a multiple of `generations` caches were created in
    /// between (the generation wraps). A handle that is not a pointer into readable
    /// memory is the caller's fault, as with any C handle. Checked builds first validate
    /// the state in full: an allocated object of the cache of caches (page map and
    /// bitmap, before it is read), and the handle's alignment.
    @_spi(CABI) @inline(__always)
    public func cache(handle: UnsafeRawPointer?) -> SlabCache<P>? {
        guard let handle, UInt(bitPattern: handle) >= UInt(CacheState.handleAlignment) else { return nil }
        #if QUARRY_CHECKED
        let address = UInt(bitPattern: CacheState.state(ofHandle: handle))
        guard UInt(bitPattern: handle) % 4 == 0, case .success = cacheOfCaches.locate(address),
            cacheOfCaches.bitmap.isAllocated(address)
        else {
            return nil
        }
        #endif
        return SlabCache(magicHandle: handle)
    }
}

extension SlabCache {
    /// The cache of a C handle by its handle-table entry alone (one compare, one load
    /// and compare; see `Quarry.cache(handle:)`), for the hit paths of the C ABI in
    /// release builds. nil sends the caller to its out-of-line path, which checks in
    /// full and reports.
    @_spi(CABI) @inline(__always)
    public init?(magicHandle handle: UnsafeRawPointer?) {
        guard let handle, UInt(bitPattern: handle) >= UInt(CacheState.handleAlignment),
            CacheState.handleEntry(handle).pointee.load(ordering: .acquiring) == CacheState.userHandleMagic
        else { return nil }
        self.init(state: CacheState.state(ofHandle: handle))
    }

    /// The hit path of `allocate`, for the C ABI: the object, or `miss()` (the caller's
    /// out-of-line `allocate()`, which serves the call or says why), called instead of
    /// returning nil, so the hit needs no test of its result.
    @_spi(CABI) @inline(__always)
    public func allocateIfHit(orElse miss: () -> UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        allocateHit(orElse: miss)
    }

    /// The hit path of `free`, for the C ABI: true when the object went into this
    /// CPU's magazine; false when the caller must call `free` (out of line).
    @_spi(CABI) @inline(__always)
    public func freeIfHit(_ object: UnsafeMutableRawPointer) -> Bool { freeHit(UInt(bitPattern: object)) }
}

extension MallocFront {
    /// The hit path of `malloc`, for the C ABI: a block of a class cache that exists,
    /// served by its hit path, or `miss()` (the caller's out-of-line `malloc`, called
    /// instead of returning nil, so the hit needs no test of its result).
    @_spi(CABI) @inline(__always)
    public func mallocIfHit(_ size: Int, orElse miss: () -> UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
        guard UInt(bitPattern: size) <= UInt(SizeClasses.largest) else { return miss() }
        let address = heap.pointee.front.classes[SizeClasses.index(forSize: size)].load(ordering: .acquiring)
        // Sound: a non-zero slot names a live CacheState (see FrontState).
        guard let state = UnsafeMutablePointer<CacheState>(bitPattern: address) else { return miss() }
        return SlabCache<P>(state: state).allocateHit(orElse: miss)
    }
}

extension MallocFront {
    /// The hit path of `free`, for the C ABI: true when the block went into this CPU's
    /// magazine; false when the caller must call `free` (out of line).
    @_spi(CABI) @inline(__always)
    public func freeIfHit(_ pointer: UnsafeMutableRawPointer) -> Bool { freeHit(UInt(bitPattern: pointer)) }
}
