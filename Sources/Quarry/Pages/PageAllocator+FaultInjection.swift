// PageAllocator+FaultInjection: a test hook that makes the k-th page request fail, so
// every caller's out-of-memory path can be run on purpose. Checked builds only.
// Neighbours: PageAllocator (the countdown in `allocate`), Tests/QuarryTests/FaultInjectionTests,
// Tests/Fuzz (the fuzzer's fail-next-request operation).

extension Quarry {
    /// Makes the `k`-th page request from now fail (k >= 1) as if the arena were full:
    /// once, or with `repeating` that one and every later request until cancelled;
    /// `k == 0` cancels. A request is one call of `PageAllocator.allocate` (a new slab,
    /// a span; an aligned span is one request). Call at quiescence. Does nothing
    /// outside checked builds.
    @_spi(Testing)
    public func failPageRequest(after k: Int, repeating: Bool = false) {
        precondition(k >= 0, "Quarry: failPageRequest(after:) needs k >= 0")
        #if QUARRY_CHECKED
        heap.pointee.pages.withLock(P.self) { pages in
            pages.failCountdown = k
            pages.failRepeats = repeating && k > 0
        }
        #endif
    }

    /// Page requests failed by injection so far, and whether one is still pending.
    @_spi(Testing)
    public var injectedPageFailures: (count: Int, pending: Bool) {
        #if QUARRY_CHECKED
        return heap.pointee.pages.withLock(P.self) { p in (p.injectedFailures, p.failCountdown > 0) }
        #else
        return (0, false)
        #endif
    }
}
