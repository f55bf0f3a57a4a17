// SpinLockedTests: the locks that own their state (SpinLocked) and the door from an address
// to its owner (PageMap.lookup), checked directly rather than through a free.
// Neighbours: Sources/Quarry/Platform/SpinLock.swift, CPUState.swift (the lock count), PageMap.swift.

import Synchronization
import Testing

@testable import Quarry

@Suite struct SpinLockedTests {
    /// This CPU's count of the Quarry locks it holds.
    private static func held(_ q: Quarry<ThreadPlatform<1>>) -> UInt32 { q.heap.pointee.cpuState(0).pointee.locksHeld }

    /// Each scope counts its lock from before it is taken until after it is given up,
    /// nested scopes count both, and nothing is left counted afterwards.
    @Test func scopesCountTheLocksHeld() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let heap = q.heap
        #expect(Self.held(q) == 0)
        heap.pointee.registry.withLock(ThreadPlatform<1>.self) { _ in
            let holds = heap.pointee.registry.isHeldByCurrentCPU(ThreadPlatform<1>.self)
            #expect(Self.held(q) == 1 && holds)
            heap.pointee.pages.withLock(ThreadPlatform<1>.self) { _ in #expect(Self.held(q) == 2) }
            #expect(Self.held(q) == 1)
        }
        let holds = heap.pointee.registry.isHeldByCurrentCPU(ThreadPlatform<1>.self)
        #expect(Self.held(q) == 0 && !holds)
    }

    /// A CPU that holds a Quarry lock only tries: `tryWithLock` refuses the lock it
    /// holds (the body does not run, nothing stays counted) and takes a free one;
    /// `.tryOnly` takes a free lock too.
    @Test func aCPUHoldingALockOnlyTries() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let heap = q.heap
        heap.pointee.pages.withLock(ThreadPlatform<1>.self) { _ in
            var ran = false
            let again: Void? = heap.pointee.pages.tryWithLock(ThreadPlatform<1>.self) { _ in ran = true }
            #expect(again == nil && !ran && Self.held(q) == 1)
            let caches: Int? = heap.pointee.registry.tryWithLock(ThreadPlatform<1>.self) { registry in registry.count }
            #expect(caches == internalCaches && Self.held(q) == 1)
        }
        let free: Int? = heap.pointee.pages.tryWithLock(ThreadPlatform<1>.self, .tryOnly) { pages in pages.pageCount }
        #expect(free == q.pageStatistics.pageCount && Self.held(q) == 0)
    }

    /// The page allocator publishes its bump pointer as each of its scopes ends: the
    /// lock-free readers' `bumpLimit` is its `bump` whenever the page lock is free.
    @Test func thePageAllocatorPublishesItsBump() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: Tuning(emptySlabReserve: 0))
        func published() -> Int { Int(q.heap.pointee.bumpLimit.load(ordering: .acquiring)) }
        let c = try q.createCache(name: "bump", size: 64)
        let p = try c.allocate()
        #expect(published() == q.pageStatistics.bump && published() > 0)
        let span = try q.front.malloc(SizeClasses.largest + 1)  // a span: Span.allocate
        #expect(published() == q.pageStatistics.bump)
        try q.front.free(span)
        try c.free(p)
        _ = q.drainAll()
        #expect(published() == q.pageStatistics.bump)
        q.checkInvariants()
    }

    /// The door names the head of every page of a span and of a multi-page slab, and
    /// the reason for what it refuses.
    @Test func theDoorNamesTheOwnerOfEveryPage() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: Tuning(maxObjectsPerSlab: 2, emptySlabReserve: 0))
        let heap = q.heap
        let spanBytes = SizeClasses.largest + 1  // a span, not a class object
        let span = UInt(bitPattern: try q.front.malloc(spanBytes))
        let spanPages = (spanBytes + Geometry.pageSize - 1) / Geometry.pageSize
        for k in 0..<spanPages {
            guard case .success(.span(let head)) = PageMap.lookup(span + UInt(k * Geometry.pageSize), in: heap) else {
                Issue.record("page \(k) of a span has no span owner")
                continue
            }
            #expect(heap.pointee.arena.address(of: head) == span)
        }
        guard case .failure(.misaligned) = PageMap.lookup(span + 1, in: heap) else {
            Issue.record("a misaligned address was not refused as such")
            return
        }
        let big = try q.createCache(name: "big", size: 5000)  // multi-page slabs
        let object = try big.allocate()
        let onTail = UInt(bitPattern: object) + UInt(Geometry.pageSize)  // inside it, on the slab's second page
        guard case .success(.slab(let head)) = PageMap.lookup(onTail, in: heap),
            case .success(let page) = big.locate(UInt(bitPattern: object))
        else {
            Issue.record("an address on a slab's tail page has no slab owner")
            return
        }
        #expect(head.page == page && head.entry.cache == UInt(bitPattern: big.state))
        guard case .failure(.interiorPointer) = big.locate(onTail) else {
            Issue.record("an interior address on a tail page was not refused as such")
            return
        }
        try q.front.free(UnsafeMutableRawPointer(bitPattern: span))
        guard case .failure(.freePage) = PageMap.lookup(span + UInt(Geometry.pageSize), in: heap) else {
            Issue.record("a freed span's page was not refused as a free page")
            return
        }
        try big.free(object)
        q.checkInvariants()
    }
}
