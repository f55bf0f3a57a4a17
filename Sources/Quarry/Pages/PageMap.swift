// PageMap: one PageDescriptor per data page, out of band; O(1) from an address to its slab.
// Neighbours: Arena (where the descriptors live), PageAllocator (free runs), Slab (slab heads);
// `PageMap.lookup`, the one door from an address to its owner, is entered by every caller
// that validates or resolves a pointer (SlabCache.locate, MallocFront, Quarry.cache(owning:)).

import Synchronization

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

/// Which of its cache's lists a slab is on. `quarantined`: its free list was found
/// corrupt; it is never allocated from again (SlabLayer, `quarantine`).
enum SlabListKind: UInt8 {
    case none = 0, empty = 1, partial = 2, full = 3, quarantined = 4
}

/// The out-of-band record of one page (Linux's `struct page`). For a slab head it
/// is the whole slab's metadata; objects never hold metadata except the encoded
/// free-list link inside a free object.
///
/// Fields by kind:
/// - free run (first and last page): `pages`, `head`; first page also `next`/`prev` (bin list).
/// - slab head: `pages`, `head`, `next`/`prev` (cache list), `list`, `color`, `inUse`,
///   `carved`, `freeHead` (encoded), `cache`.
/// - span head: `pages`, `head`, `cache` (0 for runs of the page allocator's own users).
/// - tail: `head`.
///
/// Concurrency. Two groups of words:
/// - **Shared words** (`shape` = kind and colour, `pages`, `head`, `carved`, `cache`):
///   pointer validation on free reads them with no lock, while another CPU may be
///   creating or releasing a slab on the same page. They are only ever read and
///   written as atomics (relaxed: plain `mov`s on x86; the kind is stored with release
///   and loaded with acquire ordering, also plain `mov`s). Writers still hold the lock
///   of the page's owner (page lock for free runs, cache lock for slabs), so the values
///   are as exact as before; lock-free readers get a possibly stale but never torn
///   word, and the allocation-bitmap RMW that follows validation is what decides a
///   free (see SlabCache.free).
/// - **Locked words** (`list`, `next`, `prev`, `inUse`, `freeHead`): plain fields,
///   read and written only under the lock of the page's owner.
///
/// The layout is spelled out as byte offsets (W = word size) and every field is
/// reached through a pointer to that field alone, never through a Swift access to
/// the whole record, so an access to one word can never overlap another CPU's
/// access to a different word of the same descriptor:
///
///     0 shape: UInt32 | 4 pages: UInt32 | 8 head: UInt32 | 12 carved: UInt32 |
///     16 cache: UInt | 16+W list: UInt8 | 20+W next: UInt32 | 24+W prev: UInt32 |
///     28+W inUse: UInt32 | 32+W freeHead: UInt        (stride 32 + 2W)
///
/// A descriptor is zeroed (plain stores) exactly once, when the bump pointer first
/// passes its page and before the page is published through `HeapState.bumpLimit`;
/// from then on its shared words see only atomic stores.
enum PageDescriptor {
    static let word = MemoryLayout<UInt>.stride
    static let shape = 0
    static let pages = 4
    static let head = 8
    static let carved = 12
    static let cache = 16
    static var list: Int { 16 + word }
    static var next: Int { 20 + word }
    static var prev: Int { 24 + word }
    static var inUse: Int { 28 + word }
    static var freeHead: Int { 32 + word }
    static var stride: Int { 32 + 2 * word }
}

/// Handle over the descriptor array. The only type that turns a page number into a
/// descriptor address.
struct PageMap {
    /// Sound because `Arena` reserved `pageCount` descriptors at this address and the
    /// arena outlives every handle.
    let base: UnsafeMutableRawPointer
    let pageCount: Int

    init(arena: Arena) {
        base = UnsafeMutableRawPointer(bitPattern: arena.descriptorStart)!
        pageCount = arena.pageCount
    }

    @inline(__always)
    subscript(page: PageNumber) -> PageEntry {
        PageEntry(base + page.int &* PageDescriptor.stride)
    }

    /// Gives `page`'s descriptor its first value (the bump pointer reached it for the
    /// first time; nobody can be reading it yet).
    func initialize(_ page: PageNumber) {
        // Sound: `PageDescriptor.stride` bytes reserved for this page, word aligned;
        // every field is an integer (or an atomic integer), for which zero is valid.
        let d = base + page.int &* PageDescriptor.stride
        var offset = 0
        while offset < PageDescriptor.stride {
            d.storeBytes(of: 0, toByteOffset: offset, as: UInt.self)
            offset += PageDescriptor.word
        }
        d.storeBytes(of: PageNumber.none.raw, toByteOffset: PageDescriptor.head, as: UInt32.self)
    }

    /// Marks `page + 1 ..< page + count` as tails of `page`: O(count), paid once per slab or span.
    func markTails(of page: PageNumber, count: Int) {
        var i = 1
        while i < count {
            self[page + i].setTail(head: page)
            i += 1
        }
    }
}

/// One descriptor, seen through its access rules: shared words through atomic loads
/// and stores, locked words as plain loads and stores, each at its own address.
/// A copyable pointer; copying it copies nothing of the descriptor.
struct PageEntry {
    let d: UnsafeMutableRawPointer

    @inline(__always) init(_ d: UnsafeMutableRawPointer) { self.d = d }

    @inline(__always)
    private func atomic32(_ offset: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        // Sound: a 4-byte-aligned UInt32 field of this descriptor, only ever accessed atomically.
        (d + offset).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    // Plain fields: raw loads and stores at the field's offset (aligned, see the
    // layout above). Not generic on purpose: a generic integer helper drags the
    // stdlib's BinaryInteger witness tables, and with them an Array, into the
    // Embedded build, which `-no-allocations` rejects.
    @inline(__always) private func load8(_ offset: Int) -> UInt8 { d.load(fromByteOffset: offset, as: UInt8.self) }
    @inline(__always) private func load32(_ offset: Int) -> UInt32 { d.load(fromByteOffset: offset, as: UInt32.self) }
    @inline(__always) private func loadWord(_ offset: Int) -> UInt { d.load(fromByteOffset: offset, as: UInt.self) }
    @inline(__always) private func store8(_ v: UInt8, _ offset: Int) {
        d.storeBytes(of: v, toByteOffset: offset, as: UInt8.self)
    }
    @inline(__always) private func store32(_ v: UInt32, _ offset: Int) {
        d.storeBytes(of: v, toByteOffset: offset, as: UInt32.self)
    }
    @inline(__always) private func storeWord(_ v: UInt, _ offset: Int) {
        d.storeBytes(of: v, toByteOffset: offset, as: UInt.self)
    }

    // MARK: Shared words (atomic, readable without a lock)

    /// The kind and colour word, loaded once (acquire) for callers that need both.
    var shape: UInt32 {
        @inline(__always) get { atomic32(PageDescriptor.shape).pointee.load(ordering: .acquiring) }
    }
    @inline(__always) static func kind(of shape: UInt32) -> PageKind {
        PageKind(rawValue: UInt8(truncatingIfNeeded: shape)) ?? .free
    }
    @inline(__always) static func color(of shape: UInt32) -> UInt { UInt(truncatingIfNeeded: shape >> 16) }

    var kind: PageKind {
        @inline(__always) get {
            PageKind(
                rawValue: UInt8(truncatingIfNeeded: atomic32(PageDescriptor.shape).pointee.load(ordering: .acquiring)))
                ?? .free
        }
    }
    /// Byte offset of object 0 from the slab's first byte (the slab's colour).
    var color: UInt16 {
        @inline(__always) get {
            UInt16(truncatingIfNeeded: atomic32(PageDescriptor.shape).pointee.load(ordering: .relaxed) >> 16)
        }
    }
    var pages: UInt32 {
        @inline(__always) get { atomic32(PageDescriptor.pages).pointee.load(ordering: .relaxed) }
    }
    var head: PageNumber {
        @inline(__always) get { PageNumber(atomic32(PageDescriptor.head).pointee.load(ordering: .relaxed)) }
    }
    var carved: UInt32 {
        @inline(__always) get { atomic32(PageDescriptor.carved).pointee.load(ordering: .relaxed) }
        @inline(__always) nonmutating set {
            atomic32(PageDescriptor.carved).pointee.store(newValue, ordering: .relaxed)
        }
    }
    var cache: UInt {
        @inline(__always) get {
            (d + PageDescriptor.cache).assumingMemoryBound(to: Atomic<UInt>.self).pointee.load(ordering: .relaxed)
        }
    }

    /// Sets the kind (the colour is cleared).
    @inline(__always)
    func setKind(_ kind: PageKind) {
        atomic32(PageDescriptor.shape).pointee.store(UInt32(kind.rawValue), ordering: .releasing)
    }

    /// Makes this page a tail of `head`.
    @inline(__always)
    func setTail(head: PageNumber) {
        atomic32(PageDescriptor.head).pointee.store(head.raw, ordering: .relaxed)
        atomic32(PageDescriptor.pages).pointee.store(0, ordering: .relaxed)
        setKind(.tail)
    }

    /// Makes this page the first or last page of a free run `[head, head + pages)`.
    @inline(__always)
    func setFreeRunTag(pages: Int, head: PageNumber) {
        setKind(.free)
        atomic32(PageDescriptor.pages).pointee.store(UInt32(pages), ordering: .relaxed)
        atomic32(PageDescriptor.head).pointee.store(head.raw, ordering: .relaxed)
    }

    /// Changes the length of a span in place (under the page lock).
    @inline(__always)
    func setPages(_ pages: UInt32) {
        atomic32(PageDescriptor.pages).pointee.store(pages, ordering: .relaxed)
    }

    /// Makes this page the head of a run of `pages` pages handed out whole.
    @inline(__always)
    func setSpan(pages: Int, head: PageNumber) {
        (d + PageDescriptor.cache).assumingMemoryBound(to: Atomic<UInt>.self).pointee.store(0, ordering: .relaxed)
        atomic32(PageDescriptor.pages).pointee.store(UInt32(pages), ordering: .relaxed)
        atomic32(PageDescriptor.head).pointee.store(head.raw, ordering: .relaxed)
        setKind(.span)
    }

    /// Makes this page the head of a new slab of `cache` (no objects carved, on no list).
    /// The kind is stored last with release ordering and read with acquire ordering
    /// (plain `mov`s on x86), so a lock-free reader that sees this slab's `.slab` also
    /// sees its cache, length and colour.
    func setSlabHead(color: Int, pages: Int, head: PageNumber, cache: UInt) {
        (d + PageDescriptor.cache).assumingMemoryBound(to: Atomic<UInt>.self).pointee.store(cache, ordering: .relaxed)
        atomic32(PageDescriptor.pages).pointee.store(UInt32(pages), ordering: .relaxed)
        atomic32(PageDescriptor.head).pointee.store(head.raw, ordering: .relaxed)
        atomic32(PageDescriptor.carved).pointee.store(0, ordering: .relaxed)
        list = .none
        next = .none
        prev = .none
        inUse = 0
        freeHead = 0
        atomic32(PageDescriptor.shape).pointee.store(
            UInt32(PageKind.slab.rawValue) | UInt32(color) << 16,
            ordering: .releasing)
    }

    // MARK: Locked words (plain; under the lock of the page's owner)

    var list: SlabListKind {
        @inline(__always) get { SlabListKind(rawValue: load8(PageDescriptor.list)) ?? .none }
        @inline(__always) nonmutating set { store8(newValue.rawValue, PageDescriptor.list) }
    }
    var next: PageNumber {
        @inline(__always) get { PageNumber(load32(PageDescriptor.next)) }
        @inline(__always) nonmutating set { store32(newValue.raw, PageDescriptor.next) }
    }
    var prev: PageNumber {
        @inline(__always) get { PageNumber(load32(PageDescriptor.prev)) }
        @inline(__always) nonmutating set { store32(newValue.raw, PageDescriptor.prev) }
    }
    var inUse: UInt32 {
        @inline(__always) get { load32(PageDescriptor.inUse) }
        @inline(__always) nonmutating set { store32(newValue, PageDescriptor.inUse) }
    }
    var freeHead: UInt {
        @inline(__always) get { loadWord(PageDescriptor.freeHead) }
        @inline(__always) nonmutating set { storeWord(newValue, PageDescriptor.freeHead) }
    }
}

/// The first page of the slab that holds an address, as the door (`PageMap.lookup`) names it.
struct SlabHead {
    let entry: PageEntry
    /// Address of object 0 of the slab (page start plus colour).
    let first: UInt
    /// The slab's first page.
    let page: PageNumber
}

/// What owns an address, as the page map says (`PageMap.lookup`): a live slab (its head)
/// or a live span (its first page). Whether the address is an object of that slab's
/// cache is the cache's question (`SlabCache.locate(_:in:)`).
enum PageOwner {
    case slab(SlabHead)
    case span(PageNumber)
}

extension PageMap {
    /// The one door from an address to its owner: the slab or span whose pages hold
    /// `address`, or the reason there is none: `.misaligned` (not granule-aligned),
    /// `.outsideArena`, `.metadataPointer` (the header and metadata before the first
    /// data page), `.freePage` (at or above the bump limit, a free page, or a stale tail
    /// mark whose head no longer covers it). Every caller that turns an address into
    /// its owner comes through here, and one that already has the owner hands it on.
    ///
    /// Lock-free: reads the bump limit and the shared words of page descriptors with
    /// atomic loads (see PageDescriptor), never a word another CPU writes non-atomically;
    /// each descriptor's kind-and-colour word is loaded once. Exact at quiescence; while
    /// another CPU creates or releases a slab on the page the answer may be stale, and
    /// whatever the caller does next (the bitmap RMW of a free, the page lock of a span
    /// free) decides.
    ///
    /// Inline only for its first step (`slabHead(of:in:)`, the hit paths' case: the
    /// first page of a slab); everything else, with the one walk from a tail page to its
    /// head, is `lookupMiss`, out of line.
    @inline(__always)
    static func lookup(_ address: UInt, in heap: UnsafeMutablePointer<HeapState>) -> Result<PageOwner, QuarryError> {
        if let head = slabHead(of: address, in: heap) { return .success(.slab(head)) }
        return lookupMiss(address, in: heap)
    }

    /// The first step of `lookup`, for the hit paths: the slab head whose first page
    /// holds `address`, if `address` is granule-aligned, in a data page below the bump
    /// limit, and that page is a slab head; nil for anything else (a tail page of a
    /// multi-page slab included: the callers' checked paths then ask `lookup`, which
    /// names the reason). No call: one subtract and compare for the arena, an acquiring
    /// load of the bump limit, one acquiring load of the descriptor's kind-and-colour word.
    @inline(__always)
    static func slabHead(of address: UInt, in heap: UnsafeMutablePointer<HeapState>) -> SlabHead? {
        let dataOffset = address &- heap.pointee.arena.dataStart
        guard address & UInt(Geometry.granule - 1) == 0, dataOffset < heap.pointee.arena.dataBytes else { return nil }
        let page = PageNumber(UInt32(truncatingIfNeeded: dataOffset >> UInt(Geometry.pageShift)))
        guard page.raw < heap.pointee.bumpLimit.load(ordering: .acquiring) else { return nil }
        let d = heap.pointee.map[page]
        let shape = d.shape
        guard PageEntry.kind(of: shape) == .slab else { return nil }
        return SlabHead(
            entry: d, first: (address & ~UInt(Geometry.pageSize - 1)) &+ PageEntry.color(of: shape), page: page)
    }

    /// `lookup` when its first step did not find a slab head: the whole question again,
    /// naming the reason, and the only walk from a tail page to its head. A tail mark
    /// counts only if its head is below it, is a live slab or span, and still covers
    /// it (a span shrunk in place leaves stale marks behind).
    @inline(never)
    static func lookupMiss(_ address: UInt, in heap: UnsafeMutablePointer<HeapState>) -> Result<PageOwner, QuarryError>
    {
        guard address & UInt(Geometry.granule - 1) == 0 else { return .failure(.misaligned) }
        let page: PageNumber
        switch heap.pointee.arena.classify(address) {
        case .outside: return .failure(.outsideArena)
        case .metadata: return .failure(.metadataPointer)
        case .page(let p): page = p
        }
        guard page.raw < heap.pointee.bumpLimit.load(ordering: .acquiring) else { return .failure(.freePage) }
        let map = heap.pointee.map
        var head = page
        var d = map[page]
        var shape = d.shape
        switch PageEntry.kind(of: shape) {
        case .slab, .span:
            break
        case .free:
            return .failure(.freePage)
        case .tail:
            head = d.head
            guard head < page else { return .failure(.freePage) }
            d = map[head]
            shape = d.shape
            let kind = PageEntry.kind(of: shape)
            guard kind == .slab || kind == .span, page.raw &- head.raw < d.pages else { return .failure(.freePage) }
        }
        guard PageEntry.kind(of: shape) == .slab else { return .success(.span(head)) }
        return .success(
            .slab(
                SlabHead(
                    entry: d, first: heap.pointee.arena.address(of: head) &+ PageEntry.color(of: shape),
                    page: head)))
    }
}
