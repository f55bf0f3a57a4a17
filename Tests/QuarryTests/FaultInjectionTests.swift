// FaultInjectionTests: a fixed workload (several caches, the malloc front with spans and
// realloc, per-CPU magazines under Tuning.tiny) run with the k-th page request failing,
// for k = 1, 2, 3, ... until the workload runs through without reaching the k-th request.
// Neighbours: PageAllocator+FaultInjection (the hook), Tests/Scenarios/TestRandom.swift (cookies), ThreadPlatform.

import QuarryScenarios
import Testing

@_spi(Testing) @testable import Quarry

@Suite("Fault injection")
struct FaultInjectionTests {
    /// What one run of the workload saw.
    struct Outcome {
        var errors = 0
        var unexpected: [String] = []
        var steps = 0
    }

    /// One deterministic workload. Every refusal must be `.outOfMemory`; a refused
    /// operation must change nothing (a failed realloc leaves its block intact). Ends by
    /// freeing everything, destroying the caches, draining and shrinking.
    static func workload(_ q: Quarry<ThreadPlatform<1>>) -> Outcome {
        var out = Outcome()
        var rng = SeededGenerator(seed: 0xFA17)
        var cookie: UInt64 = 1
        func note(_ e: QuarryError, _ what: String) {
            if e == .outOfMemory { out.errors += 1 } else { out.unexpected.append("\(what): \(e.name)") }
        }
        // Caches: (size, alignment).
        let shapes = [(24, 8), (200, 64), (1000, 16), (3000, 4096)]
        var caches: [SlabCache<ThreadPlatform<1>>] = []
        for (size, alignment) in shapes {
            do { caches.append(try q.createCache(name: "fault", size: size, alignment: alignment)) } catch {
                note(error, "createCache")
            }
        }
        var objects: [LiveObject] = []
        var blocks: [LiveObject] = []  // front blocks; cacheIndex unused
        let f = q.front
        func frontSize() -> Int {
            switch rng.next() % 10 {
            case 0..<6: return 1 + Int(rng.next() % 512)
            case 6..<8: return 1 + Int(rng.next() % 8192)
            default: return SizeClasses.largest + 1 + Int(rng.next() % 40_000)
            }
        }
        for _ in 0..<400 {
            out.steps += 1
            switch rng.next() % 6 {
            case 0 where !caches.isEmpty, 1 where !caches.isEmpty:
                let i = Int(rng.next() % UInt64(caches.count))
                do {
                    let p = try caches[i].allocate()
                    Cookie.fill(p, size: caches[i].objectSize, key: UInt(truncatingIfNeeded: cookie))
                    objects.append(
                        LiveObject(
                            address: UInt(bitPattern: p), size: caches[i].objectSize,
                            cookie: cookie, cacheIndex: i))
                    cookie += 1
                } catch { note(error, "allocate") }
            case 2 where !objects.isEmpty:
                let o = objects.remove(at: Int(rng.next() % UInt64(objects.count)))
                let p = UnsafeMutableRawPointer(bitPattern: o.address)!
                if !Cookie.intact(p, size: o.size, key: UInt(truncatingIfNeeded: o.cookie)) {
                    out.unexpected.append("cookie before free")
                }
                do { try caches[o.cacheIndex].free(p) } catch { out.unexpected.append("free: \(error.name)") }
            case 3:
                let size = frontSize()
                do {
                    let p = try f.malloc(size)
                    Cookie.fill(p, size: size, key: UInt(truncatingIfNeeded: cookie))
                    blocks.append(LiveObject(address: UInt(bitPattern: p), size: size, cookie: cookie, cacheIndex: 0))
                    cookie += 1
                } catch { note(error, "malloc") }
            case 4 where !blocks.isEmpty:
                let i = Int(rng.next() % UInt64(blocks.count))
                let b = blocks[i]
                let p = UnsafeMutableRawPointer(bitPattern: b.address)!
                let size = frontSize()
                do {
                    let r = try f.realloc(p, size)
                    // The cookie pattern is word-wise: compare the whole words both sizes hold.
                    if !Cookie.intact(r, size: min(size, b.size) & ~7, key: UInt(truncatingIfNeeded: b.cookie)) {
                        out.unexpected.append("realloc lost bytes")
                    }
                    Cookie.fill(r, size: size, key: UInt(truncatingIfNeeded: cookie))
                    blocks[i] = LiveObject(address: UInt(bitPattern: r), size: size, cookie: cookie, cacheIndex: 0)
                    cookie += 1
                } catch {
                    note(error, "realloc")
                    if !Cookie.intact(p, size: b.size, key: UInt(truncatingIfNeeded: b.cookie)) {
                        out.unexpected.append("failed realloc changed its block")
                    }
                }
            default:
                if !blocks.isEmpty {
                    let b = blocks.remove(at: Int(rng.next() % UInt64(blocks.count)))
                    let p = UnsafeMutableRawPointer(bitPattern: b.address)!
                    if !Cookie.intact(p, size: b.size, key: UInt(truncatingIfNeeded: b.cookie)) {
                        out.unexpected.append("cookie before front free")
                    }
                    do { try f.free(p) } catch { out.unexpected.append("front free: \(error.name)") }
                }
            }
        }
        if !noOverlap(objects + blocks) { out.unexpected.append("live blocks overlap") }
        q.checkInvariants()
        for o in objects {
            let p = UnsafeMutableRawPointer(bitPattern: o.address)!
            if !Cookie.intact(p, size: o.size, key: UInt(truncatingIfNeeded: o.cookie)) {
                out.unexpected.append("cookie at end")
            }
            do { try caches[o.cacheIndex].free(p) } catch { out.unexpected.append("final free: \(error.name)") }
        }
        for b in blocks {
            let p = UnsafeMutableRawPointer(bitPattern: b.address)!
            if !Cookie.intact(p, size: b.size, key: UInt(truncatingIfNeeded: b.cookie)) {
                out.unexpected.append("front cookie at end")
            }
            do { try f.free(p) } catch { out.unexpected.append("final front free: \(error.name)") }
        }
        for c in caches where q.destroy(c) != 0 { out.unexpected.append("destroy leaked") }
        return out
    }

    /// `repeating: false`: only the k-th request fails, and the reclaim an allocation runs
    /// before it fails, with its retry, absorbs it every time (no error surfaces).
    /// `repeating: true`: the arena is full from the k-th request on: allocations fail
    /// with `.outOfMemory` after their reclaim, frees still work.
    @Test(
        "the k-th page request fails: .outOfMemory, invariants hold, every page comes back",
        arguments: [false, true])
    func everyK(repeating: Bool) throws {
        let arena = TestArena(size: 4 << 20)
        defer { arena.release() }
        var surfaced = 0
        var absorbed = 0
        var k = 1
        while true {
            let q = try arena.quarry(tuning: .tiny)
            let start = q.pageStatistics.bump
            q.failPageRequest(after: k, repeating: repeating)
            let out = Self.workload(q)
            let injected = q.injectedPageFailures
            q.failPageRequest(after: 0)
            #expect(out.unexpected.isEmpty, "k = \(k): \(out.unexpected)")
            q.drainAll()
            q.front.shrink()
            q.shrink()
            q.checkInvariants()
            let pages = q.pageStatistics
            #expect(pages.pagesInUse == 0, "k = \(k): \(pages.pagesInUse) pages still in use")
            #expect(pages.bump == start, "k = \(k): bump \(pages.bump), started at \(start)")
            if !out.unexpected.isEmpty || pages.pagesInUse != 0 { break }
            if injected.count == 0 {
                // The workload made fewer than k requests: it ran through untouched.
                #expect(injected.pending && out.errors == 0, "k = \(k): errors without an injected failure")
                break
            }
            #expect(repeating ? injected.count >= 1 : injected.count == 1)
            // A failed request surfaces as .outOfMemory, unless the reclaim and retry or
            // the per-CPU layer absorbed it (no magazine: it falls back to the slabs).
            if out.errors > 0 { surfaced += 1 } else { absorbed += 1 }
            k += 1
            try #require(k < 5000, "the workload never completes")
        }
        #expect(k > 20, "the workload should make many page requests")
        #expect(repeating ? surfaced > 0 : surfaced == 0, "surfaced \(surfaced) of \(k - 1)")
        print(
            "fault injection (\(repeating ? "full from request k on" : "request k only")): \(k - 1) failure points, "
                + "\(surfaced) surfaced as .outOfMemory, \(absorbed) absorbed")
    }
}
