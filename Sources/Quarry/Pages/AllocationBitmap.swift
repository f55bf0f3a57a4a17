// AllocationBitmap: one bit per object of every slab, set iff the object is out of its slab
// (held by a user or by the per-CPU layer). The exact backstop of double-free and
// never-allocated checks.
// Neighbours: Arena (where the out-of-band words live), SlabGeometry (which layout a cache
// uses), SlabLayer (sets and clears a bit under the cache lock), SlabCache (reads it on free).

import Synchronization

/// Invariant: for every live slab, the bit of each of its objects is set iff the object
/// is out of its slab's free list (allocated, or in a magazine, reserve or depot
/// magazine); a slab's bits are all clear when it is created and when its last object
/// comes back.
///
/// Where an object's bit lives depends on its cache's object size (`SlabGeometry`):
/// - **Out of band** (objects of `Geometry.bitmapGranule` = 64 bytes or more): one bit
///   per 64-byte granule of the data pages, `Geometry.bitmapBytesPerPage` (8) bytes per
///   page after the page descriptors. Two objects of such a cache are at least 64 bytes
///   apart, so no granule holds two object starts. Bit of `address`:
///   `(address - dataStart) >> 6`. These words are zeroed when the bump pointer first
///   reaches their page (PageAllocator) and stay clear while the page is not a slab of
///   such a cache.
/// - **In the slab** (smaller objects: one-page slabs only): one bit per
///   `2^bitmapShift`-byte granule of the page (`bitmapShift = floor(log2(objectSize))`,
///   so again one object start per granule), `SlabGeometry.inSlabBitmapBytes` bytes at
///   the end of the page, after the objects and their colour slack; zeroed when the
///   slab is created (`clearSlab`). Bit of `address`: `(address % pageSize) >> shift`
///   in the words at `page start + inSlabOffset`.
///
/// Each cache holds its own copy of this handle (CacheState.bitmap), with its layout;
/// the heap's copy (HeapState.bitmap) is the out-of-band layout, used to zero pages.
///
/// Writers. A slab object's bit changes only when the object moves between its slab
/// and the layer above, under the cache lock (`setLocked`/`clearLocked`: a relaxed load
/// and store, no locked RMW: every word belongs to one slab, so the lock
/// serialises all its writers). `markAllocated`/`markFree` (one atomic RMW) are for
/// the invariant walks, which hold the lock too. Readers (`isAllocated`, the free hit
/// path) use relaxed loads: never a data race with another bitmap access, possibly
/// stale only while another CPU moves that very object. In-slab words sit in data
/// pages: a free whose lock-free validation went stale (the slab released and its page
/// reused meanwhile) may read a word the page's new owner writes, exactly as it may
/// read that object's link word (SlabCache.freeLocatedHit); out-of-band words never.
struct AllocationBitmap {
    /// The out-of-band words. Sound because `Arena` reserved `bitmapBytesPerPage`
    /// bytes per data page here; the words are only ever accessed as atomics.
    let words: UnsafeMutablePointer<Atomic<UInt32>>
    let dataStart: UInt
    /// 0: out of band. Else the log2 of the in-slab granule (3 ... 5).
    let inSlabShift: UInt
    /// Byte offset of the in-slab words from the start of the slab's page.
    let inSlabOffset: UInt

    /// The heap's handle: the out-of-band layout.
    init(arena: Arena) {
        words = UnsafeMutableRawPointer(bitPattern: arena.bitmapStart)!
            .assumingMemoryBound(to: Atomic<UInt32>.self)
        dataStart = arena.dataStart
        inSlabShift = 0
        inSlabOffset = 0
    }

    /// A cache's handle: the layout its geometry chose.
    init(_ heap: AllocationBitmap, for geometry: SlabGeometry) {
        words = heap.words
        dataStart = heap.dataStart
        if geometry.bitmapInSlab {
            inSlabShift = UInt(geometry.bitmapShift)
            inSlabOffset = UInt(Geometry.pageSize - geometry.inSlabBitmapBytes)
        } else {
            inSlabShift = 0
            inSlabOffset = 0
        }
    }

    /// The word and mask of `address`'s bit. The slab layer's paths call this: the
    /// in-slab arm is out of line, so the many inlined copies stay small (the free hit
    /// path inlines both arms through `isAllocated(_:inSlab:)`).
    @inline(__always)
    private func locate(_ address: UInt) -> (word: UnsafeMutablePointer<Atomic<UInt32>>, mask: UInt32) {
        if _fastPath(inSlabShift == 0) { return locateOutOfBand(address) }
        return locateInSlabOutOfLine(address)
    }

    @inline(never)
    private func locateInSlabOutOfLine(_ address: UInt) -> (word: UnsafeMutablePointer<Atomic<UInt32>>, mask: UInt32) {
        locateInSlab(address)
    }

    @inline(__always)
    private func locateOutOfBand(_ address: UInt) -> (word: UnsafeMutablePointer<Atomic<UInt32>>, mask: UInt32) {
        let bit = (address &- dataStart) >> UInt(Geometry.bitmapGranuleShift)
        return (words + Int(bitPattern: bit >> 5), 1 << UInt32(truncatingIfNeeded: bit & 31))
    }

    @inline(__always)
    private func locateInSlab(_ address: UInt) -> (word: UnsafeMutablePointer<Atomic<UInt32>>, mask: UInt32) {
        // `dataStart` is page-aligned: `inPage` is the offset in the page. (Derived from
        // `address - dataStart`, not `address & 4095`, which the free hit path's
        // caller has computed too: sharing that value kept it in a register across
        // the caller's checks and cost the out-of-band path a spill.)
        let inPage = (address &- dataStart) & UInt(Geometry.pageSize - 1)
        let bit = inPage &>> inSlabShift
        let word = (address &- inPage) &+ inSlabOffset &+ (bit >> 5) << 2
        // Sound: the in-slab words of the one-page slab holding `address` (an object
        // boundary of this cache, validated by the caller), reserved by the geometry
        // after the objects and only ever accessed as atomics.
        return (UnsafeMutablePointer(bitPattern: word).unsafelyUnwrapped, 1 << UInt32(truncatingIfNeeded: bit & 31))
    }

    /// Marks the object at `address` allocated; false if it already was.
    @inline(__always)
    func markAllocated(_ address: UInt) -> Bool {
        let (w, m) = locate(address)
        return w.pointee.bitwiseOr(m, ordering: .relaxed).oldValue & m == 0
    }

    /// Marks the object at `address` free; false if it was not allocated.
    @inline(__always)
    func markFree(_ address: UInt) -> Bool {
        let (w, m) = locate(address)
        return w.pointee.bitwiseAnd(~m, ordering: .relaxed).oldValue & m != 0
    }

    /// Sets the bit of a slab object leaving its slab; false if it was already set
    /// (the slab's free list handed out an object that is out). Cache lock held.
    @inline(__always)
    func setLocked(_ address: UInt) -> Bool {
        let (w, m) = locate(address)
        let old = w.pointee.load(ordering: .relaxed)
        guard old & m == 0 else { return false }
        w.pointee.store(old | m, ordering: .relaxed)
        return true
    }

    /// Clears the bit of a slab object going back to its slab; false if it was
    /// already clear (the object is already in its slab). Cache lock held.
    @inline(__always)
    func clearLocked(_ address: UInt) -> Bool {
        let (w, m) = locate(address)
        let old = w.pointee.load(ordering: .relaxed)
        guard old & m != 0 else { return false }
        w.pointee.store(old & ~m, ordering: .relaxed)
        return true
    }

    @inline(__always)
    func isAllocated(_ address: UInt) -> Bool {
        let (w, m) = locate(address)
        return w.pointee.load(ordering: .relaxed) & m != 0
    }

    /// `isAllocated` for a caller that knows the layout (the free hit path, which reads
    /// it from `CacheState.freeHitMode`).
    @inline(__always)
    func isAllocated(_ address: UInt, inSlab: Bool) -> Bool {
        let (w, m) = inSlab ? locateInSlab(address) : locateOutOfBand(address)
        return w.pointee.load(ordering: .relaxed) & m != 0
    }

    /// Clears the out-of-band words of `count` pages from `page` (when the bump pointer
    /// first reaches them).
    func zero(from page: PageNumber, count: Int) {
        let perPage = Geometry.bitmapBytesPerPage / 4
        var i = page.int * perPage
        let end = i + count * perPage
        while i < end {
            words[i].store(0, ordering: .relaxed)
            i += 1
        }
    }

    /// The words that hold the bits of the slab at `page` (`pages` long) in this layout.
    private func slabWords(_ page: PageNumber, pages: Int) -> (UnsafeMutablePointer<Atomic<UInt32>>, Int) {
        guard inSlabShift != 0 else {
            let perPage = Geometry.bitmapBytesPerPage / 4
            return (words + page.int * perPage, pages * perPage)
        }
        let start = dataStart &+ UInt(truncatingIfNeeded: page.raw) << UInt(Geometry.pageShift)
        // Sound: the in-slab words of this one-page slab (see `locate`).
        return (
            UnsafeMutablePointer(bitPattern: start &+ inSlabOffset).unsafelyUnwrapped,
            (Geometry.pageSize - Int(inSlabOffset)) / 4
        )
    }

    /// Clears the bits of a new slab at `page` (`pages` long): its in-slab words, which
    /// held whatever the page held before. The out-of-band words of a page are clear
    /// already (a slab's bits are clear when it is released). Cache lock held, before
    /// the slab is published.
    func clearSlab(_ page: PageNumber, pages: Int) {
        guard inSlabShift != 0 else { return }
        let (w, n) = slabWords(page, pages: pages)
        var i = 0
        while i < n {
            w[i].store(0, ordering: .relaxed)
            i += 1
        }
    }

    /// Number of set bits of the slab at `page` (`pages` long) (invariant checks).
    func count(slab page: PageNumber, pages: Int) -> Int {
        let (w, n) = slabWords(page, pages: pages)
        var i = 0
        var set = 0
        while i < n {
            set += w[i].load(ordering: .relaxed).nonzeroBitCount
            i += 1
        }
        return set
    }
}
