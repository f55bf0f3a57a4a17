// Geometry: the constants every layer shares, defined once, with their relations asserted.
// Neighbours: Arena (page arithmetic), SlabCache (slab sizing), Tuning (runtime knobs).

/// Fixed sizes of Quarry's memory model. Relations (asserted in `GeometryTests` and at boot):
/// - `pageSize == 1 << pageShift`
/// - `granule` divides `cacheLine`, `cacheLine` divides `pageSize`
/// - `maxObjectSize == maxSlabPages * pageSize` (one object fills the largest slab)
/// - `pageSize / granule == bitmapBytesPerPage * 8`
public enum Geometry {
    /// log2 of the hardware page ("page" is always this 4 KiB unit).
    public static let pageShift = 12
    public static let pageSize = 1 << pageShift
    /// Slab colours rotate in steps of one cache line (Bonwick 1994).
    public static let cacheLine = 64
    /// Smallest object and alignment: a free object must hold one encoded link word,
    /// and objects start on granule boundaries so one bit per granule marks them.
    public static let granule = 8
    public static let granuleShift = 3
    /// Largest slab, in pages. Objects up to `maxObjectSize` come from slabs.
    public static let maxSlabPages = 16
    public static let maxObjectSize = maxSlabPages * pageSize
    /// A slab wastes at most 1/wasteDivisor of its bytes when the object size allows.
    public static let wasteDivisor = 8
    /// Allocation-bitmap bytes for one page: one bit per granule.
    public static let bitmapBytesPerPage = pageSize / granule / 8
    /// Exact-length free-run bins (1 ... exactRunBins pages), plus one bin for longer runs.
    public static let exactRunBins = 16
}

/// Runtime knobs chosen at `Quarry.initialize`. `tiny` makes every refill and
/// release path run thousands of times in tests (shared/STYLE.md rule 13).
public struct Tuning: Sendable {
    /// Upper bound on objects per slab (the natural count is used when smaller).
    public var maxObjectsPerSlab: Int
    /// Empty slabs a cache keeps before it returns pages to the page allocator.
    public var emptySlabReserve: Int

    public init(maxObjectsPerSlab: Int = Int(UInt16.max), emptySlabReserve: Int = 1) {
        self.maxObjectsPerSlab = maxObjectsPerSlab
        self.emptySlabReserve = emptySlabReserve
    }

    public static var standard: Tuning { Tuning() }
    /// Slabs of at most 3 objects and no empty-slab reserve.
    public static var tiny: Tuning { Tuning(maxObjectsPerSlab: 3, emptySlabReserve: 0) }
}
