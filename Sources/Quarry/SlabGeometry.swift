// SlabGeometry: how a cache's object size and alignment become a slab shape and colours.
// Neighbours: Geometry and Tuning (the constants), SlabCache (computes it once at create).

/// The shape of every slab of one cache.
///
/// Invariants (asserted by `validate`, tested for every size in GeometryTests):
/// - `objectSize % alignment == 0`, `objectSize >= Geometry.granule`
/// - `1 <= objectsPerSlab`, `objectsPerSlab * objectSize <= slabBytes`
/// - `colorStep % alignment == 0`, `colorStep % Geometry.cacheLine == 0`
/// - `(colorCount - 1) * colorStep + objectsPerSlab * objectSize <= slabBytes`
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

    var slabBytes: Int { slabPages << Geometry.pageShift }
    var slack: Int { slabBytes - objectsPerSlab * objectSize }

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
        guard UInt(truncatingIfNeeded: q &* UInt32(truncatingIfNeeded: objectSize)) == offset, q < carved else {
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
    static func make(size: Int, alignment: Int, tuning: Tuning, linkOutside: Bool = false) throws(QuarryError) -> SlabGeometry {
        guard size > 0 else { throw .zeroSize }
        guard alignment > 0, alignment & (alignment - 1) == 0, alignment <= Geometry.pageSize else {
            throw .badAlignment
        }
        let linkOffset = linkOutside ? (size + Geometry.granule - 1) & ~(Geometry.granule - 1) : 0
        let needed = linkOutside ? linkOffset + Geometry.granule : size
        guard size <= Geometry.maxObjectSize, needed <= Geometry.maxObjectSize else { throw .sizeTooLarge }
        let align = max(alignment, Geometry.granule)
        let objectSize = (needed + align - 1) & ~(align - 1)
        let cap = max(1, tuning.maxObjectsPerSlab)
        var best: (pages: Int, objects: Int)? = nil
        var bestWasteRatio = Int.max  // waste per 2^16 bytes of slab
        var pages = 1
        while pages <= Geometry.maxSlabPages {
            let bytes = pages << Geometry.pageShift
            let objects = min(bytes / objectSize, cap)
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
        let slack = (chosen.pages << Geometry.pageShift) - chosen.objects * objectSize
        let g = SlabGeometry(
            objectSize: objectSize, alignment: align, slabPages: chosen.pages,
            objectsPerSlab: chosen.objects, colorStep: step, colorCount: slack / step + 1,
            linkOffset: linkOffset, reciprocal: reciprocal(of: objectSize), objectSpan: UInt32(chosen.objects * objectSize))
        g.validate()
        return g
    }

    /// Traps if an invariant above does not hold.
    func validate() {
        precondition(objectSize % alignment == 0 && objectSize >= Geometry.granule, "SlabGeometry: object size")
        precondition(objectsPerSlab >= 1 && objectsPerSlab * objectSize <= slabBytes, "SlabGeometry: capacity")
        precondition(colorStep % alignment == 0 && colorStep % Geometry.cacheLine == 0, "SlabGeometry: colour step")
        precondition(color(colorCount - 1) + objectsPerSlab * objectSize <= slabBytes, "SlabGeometry: colour range")
        precondition(color(colorCount - 1) <= Int(UInt16.max), "SlabGeometry: colour fits the descriptor")
        precondition(linkOffset % Geometry.granule == 0 && linkOffset + MemoryLayout<UInt>.size <= objectSize,
                     "SlabGeometry: free link inside the object")
        precondition(slabBytes <= 1 << 16 && objectSize <= 1 << 16 && reciprocal == Self.reciprocal(of: objectSize),
                     "SlabGeometry: reciprocal out of its proved range")
        precondition(Int(objectSpan) == objectsPerSlab * objectSize, "SlabGeometry: object span")
    }
}
