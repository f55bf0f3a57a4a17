// Depot: a cache's shared stacks of full and of empty magazines (Bonwick 2001; Linux's "barn").
// Neighbours: Magazine (what it stacks), CacheState (holds it behind its lock, `depot`),
// SlabCache+PerCPU (exchanges a CPU's magazines with it), SlabCache+Drain (empties it).

/// Two intrusive stacks linked through `MagazineHeader.next` (allocator-owned memory,
/// never user memory, so no link is ever a word a user can write).
///
/// Concurrency: reached only through its lock (`CacheState.depot`, a SpinLocked), so
/// every method runs under it.
///
/// Invariants (checked by SlabCache.checkInvariants):
/// - `fullCount == |full stack|`, `emptyCount == |empty stack|`
/// - every magazine on the full stack is full; every one on the empty stack is empty
/// - `fullCount <= Tuning.depotFullLimit`
/// - `emptyCount <= Tuning.depotEmptyLimit` unless the cache's `trimNeeded` flag is set
///   (a re-entrant call may not free magazines; the next ordinary slow path trims)
struct Depot: LockedState {
    private(set) var full: Magazine? = nil
    private(set) var empty: Magazine? = nil
    private(set) var fullCount = 0
    private(set) var emptyCount = 0

    mutating func pushFull(_ m: Magazine) {
        m.next = full
        full = m
        fullCount += 1
    }

    mutating func popFull() -> Magazine? {
        guard let m = full else { return nil }
        full = m.next
        m.next = nil
        fullCount -= 1
        return m
    }

    mutating func pushEmpty(_ m: Magazine) {
        m.next = empty
        empty = m
        emptyCount += 1
    }

    mutating func popEmpty() -> Magazine? {
        guard let m = empty else { return nil }
        empty = m.next
        m.next = nil
        emptyCount -= 1
        return m
    }

    /// Detaches both stacks (for drain): the depot is empty afterwards and the caller
    /// owns the returned chains (linked through `next`).
    mutating func takeAll() -> (full: Magazine?, empty: Magazine?) {
        let chains = (full, empty)
        full = nil
        empty = nil
        fullCount = 0
        emptyCount = 0
        return chains
    }

    /// Calls `body` with every magazine, full ones first, and whether it is on the full stack.
    func forEach(_ body: (Magazine, Bool) -> Void) {
        var m = full
        while let x = m {
            body(x, true)
            m = x.next
        }
        m = empty
        while let x = m {
            body(x, false)
            m = x.next
        }
    }
}
