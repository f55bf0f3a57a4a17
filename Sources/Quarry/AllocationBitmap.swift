// AllocationBitmap: one bit per 8-byte granule of the data pages, set iff an object that
// starts there is out of its slab (held by a user or by the per-CPU layer). The exact
// backstop of double-free and never-allocated checks.
// Neighbours: Arena (where it lives), SlabCache+Slabs (sets and clears a bit under the
// cache lock), SlabCache (reads it on free).

import Synchronization

/// Invariant: for every page below the bump pointer, the bit of granule g is set iff
/// an object starting at g is out of its slab's free list (allocated, or in a
/// magazine, reserve or depot magazine). Pages above the
/// bump pointer are zeroed when the bump pointer first reaches them, so a slab's bits
/// are all clear when it is created and when its last object comes back.
///
/// Writers. A slab object's bit changes only when the object moves between its slab
/// and the layer above, under the cache lock (`setLocked`/`clearLocked`: a relaxed load
/// and store, no locked RMW: every word of a page belongs to one slab, so the lock
/// serialises all its writers). `markAllocated`/`markFree` (one atomic RMW) are for
/// the invariant walks, which hold the lock too. Readers (`isAllocated`, the free hit
/// path) use relaxed loads: never a data race, possibly stale only while another CPU
/// moves that very object.
struct AllocationBitmap {
    /// Sound because `Arena` reserved `bitmapBytesPerPage` bytes per data page here;
    /// the words are only ever accessed as atomics.
    let words: UnsafeMutablePointer<Atomic<UInt32>>
    let dataStart: UInt

    init(arena: Arena) {
        words = UnsafeMutableRawPointer(bitPattern: arena.bitmapStart)!
            .assumingMemoryBound(to: Atomic<UInt32>.self)
        dataStart = arena.dataStart
    }

    @inline(__always)
    private func locate(_ address: UInt) -> (word: Int, mask: UInt32) {
        let bit = (address &- dataStart) >> UInt(Geometry.granuleShift)
        return (Int(bit >> 5), 1 << UInt32(bit & 31))
    }

    /// Marks the object at `address` allocated; false if it already was.
    @inline(__always)
    func markAllocated(_ address: UInt) -> Bool {
        let (w, m) = locate(address)
        return words[w].bitwiseOr(m, ordering: .relaxed).oldValue & m == 0
    }

    /// Marks the object at `address` free; false if it was not allocated.
    @inline(__always)
    func markFree(_ address: UInt) -> Bool {
        let (w, m) = locate(address)
        return words[w].bitwiseAnd(~m, ordering: .relaxed).oldValue & m != 0
    }

    /// Sets the bit of a slab object leaving its slab; false if it was already set
    /// (the slab's free list handed out an object that is out). Cache lock held.
    @inline(__always)
    func setLocked(_ address: UInt) -> Bool {
        let (w, m) = locate(address)
        let old = words[w].load(ordering: .relaxed)
        guard old & m == 0 else { return false }
        words[w].store(old | m, ordering: .relaxed)
        return true
    }

    /// Clears the bit of a slab object going back to its slab; false if it was
    /// already clear (the object is already in its slab). Cache lock held.
    @inline(__always)
    func clearLocked(_ address: UInt) -> Bool {
        let (w, m) = locate(address)
        let old = words[w].load(ordering: .relaxed)
        guard old & m != 0 else { return false }
        words[w].store(old & ~m, ordering: .relaxed)
        return true
    }

    @inline(__always)
    func isAllocated(_ address: UInt) -> Bool {
        let (w, m) = locate(address)
        return words[w].load(ordering: .relaxed) & m != 0
    }

    /// Clears the bits of `count` pages from `page` (when the bump pointer first reaches them).
    func zero(from page: PageNumber, count: Int) {
        let perPage = Geometry.bitmapBytesPerPage / 4
        var i = page.int * perPage
        let end = i + count * perPage
        while i < end {
            words[i].store(0, ordering: .relaxed)
            i += 1
        }
    }

    /// Number of set bits in the bitmap of `count` pages from `page` (invariant checks).
    func count(from page: PageNumber, pages count: Int) -> Int {
        let perPage = Geometry.bitmapBytesPerPage / 4
        var i = page.int * perPage
        let end = i + count * perPage
        var n = 0
        while i < end {
            n += words[i].load(ordering: .relaxed).nonzeroBitCount
            i += 1
        }
        return n
    }
}
