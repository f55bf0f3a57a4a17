// Span: a run of pages handed out whole, for one allocation larger than the largest
// size class or aligned beyond the page size. Neighbours: PageAllocator (the pages),
// PageMap (the span's head descriptor, `kind == .span`), MallocFront (its only user).

import Synchronization

/// Counters of the live spans. Kept in the PageAllocator record and guarded by the
/// heap's page lock.
///
/// Invariants (checked by `Quarry.checkInvariants` against a walk of the page map):
/// `live ==` number of span heads below the bump pointer; `pages == Σ` their lengths.
struct SpanCounters {
    var live = 0
    var pages = 0
    var allocations: UInt64 = 0
    var frees: UInt64 = 0
    /// Span allocations refused for lack of memory.
    var failures: UInt64 = 0
}

/// A handle on a live span: its head page. The span's first byte is the address
/// handed to the user (spans carry no header); its length is `map[page].pages`.
///
/// Layout: `| head page (descriptor: .span, pages = n) | tail | ... | tail |`, the head
/// descriptor's `cache` is 0. Nothing else is stored: a span is as long as the user's
/// request rounded up to pages.
struct Span<P: Platform> {
    let heap: UnsafeMutablePointer<HeapState>
    let page: PageNumber

    @inline(__always)
    init(heap: UnsafeMutablePointer<HeapState>, page: PageNumber) {
        self.heap = heap
        self.page = page
    }

    /// Length in pages.
    var pages: Int { Int(heap.pointee.map[page].pages) }
    var address: UInt { heap.pointee.arena.address(of: page) }
    var byteCount: Int { pages << Geometry.pageShift }

    /// Pages for `byteCount` bytes (at least one), or nil when the arena could never
    /// hold them. No overflow for any `byteCount >= 0`.
    static func pages(for byteCount: Int, heap: UnsafeMutablePointer<HeapState>) -> Int? {
        let mask = Geometry.pageSize - 1
        let pages = max((byteCount >> Geometry.pageShift) + (byteCount & mask != 0 ? 1 : 0), 1)
        return pages <= heap.pointee.arena.pageCount ? pages : nil
    }

    /// Takes `pages` pages whose first byte is aligned to `alignment` (a power of two,
    /// at least the page size), labels them as a span and counts it.
    static func allocate(
        pages: Int, alignment: Int, heap: UnsafeMutablePointer<HeapState>
    ) -> Result<Span, QuarryError> {
        let alignPages = max(alignment >> Geometry.pageShift, 1)
        guard alignPages <= heap.pointee.arena.pageCount else { return .failure(.sizeTooLarge) }
        // Page p is aligned iff (p + phase) % alignPages == 0.
        let phase = Int(heap.pointee.arena.dataStart >> UInt(Geometry.pageShift)) & (alignPages - 1)
        // A re-entrant call (its CPU holds a Quarry lock) only tries the page lock.
        let map = heap.pointee.map
        let taken = heap.pointee.pages.tryWithLock(P.self) { allocator -> PageNumber? in
            let page = allocator.allocate(pages, alignment: alignPages, phase: phase)
            if let page {
                map[page].setSpan(pages: pages, head: page)
                map.markTails(of: page, count: pages)
                allocator.spans.live += 1
                allocator.spans.pages += pages
                allocator.spans.allocations += 1
            } else {
                allocator.spans.failures += 1
            }
            return page
        }
        guard let page = taken ?? nil else { return .failure(.outOfMemory) }
        AddressSanitizer.unpoison(heap.pointee.arena.address(of: page), pages << Geometry.pageShift)
        return .success(Span(heap: heap, page: page))
    }

    /// Gives the whole span back to the page allocator; the handle becomes invalid.
    /// Re-checks under the page lock that the head is still a span, so that two
    /// racing frees of one span give back its pages once (the loser gets `.doubleFree`).
    /// A re-entrant call that finds the page lock held gets `.busy` (nothing changed).
    func free() -> QuarryError? {
        let result = heap.pointee.pages.tryWithLock(P.self) { allocator -> QuarryError? in
            // Another CPU freed it since the caller resolved it: freed twice.
            guard heap.pointee.map[page].kind == .span else { return .doubleFree }
            let n = pages
            AddressSanitizer.poison(heap.pointee.arena.address(of: page), n << Geometry.pageShift)
            allocator.free(page, n)
            allocator.spans.live -= 1
            allocator.spans.pages -= n
            allocator.spans.frees += 1
            return nil
        }
        guard let result else { return .busy }
        return result
    }

    /// Shortens the span in place to `newPages` (`1 ..< pages`), giving the trailing
    /// pages back. Their stale tail marks name this head, which no longer covers them,
    /// so the page map stops resolving them at once.
    /// A re-entrant call that finds the page lock held leaves the span as it is (it is
    /// still long enough).
    func shrink(to newPages: Int) {
        _ = heap.pointee.pages.tryWithLock(P.self) { allocator in
            let n = pages
            precondition(newPages > 0 && newPages < n, "Span: shrink outside 1 ..< pages")
            heap.pointee.map[page].setPages(UInt32(newPages))
            AddressSanitizer.poison(
                heap.pointee.arena.address(of: page + newPages), (n - newPages) << Geometry.pageShift)
            allocator.free(page + newPages, n - newPages)
            allocator.spans.pages -= n - newPages
        }
    }
}
