// Slab: one run of pages carved into objects of one cache, described by its head page's
// descriptor. Neighbours: SlabGeometry (its shape), FreeLink (its free list),
// SlabCache (which moves it between lists and holds its lock).

/// A handle on a live slab: its first page and the descriptor there.
///
/// Layout (one slab of `geometry.slabPages` pages):
///
///     slab start            start + color                           start + slabBytes
///     | colour (unused) | obj 0 | obj 1 | ... | obj capacity-1 | slack - colour |
///
/// Invariants (per slab, checked by SlabCache.checkInvariants):
/// - `inUse + |free list| == carved <= capacity`
/// - `color + capacity * objectSize <= slabBytes` (no object crosses the slab's end)
/// - every object on the free list is at an object boundary below `carved`, and its
///   bitmap bit is clear; the bit of every other carved object is set iff allocated.
struct Slab {
    let page: PageNumber
    let start: UInt
    let map: PageMap

    @inline(__always)
    init(page: PageNumber, map: PageMap, arena: Arena) {
        self.page = page
        self.map = map
        self.start = arena.address(of: page)
    }

    var descriptor: PageDescriptor { map[page] }

    /// Address of object 0.
    @inline(__always) var objectsStart: UInt { start &+ UInt(map[page].color) }

    /// Address of object `index`.
    @inline(__always)
    func object(_ index: Int, _ geometry: SlabGeometry) -> UInt {
        objectsStart &+ UInt(index) &* UInt(geometry.objectSize)
    }

    /// Index of the object starting exactly at `address`, or nil for an address
    /// inside an object, in the colour area or slack, or beyond the carved objects.
    @inline(__always)
    func objectIndex(of address: UInt, _ geometry: SlabGeometry) -> Int? {
        let offset = address &- objectsStart
        let carvedBytes = UInt(map[page].carved) &* UInt(geometry.objectSize)
        guard offset < carvedBytes else { return nil }
        let (q, r) = offset.quotientAndRemainder(dividingBy: UInt(geometry.objectSize))
        return r == 0 ? Int(q) : nil
    }

    /// Takes one free object: from the free list, else the next never-used object.
    /// Returns nil when the slab is full; `.corrupt` when the free list's head link
    /// leads outside the slab (the list is then cut, never followed).
    @inline(__always)
    func pop(_ geometry: SlabGeometry, secret: UInt) -> PopResult {
        let d = map[page]
        if d.freeHead != 0 {
            let object = d.freeHead
            let span = UInt(d.carved) &* UInt(geometry.objectSize)
            guard let next = FreeLink.read(
                from: object, offset: geometry.linkOffset, secret: secret, low: objectsStart, span: span
            ) else {
                map[page].freeHead = 0
                return .corrupt
            }
            map[page].freeHead = next
            map[page].inUse = d.inUse + 1
            return .object(object, fresh: false)
        }
        guard Int(d.carved) < geometry.objectsPerSlab else { return .full }
        let object = self.object(Int(d.carved), geometry)
        map[page].carved = d.carved + 1
        map[page].inUse = d.inUse + 1
        return .object(object, fresh: true)
    }

    enum PopResult {
        case object(UInt, fresh: Bool)
        case full
        case corrupt
    }

    /// Returns `object` (already validated) to the free list.
    @inline(__always)
    func push(_ object: UInt, _ geometry: SlabGeometry, secret: UInt) {
        FreeLink.write(map[page].freeHead, into: object, offset: geometry.linkOffset, secret: secret)
        map[page].freeHead = object
        map[page].inUse -= 1
    }

    /// Length of the free list, walking it with the same bounds checks as `pop`;
    /// nil if it is corrupt or longer than `carved` (a cycle).
    func freeListLength(_ geometry: SlabGeometry, secret: UInt) -> Int? {
        let d = map[page]
        let span = UInt(d.carved) &* UInt(geometry.objectSize)
        var n = 0
        var p = d.freeHead
        while p != 0 {
            guard p &- objectsStart < span, n < Int(d.carved) else { return nil }
            n += 1
            guard let next = FreeLink.read(
                from: p, offset: geometry.linkOffset, secret: secret, low: objectsStart, span: span
            ) else { return nil }
            p = next
        }
        return n
    }
}
