// Quarry+CABI: the two conversions the C ABI needs between a cache and the opaque
// `quarry_cache *` it hands to C, behind `@_spi(CABI)` (shared/STYLE.md rule 14).
// Neighbours: Sources/QuarryC/CABI.swift (the only user), SlabCache, MallocFront.

import Synchronization

extension SlabCache {
    /// The cache's C handle, an opaque `quarry_cache *`: the address of its state plus
    /// its generation (CacheState.handleMagic), which the error hook also receives.
    @_spi(CABI) public var handle: UnsafeMutableRawPointer { CacheState.handle(of: state) }
}

extension Quarry {
    /// The cache named by a handle from C, or nil when the handle is not a live user
    /// cache's. O(1) and cheap in release builds: the handle splits into the state's
    /// address and a generation (its low bits, below the state's cache-line alignment),
    /// then one load of the state's handle magic word (`CacheState.handleMagic`), which
    /// only a cache made by the public `createCache` carries (not the malloc front's
    /// class caches), with its generation, and `destroy` clears. So a destroyed cache's
    /// handle is refused even when a new cache lives at the same address, unless a
    /// multiple of `generationMask + 1` caches were created in between (the generation
    /// wraps). A handle that is not a pointer into readable memory is the caller's
    /// fault, as with any C handle. Checked builds first validate the address in full:
    /// an allocated object of the cache of caches (page map and bitmap, before it is read).
    @_spi(CABI) @inline(__always)
    public func cache(handle: UnsafeRawPointer?) -> SlabCache<P>? {
        let (state, generation) = CacheState.split(handle: handle)
        guard let state else { return nil }
        #if QUARRY_CHECKED
        let address = UInt(bitPattern: state)
        guard case .success = cacheOfCaches.locate(address), heap.pointee.bitmap.isAllocated(address) else {
            return nil
        }
        #endif
        guard CacheState.isLive(state, generation: generation) else { return nil }
        return SlabCache(state: state)
    }
}

extension CacheState {
    /// A C handle taken apart: the state's address (nil for NULL, or a handle below the
    /// first cache line) and the generation in its low bits.
    @inline(__always)
    static func split(handle: UnsafeRawPointer?) -> (state: UnsafeMutablePointer<CacheState>?, generation: UInt32) {
        let bits = UInt(bitPattern: handle)
        return (UnsafeMutablePointer(bitPattern: bits & ~UInt(generationMask)),
                UInt32(truncatingIfNeeded: bits) & generationMask)
    }

    /// True when `state` is a live user cache of `generation`: one load, one compare.
    @inline(__always)
    static func isLive(_ state: UnsafeMutablePointer<CacheState>, generation: UInt32) -> Bool {
        // Sound: the caller's handle came from `quarry_cache_create` (the C contract);
        // the magic word tells a live user cache of this generation from anything else there.
        state.pointee.handleMagic.load(ordering: .acquiring) == userHandleMagic | generation
    }
}

extension SlabCache {
    /// The cache of a C handle by its magic word and generation alone (one load, one
    /// compare; see `Quarry.cache(handle:)`), for the hit paths of the C ABI in release
    /// builds. nil sends the caller to its out-of-line path, which checks in full and reports.
    @_spi(CABI) @inline(__always)
    public init?(magicHandle handle: UnsafeRawPointer?) {
        let (state, generation) = CacheState.split(handle: handle)
        guard let state, CacheState.isLive(state, generation: generation) else { return nil }
        self.init(state: state)
    }

    /// The hit path of `allocate`, for the C ABI: the object, or nil when the caller
    /// must call `allocate()` (out of line) to be served or told why.
    @_spi(CABI) @inline(__always)
    public func allocateIfHit() -> UnsafeMutableRawPointer? { allocateHit() }

    /// The hit path of `free`, for the C ABI: true when the object went into this
    /// CPU's magazine; false when the caller must call `free` (out of line).
    @_spi(CABI) @inline(__always)
    public func freeIfHit(_ object: UnsafeMutableRawPointer) -> Bool { freeHit(UInt(bitPattern: object)) }
}

extension MallocFront {
    /// The hit path of `malloc`, for the C ABI: a block of a class cache that exists,
    /// served by its hit path, or nil when the caller must call `malloc` (out of line).
    @_spi(CABI) @inline(__always)
    public func mallocIfHit(_ size: Int) -> UnsafeMutableRawPointer? {
        guard UInt(bitPattern: size) <= UInt(SizeClasses.largest) else { return nil }
        let address = heap.pointee.front.classes[SizeClasses.index(forSize: size)].load(ordering: .acquiring)
        // Sound: a non-zero slot names a live CacheState (see FrontState).
        guard let state = UnsafeMutablePointer<CacheState>(bitPattern: address) else { return nil }
        return SlabCache<P>(state: state).allocateHit()
    }
}

extension MallocFront {
    /// The hit path of `free`, for the C ABI: true when the block went into this CPU's
    /// magazine; false when the caller must call `free` (out of line).
    @_spi(CABI) @inline(__always)
    public func freeIfHit(_ pointer: UnsafeMutableRawPointer) -> Bool { freeHit(UInt(bitPattern: pointer)) }
}
