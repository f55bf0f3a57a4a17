// FreeLink: the only code that reads or writes the link word inside a free object.
// Neighbours: Slab (its only caller). Hardening (encoding) and bounds checks live here.

/// A free object's first word holds the address of the next free object of its slab,
/// stored encoded as `next ^ secret ^ address-of-the-link` (SLUB's hardened free
/// list): a leaked link does not reveal a heap address, and a link overwritten by a
/// use-after-free write decodes to an address outside the slab, which `read` reports
/// instead of following.
///
/// The link word sits `offset` bytes into the object: 0 in ordinary caches (the first
/// word), past the caller's bytes in type-stable caches (`SlabGeometry.linkOffset`),
/// where readers may still read a freed object and must find their own data there.
enum FreeLink {
    /// Stores `next` (0 for end of list) in the free object at `object`.
    @inline(__always)
    static func write(_ next: UInt, into object: UInt, offset: Int, secret: UInt) {
        // Sound: `object` is a free object of a live slab (the caller just freed it or
        // carved it); `offset` is granule-aligned and a word fits after it inside the
        // object (SlabGeometry.validate).
        UnsafeMutablePointer<UInt>(bitPattern: object &+ UInt(offset))!.pointee = next ^ secret ^ object
    }

    /// The decoded next link of the free object at `object`, or nil when it does not
    /// lie in `[low, low + span)` (corruption: never followed). 0 is the end of list.
    @inline(__always)
    static func read(from object: UInt, offset: Int, secret: UInt, low: UInt, span: UInt) -> UInt? {
        // Sound: as in `write`; the object is free and owned by this slab's list.
        let next = UnsafeMutablePointer<UInt>(bitPattern: object &+ UInt(offset))!.pointee ^ secret ^ object
        if next == 0 || next &- low < span { return next }
        return nil
    }
}
