// Geometry: the constants every layer shares, defined once, with their relations asserted.
// Neighbours: Arena (page arithmetic), SlabCache (slab sizing), Tuning (runtime knobs).

/// Fixed sizes of Quarry's memory model. Relations (asserted in `GeometryTests` and at boot):
/// - `pageSize == 1 << pageShift`
/// - `granule` divides `cacheLine`, `cacheLine` divides `pageSize`
/// - `maxObjectSize == maxSlabPages * pageSize` (one object fills the largest slab)
/// - `pageSize / bitmapGranule == bitmapBytesPerPage * 8`, `bitmapGranule == 1 << bitmapGranuleShift`
public enum Geometry {
    /// log2 of the hardware page ("page" is always this 4 KiB unit).
    public static let pageShift = 12
    /// The hardware page, 4 KiB: the page allocator's unit.
    public static let pageSize = 1 << pageShift
    /// Slab colours rotate in steps of one cache line (Bonwick 1994).
    public static let cacheLine = 64
    /// Smallest object and alignment: a free object must hold one encoded link word,
    /// and objects start on granule boundaries.
    public static let granule = 8
    /// log2 of `granule`.
    public static let granuleShift = 3
    /// Largest slab, in pages. Objects up to `maxObjectSize` come from slabs.
    public static let maxSlabPages = 16
    /// The largest object a cache can be created for (64 KiB): one object fills the largest slab.
    public static let maxObjectSize = maxSlabPages * pageSize
    /// A slab wastes at most 1/wasteDivisor of its bytes when the object size allows.
    public static let wasteDivisor = 8
    /// Objects of at least this many bytes have their allocation bit out of band, one
    /// bit per `bitmapGranule` bytes (no two of their objects start in one such
    /// granule); smaller objects keep their bits in their one-page slab
    /// (AllocationBitmap, SlabGeometry.bitmapInSlab).
    public static let bitmapGranule = 64
    /// The base-2 logarithm of `bitmapGranule`: an offset in the data pages shifted right by
    /// it is a bit index.
    public static let bitmapGranuleShift = 6
    /// Out-of-band allocation-bitmap bytes for one page: one bit per bitmap granule.
    public static let bitmapBytesPerPage = pageSize / bitmapGranule / 8
    /// Exact-length free-run bins (1 ... exactRunBins pages), plus one bin for longer runs.
    public static let exactRunBins = 16
    /// Objects each CPU can park per cache when a re-entrant free (an interrupt handler
    /// that interrupted this CPU inside Quarry's slow path) finds its magazines full.
    public static let cpuReserve = 4
}

/// Runtime knobs chosen at `Quarry.initialize`. `tiny` makes every refill, release and
/// magazine-exchange path run thousands of times in tests.
///
/// Relations (checked when `Quarry.initialize` starts: a tuning that breaks one traps): `maxObjectsPerSlab >= 1`,
/// `emptySlabReserve >= 0`, `0 <= magazineSize <= maxMagazineSize`, `magazineBytes >= 1`,
/// `depotFullLimit >= 0`, `depotEmptyLimit >= 0`, `perCPUShare >= 1`.
public struct Tuning: Sendable {
    /// Upper bound on objects per slab (the natural count is used when smaller).
    public var maxObjectsPerSlab: Int
    /// Empty slabs a cache keeps before it returns pages to the page allocator.
    public var emptySlabReserve: Int
    /// Objects a magazine holds (Bonwick 2001). 0 turns the per-CPU layer off: every
    /// allocate and free then takes the cache lock.
    public var magazineSize: Int
    /// A cache's magazines hold at most this many bytes of objects, so caches of big
    /// objects get smaller magazines, and none above this size:
    /// capacity = min(magazineSize, magazineBytes / objectSize).
    public var magazineBytes: Int
    /// Full magazines a cache's depot keeps; beyond it, the coldest full magazine is
    /// emptied into the slabs.
    public var depotFullLimit: Int
    /// Empty magazines a cache's depot keeps; beyond it they are freed.
    public var depotEmptyLimit: Int
    /// The per-CPU layers and depots of all caches together may hold at most
    /// `data bytes / perCPUShare` (the heap's *per-CPU budget*, HeapState.reclaim):
    /// every magazine is charged its rounds' bytes and its own bytes when it is made,
    /// and a magazine the budget cannot pay for is not made.
    public var perCPUShare: Int

    /// A tuning with the given knobs; the defaults are ``standard``: slabs of as many
    /// objects as fit, one empty slab kept, magazines of 32 objects and at most 16 KiB,
    /// a depot of 4 full and 4 empty magazines, a per-CPU budget of 1/16 of the data bytes.
    public init(
        maxObjectsPerSlab: Int = Int(UInt16.max), emptySlabReserve: Int = 1,
        magazineSize: Int = 32, magazineBytes: Int = 16 << 10,
        depotFullLimit: Int = 4, depotEmptyLimit: Int = 4, perCPUShare: Int = 16
    ) {
        self.maxObjectsPerSlab = maxObjectsPerSlab
        self.emptySlabReserve = emptySlabReserve
        self.magazineSize = magazineSize
        self.magazineBytes = magazineBytes
        self.depotFullLimit = depotFullLimit
        self.depotEmptyLimit = depotEmptyLimit
        self.perCPUShare = perCPUShare
    }

    /// The defaults of ``init(maxObjectsPerSlab:emptySlabReserve:magazineSize:magazineBytes:depotFullLimit:depotEmptyLimit:perCPUShare:)``:
    /// what a kernel uses.
    public static var standard: Tuning { Tuning() }
    /// Slabs of at most 3 objects, no empty-slab reserve, magazines of 2 objects and a
    /// depot of one full and one empty magazine: every exchange path runs constantly.
    public static var tiny: Tuning {
        Tuning(
            maxObjectsPerSlab: 3, emptySlabReserve: 0, magazineSize: 2, magazineBytes: Int.max,
            depotFullLimit: 1, depotEmptyLimit: 1)
    }
    /// The foundation's single-layer allocator: no magazines, every call takes the cache lock.
    public static var noMagazines: Tuning { Tuning(magazineSize: 0) }

    /// Largest `magazineSize` (a magazine is one object of the internal magazine cache).
    public static let maxMagazineSize = 1024
    /// No magazine's rounds hold more than `budget / budgetMagazines` bytes, so the
    /// per-CPU budget always pays for at least this many full-size magazines (two per
    /// CPU for 8 caches on 4 CPUs, say) and a small arena gets small magazines.
    public static let budgetMagazines = 64

    var isValid: Bool {
        maxObjectsPerSlab >= 1 && emptySlabReserve >= 0 && magazineSize >= 0
            && magazineSize <= Tuning.maxMagazineSize && magazineBytes >= 1
            && depotFullLimit >= 0 && depotEmptyLimit >= 0 && perCPUShare >= 1
    }

    /// The per-CPU budget of a heap whose data pages hold `dataBytes` bytes.
    func perCPUBudget(dataBytes: Int) -> Int { dataBytes / perCPUShare }

    /// Objects in one magazine of a cache whose objects are `objectSize` bytes apart,
    /// in a heap whose per-CPU budget is `budget` bytes:
    ///
    ///     min(magazineSize, min(magazineBytes, budget / budgetMagazines) / objectSize)
    ///
    /// 0 (no per-CPU layer for that cache: every call takes the cache lock) when
    /// magazines are off, or when one object is bigger than that byte cap.
    func magazineCapacity(objectSize: Int, budget: Int) -> Int {
        min(magazineSize, min(magazineBytes, budget / Tuning.budgetMagazines) / objectSize)
    }
}
