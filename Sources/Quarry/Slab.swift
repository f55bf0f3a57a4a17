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
///   bitmap bit is clear; the bit of every other carved object is set (it is out of
///   the slab: a user's, or in the per-CPU layer): bits set == `inUse`.
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

    var descriptor: PageEntry { map[page] }

    /// Address of object 0.
    @inline(__always) var objectsStart: UInt { start &+ UInt(map[page].color) }

    /// Address of object `index`.
    @inline(__always)
    func object(_ index: Int, _ geometry: SlabGeometry) -> UInt {
        objectsStart &+ UInt(index) &* UInt(geometry.objectSize)
    }

    /// Index of the object starting exactly at `address`, or nil for an address
    /// inside an object, in the colour area or slack, or beyond the carved objects.
    /// Lock-free (reads only the shared words `color` and `carved`); no division (see
    /// SlabGeometry.objectIndex).
    @inline(__always)
    func objectIndex(of address: UInt, _ geometry: SlabGeometry) -> Int? {
        geometry.objectIndex(offset: address &- objectsStart, carved: map[page].carved).map { Int($0) }
    }

    /// Takes one free object: from the free list, else the next never-used object.
    /// Returns `.full` when the slab is full; `.corrupt` when the free list's head link
    /// leads outside the slab (the list is then cut, never followed). Under the cache lock.
    @inline(__always)
    func pop(_ geometry: SlabGeometry, secret: UInt) -> PopResult {
        let d = map[page]
        let head = d.freeHead
        let carved = d.carved
        if head != 0 {
            let span = geometry.linkSpan(carved: carved)
            guard let next = FreeLink.read(
                from: head, offset: geometry.linkOffset, secret: secret, low: objectsStart, span: span
            ) else {
                d.freeHead = 0
                return .corrupt
            }
            d.freeHead = next
            d.inUse += 1
            return .object(head, fresh: false)
        }
        guard Int(carved) < geometry.objectsPerSlab else { return .full }
        let object = self.object(geometry.carveIndex(carved, slabStart: start, secret: secret), geometry)
        d.carved = carved + 1
        d.inUse += 1
        return .object(object, fresh: true)
    }

    enum PopResult {
        case object(UInt, fresh: Bool)
        case full
        case corrupt
    }

    /// Returns `object` (already validated) to the free list. Under the cache lock.
    @inline(__always)
    func push(_ object: UInt, _ geometry: SlabGeometry, secret: UInt) {
        let d = map[page]
        FreeLink.write(d.freeHead, into: object, offset: geometry.linkOffset, secret: secret)
        d.freeHead = object
        d.inUse -= 1
    }

    /// Length of the free list, walking it with the same bounds checks as `pop`;
    /// nil if it is corrupt or longer than `carved` (a cycle).
    func freeListLength(_ geometry: SlabGeometry, secret: UInt) -> Int? {
        let d = map[page]
        let carved = Int(d.carved)
        let span = geometry.linkSpan(carved: d.carved)
        var n = 0
        var p = d.freeHead
        while p != 0 {
            guard p &- objectsStart < span, n < carved else { return nil }
            n += 1
            guard let next = FreeLink.read(
                from: p, offset: geometry.linkOffset, secret: secret, low: objectsStart, span: span
            ) else { return nil }
            p = next
        }
        return n
    }
}
