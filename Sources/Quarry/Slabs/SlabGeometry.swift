// SlabGeometry: how a cache's object size and alignment become a slab shape and colours.
// Neighbours: Geometry and Tuning (the constants), SlabCache (computes it once at create).

/// The shape of every slab of one cache.
///
/// Invariants (asserted by `validate`, tested for every size in GeometryTests):
/// - `objectSize % alignment == 0`, `objectSize >= Geometry.granule`
/// - `1 <= objectsPerSlab`, `objectsPerSlab * objectSize <= slabBytes`
/// - `colorStep % alignment == 0`, `colorStep % Geometry.cacheLine == 0`
/// - `(colorCount - 1) * colorStep + objectsPerSlab * objectSize + inSlabBitmapBytes <= slabBytes`
/// - `bitmapInSlab` (`objectSize < Geometry.bitmapGranule`) implies `slabPages == 1`
/// - `linkOffset % Geometry.granule == 0`, `linkOffset + word size <= objectSize`
/// - `reciprocal == 2^32 / objectSize + 1` (rounded down, then one added), and for every
///   `offset < slabBytes`: `offset * reciprocal >> 32 == offset / objectSize`
///   (see `quotient`; proved below, checked exhaustively in GeometryTests)
struct SlabGeometry: Equatable {
    /// Distance between consecutive objects (size rounded up to the alignment).
    let objectSize: Int
    let alignment: Int
    let slabPages: Int
    let objectsPerSlab: Int
    /// Colours step through the slack in units of `colorStep` bytes.
    let colorStep: Int
    /// Number of distinct colours (1 when the slack is smaller than one step).
    let colorCount: Int
    /// Byte offset of the free link inside a free object: 0, or (type-stable caches)
    /// just past the caller's bytes, so that freeing never writes into them.
    let linkOffset: Int
    /// `floor(2^32 / objectSize) + 1`: turns the division in pointer validation into a
    /// multiply (see `quotient`).
    let reciprocal: UInt32
    /// `objectsPerSlab * objectSize`, precomputed for pointer validation.
    let objectSpan: UInt32
    /// First byte of the red zone in each object (`CacheOptions.redZone`): the red zone
    /// is `[redZoneStart, objectSize)`; `redZoneStart == objectSize` when there is none.
    let redZoneStart: Int
    /// 0 when slabs carve objects in address order (the carved ones are a prefix);
    /// `UInt32.max` when they carve in a random permutation (`randomizeFreeSlots`),
    /// so pointer validation accepts any object index and the bitmap decides.
    let carvedFloor: UInt32

    var hasRedZone: Bool { redZoneStart < objectSize }
    var randomized: Bool { carvedFloor != 0 }

    /// Index of the `k`-th object a slab at `slabStart` carves: `k` itself, or in a
    /// randomized cache `(first + k * step) mod objectsPerSlab`, where `first` and
    /// `step` come from a hash of the slab's address and the cache secret. `step` is
    /// a prime above the largest possible capacity (8192 objects: 64 KiB of 8-byte
    /// objects), so it is coprime to `objectsPerSlab` and the sequence is a
    /// permutation. O(1): one hash, two 32-bit remainders (no 64-bit helper on i686).
    @inline(__always)
    func carveIndex(_ k: UInt32, slabStart: UInt, secret: UInt) -> Int {
        guard randomized else { return Int(k) }
        var h = UInt32(truncatingIfNeeded: (slabStart >> UInt(Geometry.pageShift)) &* 0x9E37_79B1)
        h ^= UInt32(truncatingIfNeeded: secret) ^ UInt32(truncatingIfNeeded: secret >> 16)
        h = (h ^ (h >> 15)) &* 0x2C1B_3C6D
        h ^= h >> 12
        let primes: (UInt32, UInt32, UInt32, UInt32) = (8209, 8219, 8221, 8231)
        let step: UInt32
        switch h & 3 {
        case 0: step = primes.0
        case 1: step = primes.1
        case 2: step = primes.2
        default: step = primes.3
        }
        let cap = UInt32(truncatingIfNeeded: objectsPerSlab)
        // k < cap <= 8192 and step < 8300: the product fits in 32 bits.
        return Int((h >> 4) % cap &+ (k &* step) % cap) % Int(cap)
    }

    var slabBytes: Int { slabPages << Geometry.pageShift }
    /// Bytes of the slab neither objects nor the in-slab bitmap use (the colours move
    /// the objects inside it).
    var slack: Int { slabBytes - inSlabBitmapBytes - objectsPerSlab * objectSize }

    /// True when the objects' allocation bits live in the slab (AllocationBitmap):
    /// objects smaller than the out-of-band bitmap's granule, in one-page slabs.
    var bitmapInSlab: Bool { objectSize < Geometry.bitmapGranule }
    /// log2 of the bitmap granule of this cache: the largest power of two not above
    /// the object size, at most `Geometry.bitmapGranuleShift` (objects at least that far
    /// apart never start in one granule).
    var bitmapShift: Int { Self.bitmapShift(objectSize: objectSize) }
    /// Bytes at the end of the slab's page that hold the in-slab bitmap (0 when out of
    /// band): one bit per `2^bitmapShift` bytes of the page.
    var inSlabBitmapBytes: Int { Self.inSlabBitmapBytes(objectSize: objectSize) }

    static func bitmapShift(objectSize: Int) -> Int {
        min(Int.bitWidth - 1 - objectSize.leadingZeroBitCount, Geometry.bitmapGranuleShift)
    }

    static func inSlabBitmapBytes(objectSize: Int) -> Int {
        objectSize < Geometry.bitmapGranule ? (Geometry.pageSize >> bitmapShift(objectSize: objectSize)) / 8 : 0
    }

    /// Byte offset of object 0 in the slab of colour `index`.
    @inline(__always) func color(_ index: Int) -> Int { index * colorStep }

    /// `offset / objectSize` for `offset < slabBytes`, with one widening multiply
    /// (`mul`, high half) instead of a division.
    ///
    /// Exact: write `reciprocal = 2^32/d + e` with `d = objectSize` and `0 < e <= 1`.
    /// Then `offset * reciprocal / 2^32 = offset/d + offset*e/2^32`, and the error term is
    /// `< 2^16 / 2^32 = 2^-16 <= 1/d`, because `offset < slabBytes <= 2^16` and
    /// `d <= maxObjectSize = 2^16`. The fractional part of `offset/d` is at most
    /// `1 - 1/d`, so adding less than `1/d` never crosses the next integer: the floor is
    /// `offset / d`. (`maxSlabPages * pageSize == 2^16` is asserted in GeometryTests.)
    @inline(__always)
    func quotient(_ offset: UInt32) -> UInt32 {
        offset.multipliedFullWidth(by: reciprocal).high
    }

    /// `floor(2^32 / d) + 1` in 32-bit arithmetic (a 64-bit division would need a
    /// runtime helper on i686): `floor(2^32 / d) == floor((2^32 - 1) / d)` unless `d`
    /// divides `2^32`, i.e. is a power of two, when it is one more.
    /// Bytes the objects of one slab span (`objectsPerSlab * objectSize <= slabBytes <= 2^16`).
    var objectBytes: UInt { UInt(truncatingIfNeeded: objectSpan) }

    /// The index of the object starting exactly `offset` bytes after object 0, if it is
    /// one of the first `carved`; nil for an offset inside an object, past the objects,
    /// or at an object never handed out. One multiply by the reciprocal, one to check.
    @inline(__always)
    func objectIndex(offset: UInt, carved: UInt32) -> UInt32? {
        guard offset < objectBytes else { return nil }
        // offset < objectBytes <= 2^16: the quotient is exact.
        let q = quotient(UInt32(truncatingIfNeeded: offset))
        guard UInt(truncatingIfNeeded: q &* UInt32(truncatingIfNeeded: objectSize)) == offset, q < carved | carvedFloor
        else {
            return nil
        }
        return q
    }

    static func reciprocal(of objectSize: Int) -> UInt32 {
        let d = UInt32(truncatingIfNeeded: objectSize)
        let powerOfTwo: UInt32 = d & (d &- 1) == 0 ? 1 : 0
        return UInt32.max / d &+ powerOfTwo &+ 1
    }

    /// Picks the smallest slab (1, 2, 4, ... `maxSlabPages` pages) that wastes at most
    /// 1/`wasteDivisor` of its bytes; if none does, the one that wastes the least.
    /// `linkOutside` (type-stable caches) adds one granule after the caller's bytes
    /// for the free link, so a freed object keeps every byte its user wrote.
    /// `redZone` (`CacheOptions.redZone`) adds that many bytes (rounded up to the
    /// granule) after the caller's bytes (and the outside link), filled with a pattern.
    /// `randomized` carves each slab in a random permutation (`carveIndex`).
    static func make(
        size: Int, alignment: Int, tuning: Tuning, linkOutside: Bool = false,
        redZone: Int = 0, randomized: Bool = false
    ) throws(QuarryError) -> SlabGeometry {
        guard size > 0 else { throw .zeroSize }
        guard alignment > 0, alignment & (alignment - 1) == 0, alignment <= Geometry.pageSize else {
            throw .badAlignment
        }
        let linkOffset = linkOutside ? (size + Geometry.granule - 1) & ~(Geometry.granule - 1) : 0
        let zoneStart = linkOutside ? linkOffset + Geometry.granule : size
        guard redZone >= 0, redZone <= Geometry.maxObjectSize else { throw .sizeTooLarge }
        let zone = (redZone + Geometry.granule - 1) & ~(Geometry.granule - 1)
        let needed = zoneStart + zone
        guard size <= Geometry.maxObjectSize, needed <= Geometry.maxObjectSize else { throw .sizeTooLarge }
        let align = max(alignment, Geometry.granule)
        let objectSize = (needed + align - 1) & ~(align - 1)
        let cap = max(1, tuning.maxObjectsPerSlab)
        // Objects with in-slab bits: one-page slabs, the bitmap at the page's end.
        let inSlabBitmap = inSlabBitmapBytes(objectSize: objectSize)
        let maxPages = inSlabBitmap > 0 ? 1 : Geometry.maxSlabPages
        var best: (pages: Int, objects: Int)? = nil
        var bestWasteRatio = Int.max  // waste per 2^16 bytes of slab
        var pages = 1
        while pages <= maxPages {
            let bytes = pages << Geometry.pageShift
            let objects = min((bytes - inSlabBitmap) / objectSize, cap)
            if objects >= 1 {
                let waste = bytes - objects * objectSize
                if waste * Geometry.wasteDivisor <= bytes {
                    best = (pages, objects)
                    break
                }
                let ratio = (waste << 16) / bytes
                if ratio < bestWasteRatio {
                    bestWasteRatio = ratio
                    best = (pages, objects)
                }
            }
            pages <<= 1
        }
        guard let chosen = best else { throw .sizeTooLarge }
        let step = max(Geometry.cacheLine, align)
        let slack = (chosen.pages << Geometry.pageShift) - inSlabBitmap - chosen.objects * objectSize
        let g = SlabGeometry(
            objectSize: objectSize, alignment: align, slabPages: chosen.pages,
            objectsPerSlab: chosen.objects, colorStep: step, colorCount: slack / step + 1,
            linkOffset: linkOffset, reciprocal: reciprocal(of: objectSize),
            objectSpan: UInt32(chosen.objects * objectSize),
            redZoneStart: zone > 0 ? zoneStart : objectSize, carvedFloor: randomized ? UInt32.max : 0)
        g.validate()
        return g
    }

    /// Traps if an invariant above does not hold.
    func validate() {
        precondition(objectSize % alignment == 0 && objectSize >= Geometry.granule, "SlabGeometry: object size")
        precondition(objectsPerSlab >= 1 && objectsPerSlab * objectSize <= slabBytes, "SlabGeometry: capacity")
        precondition(colorStep % alignment == 0 && colorStep % Geometry.cacheLine == 0, "SlabGeometry: colour step")
        precondition(
            color(colorCount - 1) + objectsPerSlab * objectSize + inSlabBitmapBytes <= slabBytes,
            "SlabGeometry: colour range")
        precondition(
            !bitmapInSlab || (slabPages == 1 && inSlabBitmapBytes % 4 == 0),
            "SlabGeometry: an in-slab bitmap needs a one-page slab")
        precondition(color(colorCount - 1) <= Int(UInt16.max), "SlabGeometry: colour fits the descriptor")
        precondition(
            linkOffset % Geometry.granule == 0 && linkOffset + MemoryLayout<UInt>.size <= objectSize,
            "SlabGeometry: free link inside the object")
        precondition(
            slabBytes <= 1 << 16 && objectSize <= 1 << 16 && reciprocal == Self.reciprocal(of: objectSize),
            "SlabGeometry: reciprocal out of its proved range")
        precondition(Int(objectSpan) == objectsPerSlab * objectSize, "SlabGeometry: object span")
        precondition(redZoneStart <= objectSize && objectsPerSlab <= 8192, "SlabGeometry: red zone, capacity")
    }
}
