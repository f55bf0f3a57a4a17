// Arena: the static region Quarry manages, and the arithmetic between addresses and pages.
// Neighbours: Quarry (lays the arena out at initialize), PageMap and AllocationBitmap
// (the metadata at its start), PageAllocator (hands out its pages).

/// Index of a page among the arena's data pages (0 is the first page after the metadata).
struct PageNumber: Equatable, Comparable {
    var raw: UInt32
    @inline(__always) init(_ raw: UInt32) { self.raw = raw }
    @inline(__always) init(_ value: Int) { self.raw = UInt32(truncatingIfNeeded: value) }
    /// The end-of-list marker in intrusive page lists.
    static let none = PageNumber(UInt32.max)
    @inline(__always) var int: Int { Int(raw) }
    @inline(__always) static func < (a: PageNumber, b: PageNumber) -> Bool { a.raw < b.raw }
    @inline(__always) static func + (a: PageNumber, n: Int) -> PageNumber { PageNumber(a.int + n) }
}

/// The region given to `Quarry.initialize`, laid out as
///
///     regionStart                                           dataStart                 end
///     | HeapState | PageDescriptor x pageCount | bitmap x pageCount | page 0 | ... | page N-1 |
///
/// Only the `HeapState` is written at start-up: descriptors and bitmap bytes of a
/// page are written when the bump pointer first passes that page (O(1) start-up).
///
/// Invariants: `dataStart % pageSize == 0`; `end == dataStart + pageCount * pageSize`;
/// `metadataStart + pageCount * (descriptor stride + bitmapBytesPerPage) <= dataStart`.
struct Arena {
    /// First byte Quarry uses (page-aligned up from the caller's base).
    let regionStart: UInt
    /// Start of the page descriptors.
    let descriptorStart: UInt
    /// Start of the allocation bitmap.
    let bitmapStart: UInt
    /// First data page.
    let dataStart: UInt
    /// Number of data pages.
    let pageCount: Int
    /// Bytes of data pages (`pageCount * pageSize`).
    let dataBytes: UInt

    var end: UInt { dataStart &+ dataBytes }

    /// Lays out `[base, base + size)`; nil when it cannot hold the heap state, its
    /// metadata and at least one data page.
    init?(base: UInt, size: UInt, headerBytes: Int) {
        let page = UInt(Geometry.pageSize)
        let mask = page - 1
        guard base <= UInt.max - mask else { return nil }
        let start = (base + mask) & ~mask
        let (rawEnd, overflow) = base.addingReportingOverflow(size)
        let end = (overflow ? UInt.max : rawEnd) & ~mask
        guard end > start else { return nil }
        let header = (UInt(headerBytes) + UInt(Geometry.cacheLine) - 1) & ~UInt(Geometry.cacheLine - 1)
        let perPageMeta = UInt(PageDescriptor.stride + Geometry.bitmapBytesPerPage)
        let total = end - start
        guard total > header + page + perPageMeta else { return nil }
        var pages = (total - header) / (page + perPageMeta)
        pages = min(pages, UInt(UInt32.max - 1))
        func dataStart(_ n: UInt) -> UInt {
            (start + header + n * perPageMeta + mask) & ~mask
        }
        while pages > 0 && dataStart(pages) + pages * page > end { pages -= 1 }
        guard pages > 0 else { return nil }
        regionStart = start
        descriptorStart = start + header
        bitmapStart = descriptorStart + pages * UInt(PageDescriptor.stride)
        self.dataStart = dataStart(pages)
        pageCount = Int(pages)
        dataBytes = pages << UInt(Geometry.pageShift)
    }

    /// Where `address` falls: a data page, the metadata, or outside.
    @inline(__always)
    func classify(_ address: UInt) -> Location {
        let offset = address &- dataStart
        if offset < dataBytes {
            return .page(PageNumber(UInt32(truncatingIfNeeded: offset >> UInt(Geometry.pageShift))))
        }
        return isMetadata(address) ? .metadata : .outside
    }

    /// True for an address in the header and metadata before the first data page.
    @inline(__always)
    func isMetadata(_ address: UInt) -> Bool { address &- regionStart < dataStart &- regionStart }

    enum Location: Equatable {
        case page(PageNumber)
        case metadata
        case outside
    }

    @inline(__always)
    func address(of page: PageNumber) -> UInt {
        dataStart &+ UInt(truncatingIfNeeded: page.raw) << UInt(Geometry.pageShift)
    }
}
