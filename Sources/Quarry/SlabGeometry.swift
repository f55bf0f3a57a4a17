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

    var slabBytes: Int { slabPages << Geometry.pageShift }
    var slack: Int { slabBytes - objectsPerSlab * objectSize }

    /// Byte offset of object 0 in the slab of colour `index`.
    @inline(__always) func color(_ index: Int) -> Int { index * colorStep }

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
            linkOffset: linkOffset)
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
    }
}
