// PageAllocator: bump allocation of pages and runs of pages, with free runs reused first.
// Neighbours: Arena and PageMap (page numbers and descriptors), AllocationBitmap (zeroed
// as the bump pointer advances), SlabCache (asks for slabs), Span (asks for aligned
// runs), Quarry (holds the lock).

import Synchronization

/// Pages `0 ..< bump` have been handed out at least once; pages `bump ..< pageCount`
/// (the wilderness) have never been touched, so start-up costs O(1) whatever the arena's
/// size. Runs given back are coalesced with free neighbours and kept in bins by length
/// (exact bins for 1...16 pages, one best-fit bin for longer runs); a run that reaches
/// the bump pointer is given back to the wilderness instead, so once everything is
/// freed the allocator is in its first state again (`bump == 0`).
///
/// Invariants (checked by `checkInvariants`):
/// - `0 <= bump <= pageCount`
/// - every page below `bump` belongs to exactly one slab, span or free run
/// - `freePages == Σ length of runs in bins`, and every free run is in the bin of its length
/// - no two free runs are adjacent, and no free run ends at `bump`
/// - a free run `[a, a+L)` has `map[a]` and `map[a+L-1]` both `.free` with `pages == L`, `head == a`
///
/// Concurrency: reached only through its lock (`HeapState.pages`, a SpinLocked: the page
/// lock), so every method runs under it. Descriptor words that pointer validation reads
/// without a lock (kind, length, head) are written through PageEntry's atomic stores;
/// see PageMap. As each lock scope ends it publishes `bump` to `HeapState.bumpLimit`.
struct PageAllocator {
    let map: PageMap
    let bitmap: AllocationBitmap
    let pageCount: Int
    private(set) var bump = PageNumber(0)
    /// Highest `bump` ever reached.
    private(set) var highWater = PageNumber(0)
    /// Pages in free runs (excluding the wilderness above `bump`).
    private(set) var freePages = 0
    private var bins = InlineArray<17, PageNumber>(repeating: .none)
    /// Bit i set iff bin i is non-empty.
    private var nonEmpty: UInt32 = 0
    private(set) var runsAllocated = 0
    private(set) var runsFreed = 0
    private(set) var failures = 0
    /// The malloc front's spans (runs handed out whole), counted here because the
    /// page lock guards them too.
    var spans = SpanCounters()
    #if QUARRY_CHECKED
    /// Fault injection (tests): when > 0, the request that brings it to 0 fails (and,
    /// with `failRepeats`, every later one, as if the arena were full from there on).
    var failCountdown = 0
    var failRepeats = false
    /// Requests failed by injection.
    var injectedFailures = 0
    #endif

    init(map: PageMap, bitmap: AllocationBitmap) {
        self.map = map
        self.bitmap = bitmap
        self.pageCount = map.pageCount
    }

    /// Pages handed out and not yet given back.
    var pagesInUse: Int { bump.int - freePages }

    @inline(__always)
    private static func bin(forLength n: Int) -> Int { n <= Geometry.exactRunBins ? n - 1 : Geometry.exactRunBins }

    /// Allocates `count` contiguous pages; nil when neither a free run nor the
    /// wilderness has room. The run leaves here as a span (first page `.span`, last
    /// page a tail), so that no neighbour's `free` can take its stale free-run tags
    /// for a free run before the caller turns it into a slab (which it does after
    /// releasing the page lock).
    mutating func allocate(_ count: Int) -> PageNumber? {
        precondition(count > 0, "Quarry: page run of zero pages")
        #if QUARRY_CHECKED
        if failCountdown > 0 {
            failCountdown -= 1
            if failCountdown == 0 {
                if failRepeats { failCountdown = 1 }
                injectedFailures += 1
                failures += 1
                return nil
            }
        }
        #endif
        if let run = takeFreeRun(atLeast: count) {
            let length = Int(map[run].pages)
            if length > count { insertRun(run + count, length - count) }
            markHandedOut(run, count)
            runsAllocated += 1
            return run
        }
        guard count <= pageCount - bump.int else {
            failures += 1
            return nil
        }
        let start = bump
        bitmap.zero(from: start, count: count)
        // First touch of a page: give its descriptor its first value. Pages below
        // `highWater` keep their last (atomically written) words; the caller rewrites them.
        var p = max(start, highWater)
        while p < start + count {
            map.initialize(p)
            p = p + 1
        }
        bump = start + count
        if highWater < bump { highWater = bump }
        markHandedOut(start, count)
        runsAllocated += 1
        return start
    }

    /// Allocates `count` contiguous pages whose first page `p` satisfies
    /// `(p + phase) % alignment == 0` (`alignment` a power of two, in pages): takes
    /// `count + alignment - 1` pages and gives the unaligned lead and the trail back
    /// (each counted as a run freed). nil when no such run fits.
    mutating func allocate(_ count: Int, alignment: Int, phase: Int) -> PageNumber? {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "Quarry: page alignment")
        if alignment == 1 { return allocate(count) }
        guard count <= pageCount, alignment <= pageCount - count + 1 else {
            failures += 1
            return nil
        }
        let total = count + alignment - 1
        guard let run = allocate(total) else { return nil }
        let lead = (alignment - ((run.int + phase) & (alignment - 1))) & (alignment - 1)
        let start = run + lead
        let trail = total - lead - count
        // Label the kept run first: the two frees below must not coalesce into it.
        markHandedOut(start, count)
        if lead > 0 { free(run, lead) }
        if trail > 0 { free(start + count, trail) }
        return start
    }

    /// The first and last page of a run handed out, labelled as a span: the only pages
    /// a neighbour's coalescing looks at.
    private func markHandedOut(_ start: PageNumber, _ count: Int) {
        map[start].setSpan(pages: count, head: start)
        if count > 1 { map[start + (count - 1)].setTail(head: start) }
    }

    /// Gives back `count` pages starting at `start`, coalescing with free neighbours.
    mutating func free(_ start: PageNumber, _ count: Int) {
        // The old head must not look like a live slab or span once it is inside a free run.
        map[start].setKind(.free)
        var s = start
        var n = count
        if s.raw > 0 {
            let left = map[PageNumber(s.raw - 1)]
            if left.kind == .free {
                let a = left.head
                removeRun(a)
                n += s.int - a.int
                s = a
            }
        }
        let r = s + n
        if r == bump {
            map[s].setKind(.free)
            bump = s
        } else {
            if map[r].kind == .free {
                let length = Int(map[r].pages)
                removeRun(r)
                n += length
            }
            insertRun(s, n)
        }
        runsFreed += 1
    }

    // MARK: Bins

    private mutating func takeFreeRun(atLeast count: Int) -> PageNumber? {
        if count <= Geometry.exactRunBins {
            let candidates = nonEmpty >> UInt32(count - 1)
            if candidates != 0 {
                let b = count - 1 + candidates.trailingZeroBitCount
                if b < Geometry.exactRunBins {
                    let run = bins[b]
                    removeRun(run)
                    return run
                }
            }
        }
        // Best fit among long runs (the lowest address among equals).
        var best = PageNumber.none
        var bestPages = Int.max
        var p = bins[Geometry.exactRunBins]
        while p != .none {
            let pages = Int(map[p].pages)
            if pages >= count && (pages < bestPages || (pages == bestPages && p < best)) {
                best = p
                bestPages = pages
            }
            p = map[p].next
        }
        guard best != .none else { return nil }
        removeRun(best)
        return best
    }

    private mutating func insertRun(_ start: PageNumber, _ length: Int) {
        let b = Self.bin(forLength: length)
        let last = start + (length - 1)
        map[last].setFreeRunTag(pages: length, head: start)
        map[start].setFreeRunTag(pages: length, head: start)
        map[start].next = bins[b]
        map[start].prev = .none
        if bins[b] != .none { map[bins[b]].prev = start }
        bins[b] = start
        nonEmpty |= 1 << UInt32(b)
        freePages += length
    }

    private mutating func removeRun(_ start: PageNumber) {
        let d = map[start]
        let length = Int(d.pages)
        let (next, prev) = (d.next, d.prev)
        let b = Self.bin(forLength: length)
        if prev != .none { map[prev].next = next } else { bins[b] = next }
        if next != .none { map[next].prev = prev }
        if bins[b] == .none { nonEmpty &= ~(1 << UInt32(b)) }
        d.next = .none
        d.prev = .none
        freePages -= length
    }
}

extension PageAllocator: LockedState {
    /// Publishes `bump` for the door's lock-free readers (`HeapState.bumpLimit`), under
    /// the page lock, as every lock scope ends: so `bumpLimit == bump` whenever the page
    /// lock is free, and a page is published only after its descriptor was written.
    @inline(__always)
    func lockScopeEnds(_ heap: UnsafeMutablePointer<HeapState>) {
        heap.pointee.bumpLimit.store(bump.raw, ordering: .releasing)
        heap.pointee.usedLimit.store(highWater.raw, ordering: .releasing)
    }
}

extension PageAllocator {
    /// Walks every page below `bump` and every bin; traps with a message on the first
    /// broken invariant. O(bump + free runs). Returns the spans met on the walk, for
    /// the caller's accounting.
    @discardableResult
    func checkInvariants() -> (spans: Int, spanPages: Int) {
        var spans = 0
        var spanPages = 0
        precondition(bump.int <= pageCount, "PageAllocator: bump beyond arena")
        var p = 0
        var walkedFree = 0
        var previousWasFree = false
        while p < bump.int {
            let d = map[PageNumber(p)]
            let length = Int(d.pages)
            precondition(length > 0 && p + length <= bump.int, "PageAllocator: run length out of range")
            switch d.kind {
            case .free:
                precondition(!previousWasFree, "PageAllocator: adjacent free runs")
                precondition(d.head.int == p, "PageAllocator: free run head tag")
                let tag = map[PageNumber(p + length - 1)]
                precondition(
                    tag.kind == .free && Int(tag.pages) == length && tag.head.int == p,
                    "PageAllocator: free run tail tag")
                walkedFree += length
                previousWasFree = true
            case .slab, .span:
                if d.kind == .span {
                    spans += 1
                    spanPages += length
                }
                var t = 1
                while t < length {
                    let td = map[PageNumber(p + t)]
                    precondition(td.kind == .tail && td.head.int == p, "PageAllocator: tail mark")
                    t += 1
                }
                previousWasFree = false
            case .tail:
                preconditionFailure("PageAllocator: tail page where a run should start")
            }
            p += length
        }
        precondition(!previousWasFree, "PageAllocator: free run touches the bump pointer")
        precondition(walkedFree == freePages, "PageAllocator: freePages disagrees with the page walk")
        var binned = 0
        for b in 0...Geometry.exactRunBins {
            var q = bins[b]
            var prev = PageNumber.none
            precondition((q != .none) == (nonEmpty & (1 << UInt32(b)) != 0), "PageAllocator: bin mask")
            while q != .none {
                let d = map[q]
                precondition(d.kind == .free && d.prev == prev, "PageAllocator: bin links")
                precondition(Self.bin(forLength: Int(d.pages)) == b, "PageAllocator: run in wrong bin")
                binned += Int(d.pages)
                prev = q
                q = d.next
            }
        }
        precondition(binned == freePages, "PageAllocator: bins disagree with freePages")
        return (spans, spanPages)
    }
}
