// HeapState: the root record of one Quarry instance, at the start of its arena.
// Neighbours: Quarry (the handle), Arena (layout), PageAllocator (under `pageLock`),
// CacheState (the cache of caches sits right after this record).

import Synchronization

/// Locks, in the only order they may be taken: the malloc front's lock
/// (`front.lock`), then `registryLock`, then one cache lock, then `pageLock`. Each
/// saves and restores the interrupt state.
///
/// - `pageLock` guards `pages` and `spans`.
/// - `front` is the malloc front's state; its own comment says what guards what.
/// - `registryLock` guards the cache registry (`firstCache`, `lastCache`, `cacheCount`
///   and every cache's `nextCache`/`previousCache`).
/// - `bumpLimit` mirrors `pages.bump` for lock-free readers (pointer validation):
///   written under `pageLock`, read with a relaxed atomic load.
///
/// Invariants: `bumpLimit == pages.bump` whenever `pageLock` is free;
/// `cacheCount ==` number of caches reachable from `firstCache`.
///
/// Field order: the registry comes first because ThreadSanitizer reports every
/// mutation through `pointee` as a write of the record's first byte; that byte must
/// not be a lock or `bumpLimit` (updated atomically by other CPUs) or a field read
/// without a lock (`arena`, `tuning`, `pages.map`).
struct HeapState: ~Copyable {
    var firstCache: UnsafeMutablePointer<CacheState>? = nil
    var lastCache: UnsafeMutablePointer<CacheState>? = nil
    var cacheCount = 0
    let pageLock = SpinLock()
    let registryLock = SpinLock()
    let bumpLimit = Atomic<UInt32>(0)
    let arena: Arena
    var pages: PageAllocator
    let tuning: Tuning
    var spans = SpanCounters()
    var front = FrontState()

    init(arena: Arena, tuning: Tuning) {
        self.arena = arena
        self.tuning = tuning
        pages = PageAllocator(map: PageMap(arena: arena), bitmap: AllocationBitmap(arena: arena))
    }

    /// Bytes the header needs before the page descriptors: this record and the cache of caches.
    static var headerBytes: Int { cacheOfCachesOffset + MemoryLayout<CacheState>.stride }
    static var cacheOfCachesOffset: Int {
        (MemoryLayout<HeapState>.stride + Geometry.cacheLine - 1) & ~(Geometry.cacheLine - 1)
    }

    var map: PageMap { pages.map }
    var bitmap: AllocationBitmap { pages.bitmap }
}
