// CacheState: the out-of-band record of one slab cache and its per-CPU array, kept in
// allocator-owned memory.
// Neighbours: SlabCache (the handle that operates on it), HeapState (which embeds the
// internal caches and links every cache into a registry), CPUCache (the per-CPU slots),
// Depot, CacheStatistics (its snapshot).

import Synchronization

/// A constructor runs once on each object when its slab carves it (Bonwick's
/// constructed state): objects must be freed in their constructed state, and Quarry
/// keeps it: a cache with a constructor keeps the free link and the cached mark past
/// the caller's bytes (`geometry.linkOffset`, one more granule per object), as SLUB does. It runs
/// during a refill, under the cache lock with interrupts masked: keep it short; a
/// constructor that calls Quarry gets the re-entrant (`.tryOnly`) behaviour.
public typealias ObjectConstructor = @convention(c) (UnsafeMutableRawPointer) -> Void

/// A fixed-size copy of a cache's name (at most 31 bytes), printable without allocation.
public struct CacheName: Sendable {
    var bytes = InlineArray<32, UInt8>(repeating: 0)
    var count = 0

    /// Copies at most 31 bytes of `name`.
    public init(_ name: StaticString) {
        self.init(utf8: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
    }

    /// Copies at most 31 bytes of `utf8`.
    public init(utf8: UnsafeBufferPointer<UInt8>) {
        var i = 0
        while i < utf8.count && i < 31 {
            bytes[i] = utf8[i]
            i += 1
        }
        count = i
    }

    /// Calls `body` with each byte of the name.
    public func forEachByte(_ body: (UInt8) -> Void) {
        var i = 0
        while i < count {
            body(bytes[i])
            i += 1
        }
    }

    /// True when this name has exactly the bytes of `name` (no allocation, no Unicode tables).
    public func equals(_ name: StaticString) -> Bool {
        name.withUTF8Buffer { other in
            guard other.count == count else { return false }
            var i = 0
            while i < count {
                if other[i] != bytes[i] { return false }
                i += 1
            }
            return true
        }
    }
}

/// Appending to a name (e.g. `malloc-` then a size) truncates at 31 bytes.
extension CacheName: ByteSink {
    /// Appends `byte`, unless the name already has 31 bytes.
    public mutating func write(_ byte: UInt8) {
        guard count < 31 else { return }
        bytes[count] = byte
        count += 1
    }
}

/// Event counters of the slab layer of one cache. Updated under the cache lock.
/// (Allocations and frees as users see them are per-CPU counters: see CPUCache.)
struct CacheCounters {
    /// Objects taken from slabs (by refills, or one at a time without magazines).
    var slabAllocations: UInt64 = 0
    /// Objects given back to slabs (by flushes and drains, or one at a time).
    var slabFrees: UInt64 = 0
    var slabsCreated: UInt64 = 0
    var slabsReleased: UInt64 = 0
    /// Magazines filled from slabs, and magazines (or reserves) emptied into slabs.
    var refills: UInt64 = 0
    var flushes: UInt64 = 0
    /// Objects out of slabs: `Σ slab.inUse` (handed to users, or held by the per-CPU layer).
    var inUse = 0
    var highWater = 0
    /// Slabs taken out of service because their free list was found corrupt (ever),
    /// and the objects they hold that can never be handed out again: `Σ (carved -
    /// inUse)` over the quarantined slabs (their free objects when quarantined, and
    /// every object freed into them since). See SlabLayer, `quarantine`.
    var slabsQuarantined: UInt64 = 0
    var leakedObjects = 0
}

/// Counters any context may bump without a lock (one locked RMW each: they count
/// rare events, never the fast path).
struct CacheAtomics: ~Copyable {
    /// Allocations refused (`.outOfMemory`, `.corruptFreeList`).
    let failures = Atomic<UInt>(0)
    /// Calls that found their CPU holding a Quarry lock and could not be served
    /// without it (allocate: `.outOfMemory`; free: `.busy`), plus frees parked in a reserve.
    let nolockRefusals = Atomic<UInt>(0)
    let nolockParked = Atomic<UInt>(0)
    /// Allocations and frees served by the nested path (a call that found its CPU's
    /// slot claimed: an interrupt or NMI handler that landed inside Quarry on the same
    /// CPU, or a constructor): straight from and to the slabs, never the slot.
    let nestedAllocations = Atomic<UInt>(0)
    let nestedFrees = Atomic<UInt>(0)
    /// Second copies of an object found in the per-CPU layer when it went back to its
    /// slab (two frees raced past the hit path's checks): dropped, and counted as
    /// allocations so that `active` stays exact.
    let droppedDuplicates = Atomic<UInt>(0)
    /// Refused frees and detected corruption, by kind (`QuarryError.tableIndex`).
    let errors: ErrorTable<Atomic<UInt>> = InlineArray { _ in Atomic<UInt>(0) }
    /// Set by a `.tryOnly` slow path that left the depot with more empty magazines than
    /// `depotEmptyLimit` (it may not free them); cleared by the next trim.
    let trimNeeded = Atomic<Bool>(false)

    init() {}

    func count(_ error: QuarryError) {
        if let i = error.tableIndex { errors[i].wrappingAdd(1, ordering: .relaxed) }
    }

    func errorCount(_ error: QuarryError) -> UInt64 {
        guard let i = error.tableIndex else { return 0 }
        return UInt64(word: errors[i].load(ordering: .relaxed))
    }

    var errorCounts: ErrorTable<UInt64> {
        var a = ErrorTable<UInt64>(repeating: 0)
        for i in 0..<QuarryError.countedKinds { a[i] = UInt64(word: errors[i].load(ordering: .relaxed)) }
        return a
    }

    var totalErrors: UInt64 {
        var sum: UInt64 = 0
        for i in 0..<QuarryError.countedKinds { sum += UInt64(word: errors[i].load(ordering: .relaxed)) }
        return sum
    }
}

/// State of one cache. Lives in an object of the cache of caches (or in the heap
/// header for the two internal caches), so its address is stable for its whole life.
/// The object holds, each part on its own cache lines and reached through its own
/// pointer (so that an access to one part is never a Swift access to another):
///
///     | CacheState | SlabLayer | Depot | CacheLinks | CPU slot x maxCPUs |
///
/// - `CacheState`: constants set at creation (`name`, `requestedSize`, `geometry`,
///   `constructor`, `secret`, `heap`, `bitmap`, `magazineCapacity`, `isInternal`), the
///   two locks (`lock`, the cache lock, holds the slab layer; `depot` the depot), and
///   lock-free atomics (`magic`, `atomics`). Read by anyone, no lock.
/// - `SlabLayer`: behind the cache lock (`lock`, a SpinLocked): reached only inside
///   `lock.withLock` / `tryWithLock`, with the locked words of this cache's slab
///   descriptors.
/// - `Depot`: behind the depot lock (`depot`, a SpinLocked): reached only inside
///   `depot.withLock` / `tryWithLock`.
/// - `CacheLinks`: under the heap's registry lock.
/// - CPU slots: see CPUCache.
///
/// Lock order: the depot lock, then the cache lock, then the heap's page lock (HeapState).
///
/// Slab states and transitions (a slab is on exactly one list):
///
///     state       | inUse                | list        | enters when
///     ------------+----------------------+-------------+----------------------------------------
///     empty       | 0                    | empty       | its last object is freed, reserve not full
///     partial     | 0 < inUse < capacity | partial     | created and first object taken; a full slab frees one
///     full        | capacity             | full        | its last free object is taken
///     released    | -                    | none        | freed to empty while the reserve is full
///     quarantined | 0 <= inUse <= carved | quarantined | a take from it finds its free list corrupt
///
/// A quarantined slab is never allocated from again: its free objects are leaked on
/// purpose (counted in `counters.leakedObjects`), its objects that are out may still
/// be freed (counted, never reused), and it stays with the cache, whatever its `inUse`,
/// until `destroy` (so a stale writer that corrupted it cannot damage reused memory).
///
/// ("Taken" and "freed" are moves between a slab and the layer above it: a refill
/// takes a magazine's worth under one lock acquisition, a flush gives one back.)
///
/// Invariants (checked by `SlabCache.checkInvariants` at quiescence):
/// - `counters.inUse == Σ slab.inUse` over all four lists
/// - `counters.leakedObjects == Σ (carved - inUse)` over the quarantined slabs
/// - `counters.inUse == active + cached`, where `active` = Σ per-CPU (allocHits +
///   allocMisses - freeHits - freeMisses) + nestedAllocations + droppedDuplicates -
///   nestedFrees, and `cached` = objects in every CPU's magazines and reserve plus the
///   depot's full magazines
/// - bits set in the allocation bitmap over the cache's slabs == `counters.inUse`
/// - `total slabs == counters.slabsCreated - counters.slabsReleased`
/// - `empty.count <= emptySlabReserve` after every free (unless a trim is due)
///
/// Type-stable caches (`typeStable`, Linux's `SLAB_TYPESAFE_BY_RCU`): a slab never goes
/// back to the page allocator while the cache lives (its empty slabs stay on `empty`,
/// `shrink` and `drainAll` keep them), and the free link lives past the caller's bytes
/// (`geometry.linkOffset`; magazines write nothing into objects), so memory that once
/// held an object of this cache holds one for as long as the cache exists. Only
/// `destroy` releases the slabs.
struct CacheState: ~Copyable {
    /// The cache lock, which holds the slab layer.
    let lock: SpinLocked<SlabLayer>
    /// The depot and its lock (the depot lock).
    let depot: SpinLocked<Depot>
    /// `CacheState.liveMagic` while the cache exists; cleared by destroy.
    let magic = Atomic<UInt32>(CacheState.liveMagic)
    /// `CacheState.classMagic` for a malloc front's class cache (the front's free checks
    /// it in one load and compare), 0 for the others; cleared by destroy. A cache from the
    /// public `createCache` is named by its C handle and its entry in the handle table.
    let handleMagic = Atomic<UInt32>(0)
    /// The C handle's generation, `0 ..< generations` (0 for caches no handle names).
    let generation: UInt32
    let name: CacheName
    let requestedSize: Int
    let geometry: SlabGeometry
    let constructor: ObjectConstructor?
    let secret: UInt
    let heap: UnsafeMutablePointer<HeapState>
    /// The heap's allocation bitmap in this cache's layout (out of band, or in the
    /// slab for small objects), here so the fast path reaches it in one load.
    let bitmap: AllocationBitmap
    /// Rounds per magazine; 0 for a cache without the per-CPU layer (the internal
    /// caches, and every cache when `Tuning.magazineSize == 0`).
    let magazineCapacity: Int
    /// The cache of caches and the magazine cache: never destroyed.
    let isInternal: Bool
    /// Slabs stay with the cache until destroy (see above).
    let typeStable: Bool
    /// The options in force (conflicts dropped, see CacheOptions.effective).
    let options: CacheOptions
    /// `options.needsObjectWork`: the one flag the fast path tests.
    let objectWork: Bool
    /// The one byte the free hit path tests: `freeHitOutOfBand` or `freeHitInSlab` (where
    /// the cache's allocation bits are, AllocationBitmap) for a cache without object
    /// work; `freeHitNone` (the checked path) with it.
    let freeHitMode: UInt8
    static let freeHitOutOfBand: UInt8 = 0
    static let freeHitInSlab: UInt8 = 1
    static let freeHitNone: UInt8 = 2
    /// Empty slabs kept before a free releases one: `tuning.emptySlabReserve`, or
    /// `Int.max` for a type-stable cache (one comparison on the flush path for both).
    let emptySlabReserve: Int
    let atomics = CacheAtomics()

    static let liveMagic: UInt32 = 0x5141_5259  // "QARY"
    static let userHandleMagic: UInt32 = 0x4843_4151  // "QACH"
    static let classMagic: UInt32 = 0x4C43_4151  // "QACL"

    // MARK: C handles and their generations
    //
    // A cache's C handle (`quarry_cache *`) is its state's address plus 4 * generation.
    // States are `handleAlignment`-aligned (objects of the cache of caches), so the
    // handle's low bits carry the generation, and the handle table, one word per
    // generation at `handlesOffset`, lets the check read *through the handle itself*:
    // `handle + handlesOffset` is entry g of its state's table for a handle of
    // generation g, which holds `userHandleMagic` while the cache lives with that
    // generation and 0 otherwise. One load and compare, no masking first, so the hit
    // paths keep one register for the cache, as with a plain address. Consecutive
    // caches get consecutive generations (a heap-wide counter), so the next cache made in
    // a destroyed one's memory has another, until the generation wraps after
    // `generations` creations.

    /// The alignment of a state named by a C handle.
    static let handleAlignment = 256
    /// Handle generations: one 4-byte table entry each.
    static let generations = handleAlignment / 4

    /// The C handle of the cache at `state` (its address for a cache no handle names).
    @inline(__always)
    static func handle(of state: UnsafeMutablePointer<CacheState>) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(state) + 4 * Int(state.pointee.generation)
    }

    /// The state a C handle names (the handle without its generation bits).
    @inline(__always)
    static func state(ofHandle handle: UnsafeRawPointer) -> UnsafeMutablePointer<CacheState> {
        // Sound: callers pass a handle of at least `handleAlignment`, so the result is not null.
        UnsafeMutablePointer(bitPattern: UInt(bitPattern: handle) & ~UInt(handleAlignment - 1)).unsafelyUnwrapped
    }

    /// The handle-table entry a C handle reads: entry g of its state's table.
    @inline(__always)
    static func handleEntry(_ handle: UnsafeRawPointer) -> UnsafeMutablePointer<Atomic<UInt32>> {
        // Sound: for a handle from `createCache` (state + 4g, g < generations), this is
        // entry g of the table `initialize` bound at `handlesOffset`.
        UnsafeMutableRawPointer(mutating: handle + handlesOffset).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// The state of a cache whose memory (`footprint` bytes) starts at `memory`; give it
    /// to `initialize` with the same `memory`.
    init(
        at memory: UnsafeMutableRawPointer, name: CacheName, size: Int, geometry: SlabGeometry,
        constructor: ObjectConstructor?, secret: UInt, heap: UnsafeMutablePointer<HeapState>,
        magazineCapacity: Int, isInternal: Bool, options: CacheOptions = CacheOptions(), generation: UInt32 = 0
    ) {
        // Sound: `initialize` binds and initialises the slab layer and the depot at these
        // offsets of `memory` before the state is used.
        lock = SpinLocked((memory + Self.slabLayerOffset).assumingMemoryBound(to: SlabLayer.self), heap: heap)
        depot = SpinLocked((memory + Self.depotOffset).assumingMemoryBound(to: Depot.self), heap: heap)
        self.generation = generation
        self.name = name
        requestedSize = size
        self.geometry = geometry
        self.constructor = constructor
        self.secret = secret
        self.heap = heap
        self.bitmap = AllocationBitmap(heap.pointee.bitmap, for: geometry)
        self.magazineCapacity = magazineCapacity
        self.isInternal = isInternal
        let options = options.effective(hasConstructor: constructor != nil)
        self.typeStable = options.typeStable
        self.options = options
        objectWork = options.needsObjectWork
        freeHitMode =
            objectWork
            ? CacheState.freeHitNone
            : geometry.bitmapInSlab ? CacheState.freeHitInSlab : CacheState.freeHitOutOfBand
        emptySlabReserve = options.typeStable ? Int.max : max(heap.pointee.tuning.emptySlabReserve, 0)
    }

    @inline(__always)
    private static func line(_ n: Int) -> Int { (n + Geometry.cacheLine - 1) & ~(Geometry.cacheLine - 1) }

    static var slabLayerOffset: Int { line(MemoryLayout<CacheState>.stride) }
    static var depotOffset: Int { slabLayerOffset + line(MemoryLayout<SlabLayer>.stride) }
    static var linksOffset: Int { depotOffset + line(MemoryLayout<Depot>.stride) }
    /// Offset of the handle table (`generations` words; see "C handles" above).
    static var handlesOffset: Int { linksOffset + line(MemoryLayout<CacheLinks>.stride) }
    /// Offset of the per-CPU array from the start of the state.
    static var cpuAreaOffset: Int { handlesOffset + generations * MemoryLayout<UInt32>.stride }

    /// Bytes of a cache's state, its locked parts and its per-CPU array.
    static func footprint(maxCPUs: Int) -> Int { cpuAreaOffset + maxCPUs * CPUCache.slotStride }

    // Sound (both): `footprint` reserved each part at its offset, cache-line aligned,
    // and `initialize` bound and initialised it. (The slab layer and the depot are
    // reached only through their locks, `lock` and `depot`.)
    @inline(__always)
    static func links(of state: UnsafeMutablePointer<CacheState>) -> UnsafeMutablePointer<CacheLinks> {
        (UnsafeMutableRawPointer(state) + linksOffset).assumingMemoryBound(to: CacheLinks.self)
    }
    /// The slot of CPU `cpu` in the per-CPU array of `state` (`cpu < maxCPUs` by the
    /// Platform contract): its magazines, and at `CPUCache.countersOffset` its counters.
    @inline(__always)
    static func slot(_ cpu: Int, of state: UnsafeMutablePointer<CacheState>) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(state) + (cpuAreaOffset &+ cpu &* CPUCache.slotStride)
    }
    @inline(__always)
    static func cpu(_ cpu: Int, of state: UnsafeMutablePointer<CacheState>) -> UnsafeMutablePointer<CPUCache> {
        slot(cpu, of: state).assumingMemoryBound(to: CPUCache.self)
    }
    @inline(__always)
    static func counters(_ cpu: Int, of state: UnsafeMutablePointer<CacheState>) -> UnsafeMutablePointer<CPUCounters> {
        (slot(cpu, of: state) + CPUCache.countersOffset).assumingMemoryBound(to: CPUCounters.self)
    }

    /// Initialises a cache's state, its parts and its per-CPU array at `memory`
    /// (`footprint` bytes, cache-line aligned), every CPU detached (both slots on the sentinel).
    static func initialize(
        _ memory: UnsafeMutableRawPointer, maxCPUs: Int, sentinel: Magazine,
        _ value: consuming CacheState
    ) -> UnsafeMutablePointer<CacheState> {
        // Sound: the caller owns `footprint(maxCPUs:)` bytes at `memory`, aligned to a cache line.
        let state = memory.bindMemory(to: CacheState.self, capacity: 1)
        state.initialize(to: value)
        (memory + depotOffset).bindMemory(to: Depot.self, capacity: 1).initialize(to: Depot())
        (memory + slabLayerOffset).bindMemory(to: SlabLayer.self, capacity: 1).initialize(to: SlabLayer())
        (memory + linksOffset).bindMemory(to: CacheLinks.self, capacity: 1).initialize(to: CacheLinks())
        let handles = (memory + handlesOffset).bindMemory(to: Atomic<UInt32>.self, capacity: generations)
        var g = 0
        while g < generations {
            (handles + g).initialize(to: Atomic<UInt32>(0))
            g += 1
        }
        var i = 0
        while i < maxCPUs {
            let slot = memory + cpuAreaOffset + i * CPUCache.slotStride
            slot.bindMemory(to: CPUCache.self, capacity: 1).initialize(to: CPUCache(sentinel: sentinel))
            (slot + CPUCache.markerOffset).bindMemory(to: Atomic<UInt>.self, capacity: 1).initialize(
                to: Atomic<UInt>(0))
            (slot + CPUCache.countersOffset).bindMemory(to: CPUCounters.self, capacity: 1).initialize(to: CPUCounters())
            i += 1
        }
        return state
    }
}

/// A cache's links in the heap's registry of live caches, in creation order. Under
/// the registry lock.
struct CacheLinks {
    var next: UnsafeMutablePointer<CacheState>? = nil
    var previous: UnsafeMutablePointer<CacheState>? = nil
}
