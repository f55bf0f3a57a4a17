// MallocModelTests: seeded random malloc/calloc/realloc/aligned/free sequences checked
// against a simple model: cookies verified on free and realloc, no overlap, alignment
// honoured, refusals change nothing, and the heap empties at the end.
// Replay a failure with QUARRY_SEED=<seed> swift test --filter MallocModelTests.

import QuarryScenarios
import Testing

@testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

/// Seeds: fixed ones, one fresh per run, or only QUARRY_SEED when it is set.
let modelSeeds: [UInt64] = {
    if let text = getenv("QUARRY_SEED"), let seed = UInt64(String(cString: text)) { return [seed] }
    return [1, 2, 3, 0xC0FFEE, UInt64.random(in: 0...UInt64.max)]
}()

struct MallocModel {
    struct Block {
        let pointer: UnsafeMutableRawPointer
        var size: Int
        /// Alignment the block was allocated with (1 for malloc, calloc, realloc).
        var alignment: Int
        var cookie: UInt8
    }

    let seed: UInt64
    let q: Quarry<ThreadPlatform<1>>
    var f: MallocFront<ThreadPlatform<1>> { q.front }
    var rng: SeededGenerator
    var live: [Block] = []
    var nextCookie: UInt8 = 1
    var failures = 0

    init(seed: UInt64, quarry: Quarry<ThreadPlatform<1>>) {
        self.seed = seed
        self.q = quarry
        rng = SeededGenerator(seed: seed)
    }

    func fail(_ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
        Issue.record("seed \(seed): \(message)", sourceLocation: sourceLocation)
    }

    static func byte(_ cookie: UInt8, _ k: Int) -> UInt8 { cookie &+ UInt8(truncatingIfNeeded: k &* 7) }

    mutating func fill(_ i: Int) {
        let b = live[i]
        for k in 0..<b.size { b.pointer.storeBytes(of: Self.byte(b.cookie, k), toByteOffset: k, as: UInt8.self) }
    }

    /// Checks the first `count` bytes of `pointer` against `cookie`.
    func verify(_ pointer: UnsafeMutableRawPointer, _ count: Int, _ cookie: UInt8, _ what: String) {
        for k in 0..<count where pointer.load(fromByteOffset: k, as: UInt8.self) != Self.byte(cookie, k) {
            fail("\(what): byte \(k) of \(count) overwritten")
            return
        }
    }

    mutating func size() -> Int {
        switch rng.next() % 100 {
        case 0..<60: return Int(rng.next() % 256)
        case 60..<85: return Int(rng.next() % 4096)
        case 85..<95: return Int(rng.next() % UInt64(SizeClasses.largest + 1))
        default: return SizeClasses.largest + Int(rng.next() % 200_000)
        }
    }

    /// Records a new block after checking alignment, usable size and overlap.
    mutating func add(_ p: UnsafeMutableRawPointer, size: Int, alignment: Int, zeroed: Bool) {
        if Int(bitPattern: p) % max(alignment, Geometry.granule) != 0 { fail("block \(p) not \(alignment)-aligned") }
        if let usable = try? f.usableSize(p), usable < size { fail("usable \(usable) < size \(size)") }
        let start = UInt(bitPattern: p)
        let end = start + UInt(max(size, 1))
        for b in live {
            let s = UInt(bitPattern: b.pointer)
            if start < s + UInt(max(b.size, 1)) && s < end {
                fail("block \(p)+\(size) overlaps \(b.pointer)+\(b.size)")
            }
        }
        if zeroed {
            for k in 0..<size where p.load(fromByteOffset: k, as: UInt8.self) != 0 {
                fail("calloc byte \(k) not zero")
                break
            }
        }
        live.append(Block(pointer: p, size: size, alignment: alignment, cookie: nextCookie))
        nextCookie &+= 1
        fill(live.count - 1)
    }

    mutating func step() {
        let action = rng.next() % 100
        let wantsFree = live.count > 400 || (live.count > 0 && action < 35)
        do {
            if wantsFree {
                let i = Int(rng.next() % UInt64(live.count))
                let b = live[i]
                verify(b.pointer, b.size, b.cookie, "free")
                if rng.next() % 2 == 0 {
                    try f.free(b.pointer, size: b.size, alignment: b.alignment)
                } else {
                    try f.free(b.pointer)
                }
                live.remove(at: i)
            } else if action < 60 {
                let n = size()
                add(try f.malloc(n), size: n, alignment: 1, zeroed: false)
            } else if action < 70 {
                let alignment = 1 << Int(rng.next() % 17)
                let n = size()
                add(try f.alignedAlloc(alignment: alignment, size: n), size: n, alignment: alignment, zeroed: false)
            } else if action < 75 {
                let count = Int(rng.next() % 64)
                let n = Int(rng.next() % 512)
                add(try f.calloc(count, n), size: count * n, alignment: 1, zeroed: true)
            } else if action < 95 {
                guard !live.isEmpty else { return }
                let i = Int(rng.next() % UInt64(live.count))
                let b = live[i]
                let n = size()
                let p = try f.realloc(b.pointer, n)
                verify(p, min(b.size, n), b.cookie, "realloc \(b.size) -> \(n)")
                live.remove(at: i)
                add(p, size: n, alignment: 1, zeroed: false)
            } else {
                // A bad free: an interior or misaligned address of a live block, or a
                // wrong hint. Refused, and nothing changes.
                guard let b = live.randomElement(using: &rng) else { return }
                let before = HeapSnapshot(q)
                let usable = (try? f.usableSize(b.pointer)) ?? 0
                let expected: QuarryError
                do {
                    // A usable size of 8 has no interior granule (the next address is the next object).
                    let kind = usable <= Geometry.granule ? 0 : rng.next() % 3
                    switch kind {
                    case 0:
                        expected = .misaligned
                        try f.free(b.pointer + 4)
                    case 1:
                        expected = .interiorPointer
                        try f.free(
                            b.pointer + Geometry.granule * (1 + Int(rng.next() % UInt64(max(usable / 8 - 1, 1)))))
                    default:
                        expected = .sizeMismatch
                        try f.free(b.pointer, size: usable + 1)
                    }
                    fail("a bad free of \(b.pointer) succeeded")
                } catch {
                    if error != expected {
                        fail("bad free: \(error) instead of \(expected)")
                    }
                }
                if HeapSnapshot(q) != before { fail("a refused free changed the heap") }
            }
        } catch .outOfMemory {
            failures += 1
        } catch {
            fail("unexpected \(error)")
        }
    }

    mutating func drain() {
        for b in live {
            verify(b.pointer, b.size, b.cookie, "drain")
            do { try f.free(b.pointer) } catch { fail("drain: free threw \(error)") }
        }
        live.removeAll()
    }
}

@Suite struct MallocModelTests {
    @Test(arguments: modelSeeds, [Tuning.standard, Tuning.tiny])
    func randomSequences(seed: UInt64, tuning: Tuning) throws {
        let arena = TestArena(size: 24 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let initialPages = q.pageStatistics.pagesInUse
        var model = MallocModel(seed: seed, quarry: q)
        for i in 0..<3000 {
            model.step()
            if i % 16 == 0 { q.checkInvariants() }
        }
        q.checkInvariants()
        model.drain()
        q.checkInvariants()
        q.front.shrink()
        #expect(q.pageStatistics.pagesInUse == initialPages, "seed \(seed): pages leaked")
        #expect(q.front.statistics.liveSpans == 0, "seed \(seed)")
        q.checkInvariants()
    }

    /// A small arena: out-of-memory paths run often, and nothing leaks through them.
    @Test(arguments: modelSeeds)
    func randomSequencesUnderPressure(seed: UInt64) throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: .tiny)
        var model = MallocModel(seed: seed, quarry: q)
        for i in 0..<2000 {
            model.step()
            if i % 16 == 0 { q.checkInvariants() }
        }
        #expect(model.failures > 0, "seed \(seed): the arena never ran out")
        model.drain()
        q.front.shrink()
        #expect(q.pageStatistics.pagesInUse == 0, "seed \(seed): pages leaked")
        q.checkInvariants()
    }
}
