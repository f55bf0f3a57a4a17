// AllocationBitmap: one bit per 8-byte granule of the data pages, set iff an allocated
// object starts there. It makes double-free and never-allocated checks O(1) and exact.
// Neighbours: Arena (where it lives), SlabCache (sets on allocate, clears on free).

import Synchronization

/// Invariant: for every page below the bump pointer, the bit of granule g is set iff
/// an object starting at g is allocated (handed to a user). Pages above the bump
/// pointer are zeroed when the bump pointer first reaches them, so a slab's bits
/// are all clear when its last object is freed and when it is created.
///
/// Bits are flipped with one atomic read-modify-write so that two CPUs freeing the
/// same object at once cannot both succeed: exactly one sees the bit set.
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
