// SlabList: an intrusive doubly-linked list of slabs, linked through their head descriptors.
// Neighbours: PageMap (holds the links), SlabCache (owns four lists: partial, full, empty,
// quarantined).

/// Invariant: `count` equals the number of slabs reachable from `head`, each with
/// `list == kind`, with `prev` links mirroring `next` links.
struct SlabList {
    let kind: SlabListKind
    private(set) var head = PageNumber.none
    private(set) var count = 0

    init(kind: SlabListKind) { self.kind = kind }

    mutating func push(_ page: PageNumber, _ map: PageMap) {
        map[page].next = head
        map[page].prev = .none
        map[page].list = kind
        if head != .none { map[head].prev = page }
        head = page
        count += 1
    }

    mutating func remove(_ page: PageNumber, _ map: PageMap) {
        let d = map[page]
        precondition(d.list == kind, "SlabList: slab is not on this list")
        if d.prev != .none { map[d.prev].next = d.next } else { head = d.next }
        if d.next != .none { map[d.next].prev = d.prev }
        map[page].list = .none
        count -= 1
    }

    /// `check` that reports instead of trapping (`SlabCache.validate`): calls `body`
    /// with each slab while the links and kinds hold, and returns nil, or the first
    /// slab where they do not (its predecessor when a link leaves the page map, the
    /// last slab reached when the count disagrees; `.none` when there is none).
    /// At most `count + 1` steps.
    func walk(_ map: PageMap, _ body: (PageNumber) -> Void) -> PageNumber? {
        var p = head
        var prev = PageNumber.none
        var n = 0
        while p != .none {
            guard p.int < map.pageCount else { return prev }
            let d = map[p]
            guard n < count, d.kind == .slab, d.list == kind, d.prev == prev else { return p }
            body(p)
            n += 1
            prev = p
            p = d.next
        }
        return n == count ? nil : prev
    }

    /// Walks the list, checking links and kinds; returns the slabs for the caller's own checks.
    func check(_ map: PageMap, _ body: (PageNumber) -> Void) {
        var p = head
        var prev = PageNumber.none
        var n = 0
        while p != .none {
            let d = map[p]
            precondition(d.kind == .slab && d.list == kind && d.prev == prev, "SlabList: links")
            body(p)
            n += 1
            prev = p
            p = d.next
        }
        precondition(n == count, "SlabList: count")
    }
}
