// PageMap: one PageDescriptor per data page, out of band; O(1) from an address to its slab.
// Neighbours: Arena (where the descriptors live), PageAllocator (free runs), Slab (slab heads).

/// What a page is used for. Only pages below the bump pointer have a meaningful kind.
enum PageKind: UInt8 {
    /// Part of a free run (its first or last page carries the run's length).
    case free = 0
    /// First page of a slab: the descriptor is the slab's metadata.
    case slab = 1
    /// First page of a span: a run handed out whole (large objects).
    case span = 2
    /// A later page of a slab or span: `head` names the first page.
    case tail = 3
}

/// Which of its cache's lists a slab is on.
enum SlabListKind: UInt8 {
    case none = 0, empty = 1, partial = 2, full = 3
}

/// The out-of-band record of one page (Linux's `struct page`). For a slab head it
/// is the whole slab's metadata; objects never hold metadata except the encoded
/// free-list link inside a free object.
///
/// Fields by kind:
/// - free run (first and last page): `pages`; first page also `next`/`prev` (bin list).
/// - slab head: `pages`, `next`/`prev` (cache list), `list`, `color`, `inUse`,
///   `carved`, `freeHead` (encoded), `cache`.
/// - span head: `pages`, `cache` (0 for runs of the page allocator's own users).
/// - tail: `head`.
struct PageDescriptor {
    var kind: PageKind = .free
    var list: SlabListKind = .none
    /// Byte offset of object 0 from the slab's first byte (the slab's colour).
    var color: UInt16 = 0
    var pages: UInt32 = 0
    var head: PageNumber = .none
    var next: PageNumber = .none
    var prev: PageNumber = .none
    /// Objects of this slab that are allocated (handed out, or held by a per-CPU cache).
    var inUse: UInt32 = 0
    /// Objects `0 ..< carved` have been handed out at least once; the rest were never touched.
    var carved: UInt32 = 0
    /// Encoded address of the first free object (see FreeLink), 0 encoded when empty.
    var freeHead: UInt = 0
    /// Address of the owning cache's state.
    var cache: UInt = 0
}

/// Handle over the descriptor array. The only type that turns a page number into a
/// descriptor pointer.
struct PageMap {
    /// Sound because `Arena` reserved `pageCount` descriptors at this address and the
    /// arena outlives every handle.
    let base: UnsafeMutablePointer<PageDescriptor>
    let pageCount: Int

    init(arena: Arena) {
        base = UnsafeMutablePointer(bitPattern: arena.descriptorStart)!
        pageCount = arena.pageCount
    }

    @inline(__always)
    subscript(page: PageNumber) -> PageDescriptor {
        get { base[page.int] }
        nonmutating _modify { yield &base[page.int] }
        nonmutating set { base[page.int] = newValue }
    }

    /// The head (slab or span) that owns `page`, if `page` lies below `limit` (the
    /// bump pointer) and belongs to a live slab or span. A stale tail mark is
    /// rejected because the head it names no longer covers it.
    @inline(__always)
    func owner(of page: PageNumber, limit: PageNumber) -> PageNumber? {
        guard page < limit else { return nil }
        let d = self[page]
        switch d.kind {
        case .slab, .span:
            return page
        case .tail:
            let h = d.head
            guard h < page else { return nil }
            let hd = self[h]
            guard hd.kind == .slab || hd.kind == .span, page.raw - h.raw < hd.pages else { return nil }
            return h
        case .free:
            return nil
        }
    }

    /// Marks `page + 1 ..< page + count` as tails of `page`: O(count), paid once per slab or span.
    func markTails(of page: PageNumber, count: Int) {
        var i = 1
        while i < count {
            base[page.int + i] = PageDescriptor(kind: .tail, head: page)
            i += 1
        }
    }
}
