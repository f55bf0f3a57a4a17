// EpochReclaimerTests: deterministic scenarios of deferred freeing: critical sections and
// nesting, the two-advance rule, readers holding objects, the bound and stall reports,
// reservations, refused retires, and a simulated interrupt injected at every window.
// Neighbours: VirtualCPU (virtual CPUs, injected interrupts), LockFreeStackTests.

import QuarryScenarios
import Synchronization
import Testing

@testable import Quarry

/// What the stall hook saw (a @convention(c) hook cannot capture).
let stallHookCalls = Atomic<Int>(0)
let stallHookLastCPU = Atomic<Int>(-2)
let recordStall: EpochStallHook = { cpu, _ in
    stallHookCalls.add(1, ordering: .relaxed)
    stallHookLastCPU.store(cpu, ordering: .relaxed)
}

/// A registered thread (CPU 0), an arena and a Quarry over it; checks at the end that
/// every page came back.
func withEpochHeap(
    size: Int = 4 << 20, tuning: Tuning = .standard,
    _ body: (Quarry<ThreadPlatform<16>>) throws -> Void
) throws {
    VirtualCPU.register(cpu: 0)
    defer { VirtualCPU.unregister() }
    let arena = TestArena(size: size)
    defer { arena.release() }
    let q = try arena.quarry(on: ThreadPlatform<16>.self, tuning: tuning)
    let first = q.pageStatistics.pagesInUse
    try body(q)
    VirtualCPU.become(cpu: 0)
    q.shrink()
    q.checkInvariants()
    #expect(q.cacheCount == internalCaches, "every cache destroyed")
    #expect(q.pageStatistics.pagesInUse == first, "every page came back")
}

extension SlabCache {
    func isAllocated(_ p: UnsafeMutableRawPointer) -> Bool {
        isUserHeld(UInt(bitPattern: p))
    }
}

@Suite struct EpochReclaimerTests {
    /// Malloc blocks (issue 15, the C ABI's quarry_epoch_retire_block): a class block goes
    /// back to its class cache, a span through the front, both only after two advances
    /// past a reader; the invariant walk checks the waiting span; bad blocks are refused
    /// with the reason `free` gives, nothing retired.
    @Test func mallocBlocksOfEverySizeAreRetired() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 8)
            let f = q.front
            let small = try f.malloc(100)
            let span = try f.malloc(SizeClasses.largest + 1)
            let aligned = try f.alignedAlloc(alignment: 2 * Geometry.pageSize, size: 10)
            r.enter()
            try r.retire(block: small, from: f)
            try r.retire(block: span, from: f)
            try r.retire(block: aligned, from: f)
            #expect(throws: QuarryError.interiorPointer) { try r.retire(block: span + Geometry.pageSize, from: f) }
            r.checkInvariants()
            #expect(r.poll() == 0)
            #expect(try f.usableSize(span) == 9 * Geometry.pageSize, "still live while a reader may see it")
            #expect(f.statistics.liveSpans == 2)
            r.exit()
            r.synchronize()
            #expect(r.statistics.freed == 3 && r.statistics.pending == 0 && r.statistics.freeErrors == 0)
            #expect(f.statistics.liveSpans == 0)
            #expect(throws: QuarryError.doubleFree) { try r.retire(block: span, from: f) }
            #expect(throws: QuarryError.doubleFree) { try r.retire(block: small, from: f) }
            #expect(r.statistics(cpu: 0).pending == 0)
            r.checkInvariants()
            r.destroy()
            _ = f.shrink()  // the class cache of the 100-byte block
            _ = q.drainAll()
        }
    }

    @Test func criticalSectionsNestAndAnnounceOnce() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 8)
            #expect(!r.isInsideCriticalSection && !r.statistics(cpu: 0).inside)
            r.enter()
            let e = r.epoch
            #expect(r.statistics(cpu: 0).inside && r.statistics(cpu: 0).announcedEpoch == e)
            r.enter()
            #expect(r.tryAdvance() == .advanced(to: e + 1), "a reader that announced the current epoch does not block")
            r.exit()
            #expect(r.isInsideCriticalSection, "the inner exit keeps the outer section")
            #expect(r.statistics(cpu: 0).announcedEpoch == e, "nesting does not re-announce")
            #expect(r.tryAdvance() == .blocked(by: 0))
            #expect(r.stallingCPU == 0)
            r.exit()
            #expect(!r.statistics(cpu: 0).inside)
            #expect(r.stallingCPU == nil)
            #expect(r.tryAdvance() == .advanced(to: e + 2))
            r.checkInvariants()
            r.destroy()
        }
    }

    /// The `kfree_rcu` contract: an object retired while CPU 1 is inside a critical
    /// section stays allocated, untouched and never handed out again until CPU 1 leaves
    /// and the epoch advances twice.
    @Test func retiredObjectOutlivesTheReader() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 16)
            let c = try q.createCache(name: "obj", size: 64)
            let x = try c.allocate()
            Cookie.fill(x, size: 64, key: 0xC0FFEE)
            VirtualCPU.become(cpu: 1)
            r.enter()
            VirtualCPU.become(cpu: 0)
            let start = r.epoch
            try r.retire(x, to: c)
            for _ in 0..<20 { r.poll() }
            #expect(r.epoch == start + 1, "one advance, then CPU 1 blocks")
            #expect(r.stallingCPU == 1)
            #expect(c.isAllocated(x) && c.activeObjects == 1 && r.statistics.pending == 1)
            var others: [UnsafeMutableRawPointer] = []
            for _ in 0..<600 {
                let p = try c.allocate()
                #expect(p != x, "a retired object was handed out while a reader was inside")
                others.append(p)
            }
            #expect(Cookie.intact(x, size: 64, key: 0xC0FFEE), "nothing wrote into the retired object")
            r.checkInvariants()
            VirtualCPU.become(cpu: 1)
            r.exit()
            VirtualCPU.become(cpu: 0)
            // The first advance (start -> start + 1) happened while CPU 1 was inside: it
            // had announced `start`, which allows one. The second needs it gone.
            r.poll()
            #expect(r.epoch == start + 2)
            #expect(!c.isAllocated(x) && r.statistics.pending == 0 && r.statistics.freed == 1)
            for p in others { try c.free(p) }
            r.checkInvariants()
            r.destroy()
            #expect(c.destroy() == 0)
        }
    }

    /// Three buckets: objects retired in three consecutive epochs leave in epoch order,
    /// each two advances after its own epoch.
    @Test func bucketsLeaveInEpochOrder() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 16)
            let c = try q.createCache(name: "obj", size: 32)
            // Allocated up front: a freed object handed out again must not be mistaken
            // for one still waiting.
            var batches: [[UnsafeMutableRawPointer]] = []
            for _ in 0..<3 { batches.append(try (0..<3).map { _ in try c.allocate() }) }
            VirtualCPU.become(cpu: 1)
            r.enter()  // holds the epoch: each retire below sees the same epoch until we move it
            VirtualCPU.become(cpu: 0)
            for k in 0..<3 {
                for p in batches[k] { try r.retire(p, to: c) }
                // Epoch e + k: batch k - 2 (two behind) was freed by these retires.
                if k == 2 { #expect(batches[0].allSatisfy { !c.isAllocated($0) }) }
                #expect(batches[1].allSatisfy { c.isAllocated($0) })
                // Let the epoch move by one: CPU 1 re-announces the current epoch.
                VirtualCPU.become(cpu: 1)
                r.exit()
                r.enter()
                VirtualCPU.become(cpu: 0)
                #expect(r.tryAdvance() != .blocked(by: 1))
            }
            r.checkInvariants()
            // Now the epoch is e + 3: batch 1 (e + 1) is two behind, batch 2 (e + 2) one.
            r.poll()  // CPU 1 announced e + 2 and the epoch is e + 3: blocked; frees e + 1
            #expect(batches[0].allSatisfy { !c.isAllocated($0) })
            #expect(batches[1].allSatisfy { !c.isAllocated($0) })
            #expect(batches[2].allSatisfy { c.isAllocated($0) })
            VirtualCPU.become(cpu: 1)
            r.exit()
            VirtualCPU.become(cpu: 0)
            r.poll()
            #expect(batches[2].allSatisfy { !c.isAllocated($0) })
            #expect(r.statistics.pending == 0)
            r.checkInvariants()
            r.destroy()
            #expect(c.destroy() == 0)
        }
    }

    /// A reader that stays inside: retires on another CPU fill its backlog to the bound
    /// and are then refused, the stall is counted, reported through the hook and named
    /// by `stallingCPU`; memory never exceeds the bound; after the reader leaves
    /// everything is freed.
    @Test func stalledReaderIsReportedAndMemoryStaysBounded() throws {
        try withEpochHeap { q in
            let bound = 8
            stallHookCalls.store(0, ordering: .relaxed)
            let r = try q.createReclaimer(retiredPerCPU: bound, stallHook: recordStall)
            let c = try q.createCache(name: "obj", size: 48)
            VirtualCPU.become(cpu: 3)
            r.enter()
            VirtualCPU.become(cpu: 0)
            var accepted = 0
            var kept: [UnsafeMutableRawPointer] = []
            for _ in 0..<100 {
                let p = try c.allocate()
                do {
                    try r.retire(p, to: c)
                    accepted += 1
                } catch QuarryError.reclaimStalled {
                    kept.append(p)
                }
                #expect(r.statistics(cpu: 0).pending <= bound)
                #expect(c.activeObjects <= kept.count + bound, "retired objects exceed the bound")
            }
            let s = r.statistics
            #expect(accepted == bound, "exactly the bound is accepted while CPU 3 holds the epoch")
            #expect(kept.count == 100 - bound)
            #expect(s.stalls == UInt(kept.count) && s.refused == UInt(kept.count))
            #expect(s.lastStallingCPU == 3 && r.stallingCPU == 3)
            #expect(stallHookCalls.load(ordering: .relaxed) == kept.count)
            #expect(stallHookLastCPU.load(ordering: .relaxed) == 3)
            #expect(s.highWater == bound)
            r.checkInvariants()
            VirtualCPU.become(cpu: 3)
            r.exit()
            VirtualCPU.become(cpu: 0)
            for p in kept { try r.retire(p, to: c) }  // the reader left: retiring works again
            r.synchronize()
            #expect(r.statistics.pending == 0 && c.activeObjects == 0)
            r.checkInvariants()
            r.destroy()
            #expect(c.destroy() == 0)
        }
    }

    /// A CPU that retires more than the bound inside its own critical section stalls
    /// itself, and is named.
    @Test func aCPUCanStallItself() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 4)
            let c = try q.createCache(name: "obj", size: 16)
            r.enter()
            var kept: [UnsafeMutableRawPointer] = []
            for _ in 0..<10 {
                let p = try c.allocate()
                do { try r.retire(p, to: c) } catch QuarryError.reclaimStalled { kept.append(p) }
            }
            #expect(kept.count == 6)
            #expect(r.statistics.lastStallingCPU == 0)
            r.exit()
            for p in kept { try r.retire(p, to: c) }
            r.synchronize()
            #expect(c.activeObjects == 0)
            r.destroy()
            #expect(c.destroy() == 0)
        }
    }

    /// A critical section entered in an interrupt handler nests inside the interrupted
    /// one: the handler's exit does not withdraw the announcement, and an object the
    /// handler retires waits for the interrupted reader too.
    @Test func interruptHandlerSectionNestsInsideTheInterruptedOne() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 8)
            let c = try q.createCache(name: "obj", size: 32)
            let y = try c.allocate()
            r.enter()
            let announced = r.statistics(cpu: 0).announcedEpoch
            var handlerSawDepth = false
            VirtualCPU.injectInterrupt(atWindow: 0) {
                r.enter()
                handlerSawDepth = r.isInsideCriticalSection
                try? r.retire(y, to: c)
                r.exit()
            }
            _ = r.isInsideCriticalSection  // opens one window: the interrupt fires there
            VirtualCPU.stopInjecting()
            #expect(VirtualCPU.injectedInterrupts == 1 && handlerSawDepth)
            #expect(r.isInsideCriticalSection && r.statistics(cpu: 0).announcedEpoch == announced)
            VirtualCPU.become(cpu: 1)
            for _ in 0..<10 { r.poll() }
            VirtualCPU.become(cpu: 0)
            r.poll()
            #expect(c.isAllocated(y), "freed while the interrupted reader was inside")
            r.exit()
            r.synchronize()
            #expect(!c.isAllocated(y))
            r.destroy()
            #expect(c.destroy() == 0)
        }
    }

    /// Reservations hold slots; dropping one gives its slot back; a full backlog of
    /// reservations with no reader inside is reported with CPU -1.
    @Test func reservationsHoldSlotsUntilUsedOrDropped() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 4)
            let c = try q.createCache(name: "obj", size: 16)
            do {
                let a = try r.reserve()
                let b = try r.reserve()
                let d = try r.reserve()
                let e = try r.reserve()
                #expect(throws: QuarryError.reclaimStalled) { _ = try r.reserve() }
                #expect(r.statistics.lastStallingCPU == -1)
                let p = try c.allocate()
                try r.retire(p, to: c, using: a)
                _ = consume b
                _ = consume d
                _ = consume e
            }
            #expect(r.statistics.pending == 1)
            for _ in 0..<3 {
                let held = try r.reserve()
                _ = consume held
            }
            r.synchronize()
            #expect(r.statistics.pending == 0)
            do {
                // Dropped slots came back: the whole backlog can be reserved again.
                let w = try r.reserve()
                let x = try r.reserve()
                let y = try r.reserve()
                let z = try r.reserve()
                #expect(throws: QuarryError.reclaimStalled) { _ = try r.reserve() }
                _ = consume w
                _ = consume x
                _ = consume y
                _ = consume z
            }
            _ = try r.reserve()  // dropped at once
            #expect(c.activeObjects == 0)
            r.checkInvariants()
            r.destroy()
            #expect(c.destroy() == 0)
        }
    }

    /// Objects a cache did not hand out are refused with the cache's reason; nothing is queued.
    @Test func retireRefusesWhatTheCacheWouldRefuse() throws {
        try withEpochHeap { q in
            let r = try q.createReclaimer(retiredPerCPU: 8)
            let a = try q.createCache(name: "a", size: 64)
            let b = try q.createCache(name: "b", size: 64)
            let p = try a.allocate()
            let gone = try a.allocate()
            try a.free(gone)
            #expect(throws: QuarryError.wrongCache) { try r.retire(p, to: b) }
            #expect(throws: QuarryError.interiorPointer) { try r.retire(p + 8, to: a) }
            #expect(throws: QuarryError.misaligned) { try r.retire(p + 3, to: a) }
            #expect(throws: QuarryError.doubleFree) { try r.retire(gone, to: a) }
            #expect(r.statistics.pending == 0 && r.statistics.retired == 0)
            let slot = try r.reserve()  // refused retires gave their slots back
            _ = consume slot
            try r.retire(p, to: a)
            r.destroy()  // flush frees p at once: no CPU is inside
            #expect(a.activeObjects == 0)
            #expect(a.destroy() == 0 && b.destroy() == 0)
        }
    }

    /// A simulated interrupt whose handler pushes, pops and retires, injected at every
    /// window (every point where interrupts come back on) of a scripted sequence of
    /// stack and reclaimer calls: afterwards every invariant holds and every value
    /// pushed was popped exactly once.
    @Test func interruptInjectedAtEveryWindow() throws {
        var window = 0
        var fired = true
        while fired {
            try withEpochHeap(size: 2 << 20) { q in
                let r = try q.createReclaimer(retiredPerCPU: 4)
                let stack = try LockFreeStack.create(in: q, reclaimer: r)
                let plain = try q.createCache(name: "plain", size: 24)
                var popped: [UInt] = []
                var pushed: [UInt] = []
                VirtualCPU.injectInterrupt(atWindow: window) {
                    if (try? stack.push(1000)) != nil { pushed.append(1000) }
                    if let v = try? stack.pop() { popped.append(v) }
                    if let p = try? plain.allocate() {
                        r.enter()
                        if (try? r.retire(p, to: plain)) == nil { try? plain.free(p) }
                        r.exit()
                    }
                    r.poll()
                }
                for v: UInt in 1...3 {
                    try stack.push(v)
                    pushed.append(v)
                }
                for _ in 0..<2 { if let v = try stack.pop() { popped.append(v) } }
                let p = try plain.allocate()
                r.enter()
                try r.retire(p, to: plain)
                if let v = try stack.pop() { popped.append(v) }
                r.exit()
                r.poll()
                r.synchronize()
                fired = VirtualCPU.injectedInterrupts == 1
                VirtualCPU.stopInjecting()
                while let v = try stack.pop() { popped.append(v) }
                #expect(popped.sorted() == pushed.sorted(), "window \(window): pushed \(pushed), popped \(popped)")
                #expect(stack.cookieMismatches == 0)
                r.checkInvariants()
                q.checkInvariants()
                stack.destroy()
                r.destroy()
                #expect(plain.destroy() == 0, "window \(window)")
            }
            window += 1
        }
        #expect(window > 20, "the script has that many windows")
    }
}
