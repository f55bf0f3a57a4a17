// Slab: one run of pages carved into objects of one cache, described by its head page's
// descriptor. Neighbours: SlabGeometry (its shape), FreeLink (its free list),
// SlabCache (which moves it between lists and holds its lock).

/// A handle on a live slab: its first page and the descriptor there.
///
/// Layout (one slab of `geometry.slabPages` pages):
///
///     slab start            start + color                           start + slabBytes
///     | colour (unused) | obj 0 | obj 1 | ... | obj capacity-1 | slack - colour | bits |
///
/// `bits`: the slab's allocation bits, `geometry.inSlabBitmapBytes` (16 to 64 bytes) for
/// objects under 64 bytes (one-page slabs), none for larger ones (their bits are out
/// of band: AllocationBitmap).
///
/// Invariants (per slab, checked by SlabCache.checkInvariants):
/// - `inUse + |free list| + leaked == carved <= capacity`, where `leaked` is 0 for a
///   slab in service and `carved - inUse` for a quarantined one, whose free list is
///   empty (`freeHead == 0`): its free objects are lost on purpose (SlabLayer)
/// - `color + capacity * objectSize + inSlabBitmapBytes <= slabBytes` (no object
///   crosses the slab's end or reaches its bits)
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

    /// Address of object 0.
    @inline(__always) var objectsStart: UInt { start &+ UInt(map[page].color) }

    /// Address of object `index`.
    @inline(__always)
    func object(_ index: Int, _ geometry: SlabGeometry) -> UInt {
        objectsStart &+ UInt(index) &* UInt(geometry.objectSize)
    }

    /// Takes one free object: from the free list, else the next never-used object.
    /// Under the cache lock; the caller sets the object's bit (and takes the slab out
    /// of service if that fails: the object is out already).
    ///
    /// `.corrupt(address)`, with nothing changed, when the slab cannot give what its
    /// counts promise (the caller quarantines it and reports `address`):
    /// - the head is out of its slab (bit set): a link named an object already handed
    ///   out, or the list closed a cycle; the head's link word is then not read, since
    ///   its owner may be writing it (reported: the head);
    /// - the head's link is neither 0 nor an object boundary below `carved`
    ///   (FreeLink.read), or it ends the list before its last free object (a link
    ///   skipped objects) or goes on past it (a cycle, or a link to an object that is
    ///   out): the list holds exactly `carved - inUse` objects (reported: the head,
    ///   whose link word was overwritten);
    /// - the list is not empty though every carved object is out, or empty though
    ///   some are not, or nothing is left to carve on a slab that is not full
    ///   (reported: the slab's start).
    /// So `inUse <= carved` always holds, every pop gives an object whose bit is clear
    /// or reports, and a damaged list is found by the time its slab would be full.
    @inline(__always)
    func pop(_ geometry: SlabGeometry, secret: UInt, bitmap: AllocationBitmap) -> PopResult {
        let d = map[page]
        let head = d.freeHead
        let carved = d.carved
        let inUse = d.inUse
        if head != 0 {
            // The list holds `carved - inUse` objects: it ends exactly at the last one.
            guard inUse < carved, !bitmap.isAllocated(head),
                let next = FreeLink.read(from: head, geometry, secret: secret, objects: objectsStart, carved: carved),
                (next == 0) == (inUse + 1 == carved)
            else { return .corrupt(head) }
            d.freeHead = next
            d.inUse = inUse + 1
            return .object(head, fresh: false)
        }
        guard inUse == carved, Int(carved) < geometry.objectsPerSlab else { return .corrupt(start) }
        let object = self.object(geometry.carveIndex(carved, slabStart: start, secret: secret), geometry)
        d.carved = carved + 1
        d.inUse = inUse + 1
        return .object(object, fresh: true)
    }

    enum PopResult {
        case object(UInt, fresh: Bool)
        case corrupt(UInt)
    }

    /// Returns `object` (already validated) to the free list. Under the cache lock.
    @inline(__always)
    func push(_ object: UInt, _ geometry: SlabGeometry, secret: UInt) {
        let d = map[page]
        FreeLink.write(d.freeHead, into: object, offset: geometry.linkOffset, secret: secret)
        d.freeHead = object
        d.inUse -= 1
    }

    /// Walks the free list with the checks of `pop` (each object's bit clear, each
    /// link through FreeLink.read) and at most `carved` steps, calling `body` with
    /// each object. Changes nothing. Cache lock held.
    func walkFreeList(
        _ geometry: SlabGeometry, secret: UInt, bitmap: AllocationBitmap,
        _ body: (UInt) -> Void = { _ in }
    ) -> FreeListWalk {
        let d = map[page]
        let carved = d.carved
        var n = 0
        var p = d.freeHead
        while p != 0 {
            // `p` is the head (set only to a checked link or a pushed object) or a link
            // FreeLink.read accepted: an object boundary of this slab.
            guard n < Int(carved), !bitmap.isAllocated(p) else { return .broken(at: p) }
            body(p)
            n += 1
            guard let next = FreeLink.read(from: p, geometry, secret: secret, objects: objectsStart, carved: carved)
            else { return .broken(at: p) }
            p = next
        }
        return .length(n)
    }

    enum FreeListWalk {
        /// A well-formed list of this many objects.
        case length(Int)
        /// The walk stopped at this object: its link is corrupt, it is out of its slab
        /// (bit set), or the list is longer than `carved` (a cycle).
        case broken(at: UInt)
    }
}
