// CacheState: the out-of-band record of one slab cache, kept in allocator-owned memory.
// Neighbours: SlabCache (the handle that operates on it), HeapState (which embeds the
// cache of caches and links every cache into a registry), CacheStatistics (its snapshot).

/// A constructor runs once on each object when its slab carves it (Bonwick's
/// constructed state): objects must be freed in their constructed state.
public typealias ObjectConstructor = @convention(c) (UnsafeMutableRawPointer) -> Void

/// A fixed-size copy of a cache's name (at most 31 bytes), printable without allocation.
public struct CacheName: Sendable {
    var bytes = InlineArray<32, UInt8>(repeating: 0)
    var count = 0

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
    public mutating func write(_ byte: UInt8) {
        guard count < 31 else { return }
        bytes[count] = byte
        count += 1
    }
}

/// Event counters of one cache. Updated under the cache lock.
struct CacheCounters {
    var allocations: UInt64 = 0
    var frees: UInt64 = 0
    /// Allocations refused for lack of memory.
    var failures: UInt64 = 0
    var slabsCreated: UInt64 = 0
    var slabsReleased: UInt64 = 0
    /// Objects currently allocated (handed to users).
    var active = 0
    var highWater = 0
    /// Refused frees and detected corruption, by kind (index: `QuarryError.rawValue - 16`).
    var errors = InlineArray<9, UInt64>(repeating: 0)

    mutating func count(_ error: QuarryError) {
        let i = Int(error.rawValue) - 16
        if i >= 0 && i < 9 { errors[i] += 1 }
    }

    func errorCount(_ error: QuarryError) -> UInt64 {
        let i = Int(error.rawValue) - 16
        return i >= 0 && i < 9 ? errors[i] : 0
    }

    var totalErrors: UInt64 {
        var sum: UInt64 = 0
        for i in 0..<9 { sum += errors[i] }
        return sum
    }
}

/// State of one cache. Lives in an object of the cache of caches (or inside HeapState
/// for that cache itself), so its address is stable for its whole life.
///
/// Lock: `lock` guards every field below it except the constants set at creation
/// (`name`, `requestedSize`, `geometry`, `constructor`, `secret`, `heap`).
/// Lock order: a cache lock, then the heap's page lock; never two cache locks at once.
///
/// Slab states and transitions (a slab is on exactly one list):
///
///     state    | inUse                  | list     | enters when
///     ---------+------------------------+----------+-------------------------------------
///     empty    | 0                      | empty    | its last object is freed, reserve not full
///     partial  | 0 < inUse < capacity   | partial  | created and first object taken; a full slab frees one
///     full     | capacity               | full     | its last free object is taken
///     released | -                      | none     | freed to empty while the reserve is full
///
/// Invariants (checked by `SlabCache.checkInvariants`):
/// - `counters.active == Σ slab.inUse` over all three lists
/// - `total slabs == counters.slabsCreated - counters.slabsReleased`
/// - `empty.count <= max(tuning.emptySlabReserve, 0)` after every free, unless `typeStable`
///
/// Type-stable caches (`typeStable`, Linux's `SLAB_TYPESAFE_BY_RCU`): a slab never goes
/// back to the page allocator while the cache lives (its empty slabs stay on `empty`,
/// `shrink` keeps them), and the free link lives past the caller's bytes
/// (`geometry.linkOffset`), so memory that once held an object of this cache holds
/// one for as long as the cache exists. Only `destroy` releases the slabs.
///
/// Field order: `magic` comes first because ThreadSanitizer reports every mutation
/// through `pointee` as a write of the record's first byte; that byte must not be the
/// lock (which other CPUs update atomically) or a field they read without it.
struct CacheState: ~Copyable {
    /// `CacheState.liveMagic` while the cache exists; cleared by destroy.
    var magic: UInt32
    let lock = SpinLock()
    var name: CacheName
    let requestedSize: Int
    let geometry: SlabGeometry
    let constructor: ObjectConstructor?
    let secret: UInt
    let heap: UnsafeMutablePointer<HeapState>
    /// Slabs stay with the cache until destroy (see above).
    let typeStable: Bool
    /// Empty slabs kept before free releases one: `tuning.emptySlabReserve`, or
    /// `Int.max` for a type-stable cache (one comparison on the free path for both).
    let emptySlabReserve: Int
    var nextColor = 0
    var partial = SlabList(kind: .partial)
    var full = SlabList(kind: .full)
    var empty = SlabList(kind: .empty)
    var counters = CacheCounters()
    /// Registry of live caches, in creation order (guarded by the heap's registry lock).
    var nextCache: UnsafeMutablePointer<CacheState>? = nil
    var previousCache: UnsafeMutablePointer<CacheState>? = nil

    static let liveMagic: UInt32 = 0x5141_5259  // "QARY"

    init(name: CacheName, size: Int, geometry: SlabGeometry, constructor: ObjectConstructor?,
         secret: UInt, heap: UnsafeMutablePointer<HeapState>, typeStable: Bool = false) {
        magic = CacheState.liveMagic
        self.name = name
        requestedSize = size
        self.geometry = geometry
        self.constructor = constructor
        self.secret = secret
        self.heap = heap
        self.typeStable = typeStable
        emptySlabReserve = typeStable ? Int.max : heap.pointee.tuning.emptySlabReserve
    }

    var slabCount: Int { partial.count + full.count + empty.count }
}
