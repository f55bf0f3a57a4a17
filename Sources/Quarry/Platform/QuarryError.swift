// QuarryError: every way a Quarry call can refuse, one case per reason.
// Neighbours: every API that throws; the C ABI maps the raw values to `quarry_error`.

/// Why an operation was refused. Raw values are stable: the C header's enum uses them.
/// A refused operation changes nothing but the cache's error counters.
public enum QuarryError: UInt8, Error, Sendable {
    // Allocation and creation.
    /// A size of zero where an object size is required.
    case zeroSize = 1
    /// A size above `Geometry.maxObjectSize` (caches) or the arena (runs of pages),
    /// a negative size (a C `size_t` above `Int.max`), or a `calloc` product that overflows.
    case sizeTooLarge = 2
    /// An alignment that is zero, not a power of two, or above the page size.
    case badAlignment = 3
    /// No page left in the arena for a new slab.
    case outOfMemory = 4
    /// The arena given to `initialize` is too small to hold its metadata and one page.
    case arenaTooSmall = 5
    /// A cache handle that does not name a live cache (destroyed, or never created).
    case invalidCache = 6
    /// A C ABI call before `quarry_init` (there is no instance to serve it).
    case notInitialized = 7
    /// A re-entrant free (a constructor, or other code that runs while its CPU holds a
    /// Quarry lock) found this CPU's magazines and reserve full and could not
    /// take a lock: nothing changed, the object is still the caller's; free it again
    /// later (see CPUCache's interrupt contract).
    case busy = 8
    /// (Host C library) the calling thread found every CPU index taken by live threads
    /// (at most `maxCPUs` call Quarry at once; an index comes back when its thread exits).
    case tooManyThreads = 9
    /// Options that cannot be used: from C, an options struct the library cannot read
    /// (`struct_size` below its first field's end, or bytes the library does not know
    /// that are not zero); malloc options with a red zone or type stability.
    case badOptions = 10

    // Free.
    /// The pointer lies outside the arena.
    case outsideArena = 16
    /// The pointer lies in the arena's metadata (page map, bitmap).
    case metadataPointer = 17
    /// The pointer lies in a page that no slab or span owns. The malloc front reports
    /// this only for pages never used (above the high-water mark); a page that held a
    /// block once is `.doubleFree` there. A cache reports it for any such page: it
    /// cannot tell whether the page ever held one of its objects.
    case freePage = 18
    /// The pointer lies inside a slab but not at the start of an object.
    case interiorPointer = 19
    /// The pointer is not aligned to the granule (8 bytes).
    case misaligned = 20
    /// The object belongs to another cache than the one it was freed into.
    case wrongCache = 21
    /// The object is not allocated: freed twice, or never handed out.
    case doubleFree = 22
    /// A slab's free list was found corrupt (a link that is not an object of the slab,
    /// names an object that is out, or skips or repeats objects): memory was
    /// overwritten. The slab is quarantined (docs/design.md, "After a corruption").
    case corruptFreeList = 23
    /// The cache still has allocated objects (from `destroy`).
    case cacheNotEmpty = 24
    /// A size (and alignment) hint given to `free` names another size class or span
    /// length than the block's: the block is not freed.
    case sizeMismatch = 25
    /// (Caches with `CacheOptions.redZone`) the bytes after an object were overwritten
    /// while it was allocated (found on free, or by `validate`). Reported through the
    /// counters and the error hook; the free still happens and the red zone is restored.
    case redZoneOverwritten = 26
    /// (Caches with `CacheOptions.poison`) a freed object's poison was overwritten: a
    /// write after free (found on allocation, or by `validate`). Reported through the
    /// counters and the error hook; the object is still handed out.
    case useAfterFree = 27
    /// Quarry's own records disagree (a slab's count of objects out, the allocation
    /// bitmap, a slab list, a cache's counters): a wild write into its metadata, or a
    /// bug. Never reported by an operation; only `validate` finds it (the trapping
    /// `checkInvariants` stops at it instead).
    case accountingMismatch = 28

    // Deferred freeing.
    /// This CPU's backlog of retired objects is full and cannot be freed because a CPU
    /// stays inside a read-side critical section (`EpochReclaimer.retire`, `reserve`).
    /// The caller keeps the object; the stall is counted and reported.
    case reclaimStalled = 32
}

extension QuarryError {
    /// A short fixed name, printable without allocation.
    public var name: StaticString {
        switch self {
        case .zeroSize: "zero size"
        case .sizeTooLarge: "size too large"
        case .badAlignment: "bad alignment"
        case .outOfMemory: "out of memory"
        case .arenaTooSmall: "arena too small"
        case .invalidCache: "invalid cache"
        case .notInitialized: "not initialized"
        case .busy: "busy (re-entrant call)"
        case .tooManyThreads: "too many threads"
        case .badOptions: "bad options"
        case .outsideArena: "pointer outside arena"
        case .metadataPointer: "pointer into metadata"
        case .freePage: "pointer into a free page"
        case .interiorPointer: "interior pointer"
        case .misaligned: "misaligned pointer"
        case .wrongCache: "wrong cache"
        case .doubleFree: "double free"
        case .corruptFreeList: "corrupt free list"
        case .cacheNotEmpty: "cache not empty"
        case .sizeMismatch: "size hint mismatch"
        case .redZoneOverwritten: "red zone overwritten"
        case .useAfterFree: "write after free (poison overwritten)"
        case .accountingMismatch: "accounting mismatch"
        case .reclaimStalled: "reclamation stalled"
        }
    }
}

// MARK: Counting by kind

extension QuarryError {
    /// The kinds counted one by one, per cache and by the malloc front: raw values
    /// `firstCounted ..< firstCounted + countedKinds` (`.outsideArena` … `.accountingMismatch`).
    /// `ErrorTable` has one entry per kind; C's `errors_by_kind` is indexed the same way.
    public static let firstCounted = 16
    /// How many kinds are counted one by one, from `firstCounted` on.
    public static let countedKinds = 13

    /// This error's entry in an `ErrorTable`, or nil for a kind not counted one by one.
    var tableIndex: Int? {
        let i = Int(rawValue) - QuarryError.firstCounted
        return i >= 0 && i < QuarryError.countedKinds ? i : nil
    }
}

/// One entry per counted error kind: the count is `QuarryError.countedKinds` (an
/// `InlineArray`'s count must be a literal; `Quarry.initialize` checks they agree).
typealias ErrorTable<Element: ~Copyable> = InlineArray<13, Element>
