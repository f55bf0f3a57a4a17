// EpochLifecycleTests: the life cycle of an EpochReclaimer and a LockFreeStack around
// their common paths: creation with the k-th page request failing (every undo path),
// destroy with values left, an object retired twice, critical sections through
// `withCriticalSection` (also when its body throws).
// Neighbours: EpochReclaimerTests and LockFreeStackTests (the deferred-freeing scenarios),
// FaultInjectionTests (the same hook on a general workload), ThreadPlatform.

import Testing

@_spi(Testing) @testable import Quarry

@Suite struct EpochLifecycleTests {
    /// Runs `create` with the k-th page request and every later one failing (`repeating`:
    /// a single failure would be absorbed, since an allocation reclaims and tries again
    /// before it fails), for k = 1, 2, ... until `create` makes fewer than k requests. After each run (the made thing destroyed by
    /// `destroy`) the heap must be as before: no new cache, every page back after a
    /// shrink, every invariant. Returns the refusals seen; each must be `.outOfMemory`.
    static func everyPageFailure<T>(
        _ q: Quarry<ThreadPlatform<16>>, create: () throws(QuarryError) -> T, destroy: (T) -> Void
    ) -> [QuarryError] {
        q.shrink()
        let caches = q.cacheCount
        let pages = q.pageStatistics.pagesInUse
        var refusals: [QuarryError] = []
        var k = 1
        while true {
            let injected = q.injectedPageFailures.count
            q.failPageRequest(after: k, repeating: true)
            do throws(QuarryError) {
                let made = try create()
                destroy(made)
            } catch {
                refusals.append(error)
            }
            let reached = q.injectedPageFailures.count > injected
            q.failPageRequest(after: 0)
            q.shrink()
            #expect(q.cacheCount == caches, "k = \(k): a failed creation leaves no cache behind")
            #expect(q.pageStatistics.pagesInUse == pages, "k = \(k): every page came back")
            q.checkInvariants()
            if !reached { break }
            k += 1
        }
        return refusals
    }

    /// Each page request of `createReclaimer` (its two caches, the state, one ring per
    /// CPU: 16 on ThreadPlatform<16>) can fail; each failure is `.outOfMemory` and undoes
    /// what was made before it: the rings already taken, the state, both caches.
    @Test func reclaimerCreationUndoesEveryStep() throws {
        try withEpochHeap(size: 8 << 20) { q in
            // 256 retired objects per CPU: 4 KiB rings, so the rings take several slabs
            // and a failure can land after some rings were taken.
            let refusals = Self.everyPageFailure(
                q,
                create: { () throws(QuarryError) in
                    try q.createReclaimer(retiredPerCPU: 256)
                }, destroy: { r in r.destroy() })
            #expect(refusals.allSatisfy { $0 == .outOfMemory }, "\(refusals)")
            #expect(refusals.count >= 3, "a refusal for each request (the state, the rings): \(refusals.count)")
        }
    }

    /// `LockFreeStack.create`: its node cache, then the anchor node. A failure at the
    /// anchor destroys the node cache again.
    @Test func stackCreationUndoesTheNodeCache() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 16)
            let refusals = Self.everyPageFailure(
                q,
                create: { () throws(QuarryError) in
                    try LockFreeStack.create(in: q, reclaimer: r)
                }, destroy: { stack in #expect(stack.destroy() == 0) })
            #expect(!refusals.isEmpty && refusals.allSatisfy { $0 == .outOfMemory }, "\(refusals)")
            r.destroy()
        }
    }

    /// `destroy` frees the nodes still on the stack and says how many there were;
    /// `isEmpty` follows pushes and pops.
    @Test func destroyReturnsTheValuesLeft() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 16)
            let stack = try LockFreeStack.create(in: q, reclaimer: r)
            #expect(stack.isEmpty)
            for v in 1...5 as ClosedRange<UInt> { try stack.push(v) }
            #expect(!stack.isEmpty)
            #expect(try stack.pop() == 5)
            #expect(stack.nodes.activeObjects == 6, "the anchor, four nodes, and the popped one, retired")
            #expect(stack.cookieMismatches == 0)
            #expect(stack.destroy() == 4)
            #expect(r.statistics.pending == 0, "destroy flushed the retired node")
            #expect(q.cacheCount == internalCaches + 2, "the node cache is gone, the reclaimer's two stay")
            r.destroy()
        }
    }

    /// Retiring one object twice is a double free in slow motion: both retires are
    /// accepted (the object is still allocated until the first is freed), the second
    /// free is refused by the cache, and the reclaimer counts it in `freeErrors`.
    @Test func anObjectRetiredTwiceIsCountedAsAFreeError() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 8)
            let c = try q.createCache(name: "twice", size: 64)
            let p = try c.allocate()
            try r.retire(p, to: c)
            try r.retire(p, to: c)
            r.synchronize()
            let s = r.statistics
            #expect(s.retired == 2 && s.freed == 2 && s.pending == 0)
            #expect(s.freeErrors == 1 && r.statistics(cpu: 0).freeErrors == 1)
            #expect(c.statistics.count(of: .doubleFree) == 1, "the cache saw the second free")
            #expect(c.activeObjects == 0)
            r.checkInvariants()
            r.destroy()
            #expect(c.destroy() == 0)
        }
    }

    /// `withCriticalSection` is `enter` and `exit` around its body, nesting like them,
    /// and leaves the section when the body throws.
    @Test func withCriticalSectionEntersAndAlwaysExits() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 8)
            #expect(r.capacity == 8)
            let e = r.epoch
            let inner: Bool = r.withCriticalSection {
                #expect(r.isInsideCriticalSection)
                #expect(r.tryAdvance() == .advanced(to: e + 1), "the section announced epoch e")
                #expect(r.tryAdvance() == .blocked(by: 0), "and holds it back now")
                return r.withCriticalSection { r.statistics(cpu: 0).announcedEpoch == e }
            }
            #expect(inner, "the nested section did not announce again")
            #expect(!r.isInsideCriticalSection)
            #expect(throws: QuarryError.busy) {
                try r.withCriticalSection { () throws(QuarryError) in throw .busy }
            }
            #expect(!r.isInsideCriticalSection, "a throwing body still exits")
            #expect(r.tryAdvance() == .advanced(to: e + 2))
            r.checkInvariants()
            r.destroy()
        }
    }
}
