// FreeLink: the only code that reads or writes the link word inside a free object: the
// slab free list's encoded link, and the *cached mark* of an object freed into the
// per-CPU layer. Neighbours: Slab (the links), SlabCache (the mark, on the hit paths).
// Hardening (encoding) and bounds checks live here.

import Synchronization

/// A free object's first word holds the address of the next free object of its slab,
/// stored encoded as `next ^ secret ^ address-of-the-link` (SLUB's hardened free
/// list): a leaked link does not reveal a heap address, and a link overwritten by a
/// use-after-free write decodes to an address outside the slab or off an object
/// boundary, which `read` reports instead of following. (A write that still decodes
/// to an object of the slab is caught by Slab.pop's counts and the allocation bitmap.)
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

    /// The decoded next link of the free object at `object`, or nil when it is neither
    /// 0 (end of list) nor the start of an object of the same slab (object 0 at
    /// `objects`, `carved` objects carved; `SlabGeometry.objectIndex`): a link that
    /// leaves the slab, points inside an object or at one never carved is corruption,
    /// and is never followed. Slab.pop, Slab.walkFreeList (the invariant walk and
    /// `validate`) and the test hook `freeLink(of:)` read links only through here.
    @inline(__always)
    static func read(from object: UInt, _ geometry: SlabGeometry, secret: UInt, objects: UInt, carved: UInt32) -> UInt?
    {
        // Sound: as in `write`; the object is free and owned by this slab's list.
        let word = UnsafeMutablePointer<UInt>(bitPattern: object &+ UInt(geometry.linkOffset))!.pointee
        let next = word ^ secret ^ object
        if next == 0 || geometry.objectIndex(offset: next &- objects, carved: carved) != nil { return next }
        return nil
    }

    // MARK: The cached mark

    /// The word a free puts in an object it gives to the per-CPU layer: `object ^
    /// secret ^ 1`. No link equals it (a link is `next ^ secret ^ object` with `next`
    /// 0 or granule-aligned, never 1), and without the secret a user cannot write it
    /// by chance: a free that finds it is a double free (the object is already cached).
    @inline(__always)
    static func mark(of object: UInt, secret: UInt) -> UInt { object ^ secret ^ 1 }

    /// The link word of `object`, read with a relaxed atomic load: the word is the
    /// caller's (a free of its own object), or Quarry's (a double free of a cached
    /// object); a relaxed load is never a data race with a user's later writes.
    @inline(__always)
    static func word(of object: UInt, offset: Int) -> UInt {
        // Sound: `object` is an object of a live slab (validated by the caller) and a
        // word at `offset` lies inside it (SlabGeometry.validate).
        UnsafeMutablePointer<Atomic<UInt>>(bitPattern: object &+ UInt(bitPattern: offset)).unsafelyUnwrapped
            .pointee.load(ordering: .relaxed)
    }

    /// Writes `value` as the link word of `object` (relaxed atomic store: a plain `mov`).
    @inline(__always)
    static func setWord(_ value: UInt, of object: UInt, offset: Int) {
        // Sound: as in `word(of:offset:)`.
        UnsafeMutablePointer<Atomic<UInt>>(bitPattern: object &+ UInt(bitPattern: offset)).unsafelyUnwrapped
            .pointee.store(value, ordering: .relaxed)
    }
}
