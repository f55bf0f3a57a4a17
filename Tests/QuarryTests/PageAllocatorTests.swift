import QuarryScenarios
import Testing

@testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

/// The page allocator on its own, over arenas of a few pages.
@Suite struct PageAllocatorTests {
    /// A page allocator over `pages` data pages of a fresh test arena.
    final class Fixture {
        let arena: TestArena
        var allocator: PageAllocator
        init(pages: Int) {
            let header = 64
            let bytes = 4096 + pages * (4096 + PageDescriptor.stride + Geometry.bitmapBytesPerPage) + 4096
            arena = TestArena(size: bytes)
            var layout = Arena(base: UInt(bitPattern: arena.base), size: UInt(bytes), headerBytes: header)!
            // Trim to exactly `pages` pages so exhaustive tests know the size.
            while layout.pageCount > pages {
                layout = Arena(
                    base: UInt(bitPattern: arena.base), size: UInt(bytes - (layout.pageCount - pages) * 4096),
                    headerBytes: header)!
                if layout.pageCount < pages { break }
            }
            allocator = PageAllocator(map: PageMap(arena: layout), bitmap: AllocationBitmap(arena: layout))
        }
        deinit { arena.release() }

        /// Allocates like a slab would: the head is marked and its tails too.
        func take(_ n: Int) -> PageNumber? {
            guard let p = allocator.allocate(n) else { return nil }
            allocator.map[p].setSpan(pages: n, head: p)
            allocator.map.markTails(of: p, count: n)
            return p
        }
        func give(_ p: PageNumber, _ n: Int) { allocator.free(p, n) }
    }

    @Test func bumpThenReuseThenWilderness() {
        let f = Fixture(pages: 16)
        let a = f.take(2)!, b = f.take(3)!, c = f.take(1)!
        #expect(a.raw == 0 && b.raw == 2 && c.raw == 5)
        #expect(f.allocator.bump.raw == 6)
        f.give(b, 3)  // a hole in the middle goes to a bin
        #expect(f.allocator.freePages == 3)
        let d = f.take(2)!  // reused before the bump pointer moves
        #expect(d == b && f.allocator.bump.raw == 6)
        f.allocator.checkInvariants()
        f.give(c, 1)  // c touches the hole's remainder: coalesced, then reaches bump
        #expect(f.allocator.bump.raw == 4 && f.allocator.freePages == 0)
        f.give(d, 2)
        f.give(a, 2)
        #expect(f.allocator.bump.raw == 0 && f.allocator.freePages == 0)
        f.allocator.checkInvariants()
    }

    @Test func outOfPagesIsNilNotATrap() {
        let f = Fixture(pages: 4)
        #expect(f.allocator.pageCount == 4)
        #expect(f.take(5) == nil)
        let a = f.take(4)!
        #expect(f.take(1) == nil)
        #expect(f.allocator.failures == 2)
        f.give(a, 4)
        #expect(f.take(4) != nil)
    }

    /// Exhaustive small states: every sequence of up to 6 operations (allocate 1-3
    /// pages, or free any live run) over 6 pages, checked against a model of which
    /// pages are live, with the invariants after every step.
    @Test func exhaustiveSmallStates() {
        var sequences = 0
        func explore(_ f: Fixture, _ live: [(PageNumber, Int)], depth: Int) {
            sequences += 1
            f.allocator.checkInvariants()
            let used = live.reduce(0) { $0 + $1.1 }
            #expect(f.allocator.pagesInUse == used)
            guard depth > 0 else { return }
            // Replay-based exploration: rebuild the state for each branch.
            for n in 1...3 {
                let g = replay(live)
                if let p = g.take(n) {
                    for (q, m) in live { #expect(p.int + n <= q.int || q.int + m <= p.int, "overlap") }
                    explore(g, live + [(p, n)], depth: depth - 1)
                } else {
                    // Refused only when no n consecutive pages are free in the model.
                    var freeRun = 0, best = 0
                    for page in 0..<6 {
                        let busy = live.contains { page >= $0.0.int && page < $0.0.int + $0.1 }
                        freeRun = busy ? 0 : freeRun + 1
                        best = max(best, freeRun)
                    }
                    #expect(best < n, "refused \(n) pages with a free run of \(best)")
                }
            }
            for i in live.indices {
                let g = replay(live)
                g.give(live[i].0, live[i].1)
                var rest = live
                rest.remove(at: i)
                explore(g, rest, depth: depth - 1)
            }
        }
        func replay(_ live: [(PageNumber, Int)]) -> Fixture {
            // Recreate the same live set in a fresh allocator by allocating in address
            // order and freeing the gaps (a different history, the same live pages).
            let f = Fixture(pages: 6)
            var p = 0
            var gaps: [(PageNumber, Int)] = []
            let sorted = live.sorted { $0.0 < $1.0 }
            for (q, m) in sorted {
                if q.int > p { gaps.append((f.take(q.int - p)!, q.int - p)) }
                _ = f.take(m)
                p = q.int + m
            }
            for (g, m) in gaps { f.give(g, m) }
            return f
        }
        explore(Fixture(pages: 6), [], depth: 7)
        #expect(sequences > 10_000)
    }

    /// Seeded random runs of up to 40 pages against a model.
    @Test(arguments: testSeeds([1, 2, 3, 0xC0FFEE]))
    func randomRunsAgainstModel(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        let f = Fixture(pages: 200)
        var live: [(PageNumber, Int)] = []
        var owner = [Int](repeating: -1, count: 200)
        for step in 0..<4000 {
            if live.isEmpty || Int.random(in: 0..<100, using: &rng) < 55 {
                let n =
                    Bool.random(using: &rng) ? Int.random(in: 1...4, using: &rng) : Int.random(in: 1...40, using: &rng)
                if let p = f.take(n) {
                    for i in p.int..<(p.int + n) {
                        #expect(owner[i] == -1, "seed \(seed) step \(step): page \(i) handed out twice")
                        owner[i] = step
                    }
                    live.append((p, n))
                }
            } else {
                let i = Int.random(in: 0..<live.count, using: &rng)
                let (p, n) = live.remove(at: i)
                for j in p.int..<(p.int + n) { owner[j] = -1 }
                f.give(p, n)
            }
            if step % 16 == 0 { f.allocator.checkInvariants() }
        }
        for (p, n) in live { f.give(p, n) }
        f.allocator.checkInvariants()
        #expect(f.allocator.bump.raw == 0, "seed \(seed): pages leaked")
    }
}
