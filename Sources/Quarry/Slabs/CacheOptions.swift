// CacheOptions: the per-cache hardening and debugging choices made at creation, and the
// heap's error hook. Neighbours: Quarry.createCache (takes them), SlabGeometry (red zone,
// carve order), SlabCache+Debug (poison, red zones, zeroing, validate), docs/design.md ("Safety").

/// Options chosen when a cache is created; all off by default. What is always on
/// (pointer validation, the allocation bitmap, encoded free links) needs no option.
/// Costs are measured in docs/benchmarks.md ("Debug options").
public struct CacheOptions: Sendable, Equatable {
    /// New slabs hand out their objects in a random permutation instead of address order.
    public var randomizeFreeSlots: Bool
    /// Freed objects are filled with `CacheOptions.poisonByte` (except the free-link
    /// word) and checked on allocation: a write after free is reported as
    /// `.useAfterFree`. Ignored with a constructor or `typeStable` (both need the
    /// object's bytes to survive free).
    public var poison: Bool
    /// Bytes (rounded up to 8) after each object filled with `redZoneByte`, checked on
    /// free: a write past the object is reported as `.redZoneOverwritten`.
    public var redZone: Int
    /// Objects are zeroed when handed out (ignored with a constructor).
    public var zeroOnAllocate: Bool
    /// Freed objects are zeroed (ignored with `typeStable`; `poison` fills instead).
    public var zeroOnFree: Bool
    /// Slabs stay with the cache until destroy and freeing writes nothing into the
    /// caller's bytes (Linux's `SLAB_TYPESAFE_BY_RCU`; see docs/design.md ("Deferred freeing")).
    public var typeStable: Bool

    /// The byte `poison` fills freed objects with (Linux's `POISON_FREE`).
    public static let poisonByte: UInt8 = 0x6B
    /// The byte red zones are filled with when a slab is carved, checked on free.
    public static let redZoneByte: UInt8 = 0xBB

    /// Options with the given choices; every one is off by default, so `CacheOptions()`
    /// is a plain cache.
    public init(
        randomizeFreeSlots: Bool = false, poison: Bool = false, redZone: Int = 0,
        zeroOnAllocate: Bool = false, zeroOnFree: Bool = false, typeStable: Bool = false
    ) {
        self.randomizeFreeSlots = randomizeFreeSlots
        self.poison = poison
        self.redZone = redZone
        self.zeroOnAllocate = zeroOnAllocate
        self.zeroOnFree = zeroOnFree
        self.typeStable = typeStable
    }

    /// The options a cache with `constructor` really gets (conflicting ones dropped).
    func effective(hasConstructor: Bool) -> CacheOptions {
        var o = self
        if hasConstructor || typeStable { o.poison = false }
        if hasConstructor { o.zeroOnAllocate = false }
        if typeStable || o.poison { o.zeroOnFree = false }
        return o
    }

    /// True when allocate or free has per-object work to do (one branch on the fast path).
    var needsObjectWork: Bool { poison || redZone > 0 || zeroOnAllocate || zeroOnFree }
}

/// Called on every misuse or corruption a cache detects, with the error's raw value
/// (`QuarryError.rawValue`, the C `quarry_error`), the cache's handle (the C
/// `quarry_cache *`), and the address concerned. It may run on any CPU, with
/// interrupts masked and Quarry locks held: it must not allocate or call Quarry,
/// and should only record or print.
public typealias ErrorHook = @convention(c) (UInt8, UnsafeMutableRawPointer?, UInt) -> Void
