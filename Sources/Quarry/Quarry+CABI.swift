// Quarry+CABI: the two conversions the C ABI needs between a cache and the opaque
// `quarry_cache *` it hands to C, behind `@_spi(CABI)` (shared/STYLE.md rule 14).
// Neighbours: Sources/QuarryC/CABI.swift (the only user), SlabCache, MallocFront.

import Synchronization

extension SlabCache {
    /// The address of the cache's state, given to C as an opaque `quarry_cache *`.
    @_spi(CABI) public var handle: UnsafeMutableRawPointer { UnsafeMutableRawPointer(state) }
}

extension Quarry {
    /// The cache named by a handle from C, or `.invalidCache` when the handle is not a
    /// live cache's: it must be an allocated object of the cache of caches (checked
    /// through the page map and the allocation bitmap, O(1), before it is read), with
    /// a live magic, and not one of the malloc front's class caches.
    @_spi(CABI) public func cache(handle: UnsafeRawPointer?) throws(QuarryError) -> SlabCache<P> {
        guard let handle else { throw .invalidCache }
        let address = UInt(bitPattern: handle)
        guard case .success = cacheOfCaches.locate(address), heap.pointee.bitmap.isAllocated(address) else {
            throw .invalidCache
        }
        // Sound: an allocated object of the cache of caches holds an initialised CacheState.
        let state = UnsafeMutablePointer<CacheState>(mutating: handle.assumingMemoryBound(to: CacheState.self))
        guard state.pointee.magic.load(ordering: .relaxed) == CacheState.liveMagic, !front.isClassCache(state) else {
            throw .invalidCache
        }
        return SlabCache(state: state)
    }
}
