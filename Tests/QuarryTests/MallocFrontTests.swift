// MallocFrontTests: unit tests of the malloc front: every class through the page map,
// spans, alignment, calloc, realloc, and every bad input with nothing lost.

import Testing

@testable import Quarry

/// Total count of `error` over the front and every cache.
func errorCount(_ q: Quarry<ThreadPlatform<1>>, _ error: QuarryError) -> UInt64 {
    var n = q.front.statistics.count(of: error)
    q.forEachCache { n += $0.statistics.count(of: error) }
    return n
}

/// Runs `body`, expects it to throw exactly `expected`, and checks that nothing but
/// one error counter changed.
func expectRefusal(
    _ q: Quarry<ThreadPlatform<1>>, _ expected: QuarryError, counted: Bool = true,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(QuarryError) -> Void
) {
    let before = HeapSnapshot(q)
    let errorsBefore = errorCount(q, expected)
    do {
        try body()
        Issue.record("expected \(expected), got success", sourceLocation: sourceLocation)
    } catch {
        #expect(error == expected, sourceLocation: sourceLocation)
    }
    #expect(HeapSnapshot(q) == before, "state changed", sourceLocation: sourceLocation)
    if counted {
        #expect(errorCount(q, expected) == errorsBefore + 1, "error not counted once", sourceLocation: sourceLocation)
    }
    q.checkInvariants()
}

func cacheName(_ q: Quarry<ThreadPlatform<1>>, owning p: UnsafeRawPointer) -> String? {
    guard let c = q.cache(owning: p) else { return nil }
    var bytes: [UInt8] = []
    c.name.forEachByte { bytes.append($0) }
    return String(decoding: bytes, as: UTF8.self)
}

@Suite struct MallocFrontTests {
    @Test(arguments: [Tuning.standard, Tuning.tiny])
    func pageMapResolvesEveryClass(tuning: Tuning) throws {
        let arena = TestArena(size: 8 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let f = q.front
        for i in 0..<SizeClasses.count {
            let size = SizeClasses.size(ofClass: i)
            // The smallest and the largest request of the class land in it.
            let smallest = i == 0 ? 0 : SizeClasses.size(ofClass: i - 1) + 1
            for request in [smallest, size] {
                let p = try f.malloc(request)
                #expect(cacheName(q, owning: p) == "malloc-\(size)")
                #expect(try f.usableSize(p) == size)
                guard case .object(let c, let index) = try f.resolve(UInt(bitPattern: p), live: true) else {
                    Issue.record("class \(i) did not resolve to an object")
                    continue
                }
                #expect(index == i && c.objectSize == size)
                // Interior addresses of the object resolve to nothing.
                if size > Geometry.granule {
                    #expect(throws: QuarryError.interiorPointer) { try f.usableSize(p + Geometry.granule) }
                }
                #expect(Int(bitPattern: p) % SizeClasses.alignment(ofClass: i) == 0)
                try f.free(p)
            }
        }
        #expect(f.statistics.classCaches == SizeClasses.count)
        q.checkInvariants()
        f.shrink()
        #expect(q.pageStatistics.pagesInUse == 0)
        #expect(q.cacheCount == internalCaches)
        q.checkInvariants()
    }

    @Test func pageMapResolvesSpans() throws {
        let arena = TestArena(size: 8 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let f = q.front
        let p = try f.malloc(SizeClasses.largest + 1)
        #expect(q.cache(owning: p) == nil)
        #expect(try f.usableSize(p) == 9 * Geometry.pageSize)
        #expect(q.pageStatistics.pagesInUse == 9)
        #expect(f.statistics.liveSpans == 1 && f.statistics.spanPages == 9)
        guard case .span(let span) = try f.resolve(UInt(bitPattern: p), live: true) else {
            Issue.record("a span did not resolve")
            return
        }
        #expect(span.pages == 9)
        q.checkInvariants()
        // Every later page of the span, and interior addresses of its head, are interior.
        for page in 0..<9 {
            expectRefusal(q, .interiorPointer) { () throws(QuarryError) in try f.free(p + page * Geometry.pageSize + 64)
            }
        }
        expectRefusal(q, .interiorPointer) { () throws(QuarryError) in try f.free(p + 3 * Geometry.pageSize) }
        try f.free(p)
        #expect(q.pageStatistics.pagesInUse == 0)
        #expect(f.statistics.liveSpans == 0)
        // A span's pages are free once it is freed, but they held a block: a second
        // free is a double free (issue 15), as for a block of a size class.
        expectRefusal(q, .doubleFree) { () throws(QuarryError) in try f.free(p) }
        q.checkInvariants()
    }

    /// One rule for a double free through the front (issue 15): `.doubleFree` whatever
    /// the block's size: a class block whose slab lives, one whose slab was released by
    /// the first free, a span whose pages went back to the wilderness, and one whose
    /// pages went to a free run; through `free`, the sized free and `usableSize`. A page
    /// never used stays `.freePage`.
    @Test(arguments: [Tuning.standard, Tuning.tiny])
    func doubleFreeIsReportedWhateverTheSize(tuning: Tuning) throws {
        let arena = TestArena(size: 8 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let f = q.front
        for size in [16, 1000, SizeClasses.largest, SizeClasses.largest + 1, 300_000] {
            let block = try f.malloc(size)
            let guardBlock = try f.malloc(size)  // above it: block's pages go to a free run
            try f.free(block)
            _ = f.shrink()
            _ = q.drainAll()  // class blocks: the slab is released too
            expectRefusal(q, .doubleFree) { () throws(QuarryError) in try f.free(block) }
            expectRefusal(q, .doubleFree) { () throws(QuarryError) in try f.free(block, size: size) }
            expectRefusal(q, .doubleFree) { () throws(QuarryError) in _ = try f.usableSize(block) }
            try f.free(guardBlock)  // the top: its pages go back to the wilderness
            _ = f.shrink()
            _ = q.drainAll()
            expectRefusal(q, .doubleFree) { () throws(QuarryError) in try f.free(guardBlock) }
            #expect(q.pageStatistics.pagesInUse == 0)
        }
        let aligned = try f.alignedAlloc(alignment: 4 * Geometry.pageSize, size: 100)
        try f.free(aligned)
        expectRefusal(q, .doubleFree) { () throws(QuarryError) in try f.free(aligned) }
        let neverUsed = UnsafeMutableRawPointer(
            bitPattern: q.heap.pointee.arena.address(of: PageNumber(q.pageStatistics.pageCount - 1)))!
        expectRefusal(q, .freePage) { () throws(QuarryError) in try f.free(neverUsed) }
        q.checkInvariants()
    }

    @Test func sizeZeroIsAUniqueSmallestObject() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let f = q.front
        let a = try f.malloc(0)
        let b = try f.malloc(0)
        #expect(a != b)
        #expect(try f.usableSize(a) == SizeClasses.size(ofClass: 0))
        let c = try f.calloc(0, 16)
        let d = try f.alignedAlloc(alignment: 64, size: 0)
        #expect(Int(bitPattern: d) % 64 == 0)
        try f.free(a, size: 0)
        try f.free(b)
        try f.free(c, size: 0)
        try f.free(d, size: 0, alignment: 64)
        // A zero factor is a smallest block whatever the other (-1 is C's SIZE_MAX).
        for (n, s) in [(0, 0), (0, -1), (-1, 0), (0, Int.max), (Int.min, 0), (0, 1 << 40)] {
            let z = try f.calloc(n, s)
            #expect(try f.usableSize(z) == SizeClasses.size(ofClass: 0), "calloc(\(n), \(s))")
            try f.free(z, size: 0)
        }
        f.shrink()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    @Test func hugeSizesAreRefusedWithoutOverflow() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let f = q.front
        let keep = try f.malloc(100)
        let huge = [
            Int.max, Int.max - 1, Int.max - Geometry.pageSize + 1, Int.max / 2 + 1, -1, Int.min,
            q.pageStatistics.pageCount * Geometry.pageSize + 1,
        ]
        for size in huge {
            expectRefusal(q, .sizeTooLarge, counted: false) { () throws(QuarryError) in _ = try f.malloc(size) }
            expectRefusal(q, .sizeTooLarge, counted: false) { () throws(QuarryError) in _ = try f.calloc(1, size) }
            expectRefusal(q, .sizeTooLarge, counted: false) { () throws(QuarryError) in
                _ = try f.alignedAlloc(alignment: 16, size: size)
            }
            expectRefusal(q, .sizeTooLarge, counted: false) { () throws(QuarryError) in
                _ = try f.alignedAlloc(alignment: 1 << 16, size: size)
            }
            expectRefusal(q, .sizeTooLarge, counted: false) { () throws(QuarryError) in _ = try f.realloc(keep, size) }
            expectRefusal(q, .sizeTooLarge, counted: false) { () throws(QuarryError) in _ = try f.realloc(nil, size) }
        }
        // calloc: the product overflows, or is merely too large.
        for (n, s) in [(Int.max, 2), (2, Int.max), (1 << 32, 1 << 32), (Int.max, Int.max), (-1, 8), (1 << 20, 1 << 20)]
        {
            expectRefusal(q, .sizeTooLarge, counted: false) { () throws(QuarryError) in _ = try f.calloc(n, s) }
        }
        // An alignment larger than the arena can never be met.
        expectRefusal(q, .sizeTooLarge, counted: false) { () throws(QuarryError) in
            _ = try f.alignedAlloc(alignment: 1 << 40, size: 1)
        }
        #expect(try f.usableSize(keep) == 112)
        try f.free(keep)
        f.shrink()
        #expect(q.pageStatistics.pagesInUse == 0)
        q.checkInvariants()
    }

    @Test func badAlignmentIsRefused() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let f = q.front
        let p = try f.malloc(24)
        for alignment in [0, -8, 3, 24, 48, 4097, Int.min, Int.max] {
            expectRefusal(q, .badAlignment, counted: false) { () throws(QuarryError) in
                _ = try f.alignedAlloc(alignment: alignment, size: 16)
            }
            expectRefusal(q, .badAlignment, counted: false) { () throws(QuarryError) in
                try f.free(p, size: 24, alignment: alignment)
            }
        }
        try f.free(p)
    }

    /// Every power-of-two alignment from 1 to 64 KiB, with sizes around it, on both tunings.
    @Test(arguments: [Tuning.standard, Tuning.tiny])
    func everyPowerOfTwoAlignment(tuning: Tuning) throws {
        let arena = TestArena(size: 16 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let f = q.front
        var alignment = 1
        while alignment <= 1 << 16 {
            var blocks: [(UnsafeMutableRawPointer, Int)] = []
            for size in [0, 1, 7, alignment - 1, alignment, alignment + 1, 3 * alignment, 5000, 40000] where size >= 0 {
                let p = try f.alignedAlloc(alignment: alignment, size: size)
                #expect(Int(bitPattern: p) % alignment == 0, "alignment \(alignment) size \(size)")
                #expect(Int(bitPattern: p) % Geometry.granule == 0)
                #expect(try f.usableSize(p) >= size)
                p.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: size), count: size)
                blocks.append((p, size))
            }
            q.checkInvariants()
            for (p, size) in blocks {
                for k in 0..<size where p.load(fromByteOffset: k, as: UInt8.self) != UInt8(truncatingIfNeeded: size) {
                    Issue.record("alignment \(alignment) size \(size): byte \(k) overwritten")
                    break
                }
                try f.free(p, size: size, alignment: alignment)
            }
            q.checkInvariants()
            alignment <<= 1
        }
        f.shrink()
        #expect(q.pageStatistics.pagesInUse == 0)
        #expect(q.pageStatistics.bump == 0)
        q.checkInvariants()
    }

    @Test func callocZeroFillsOverJunk() throws {
        let arena = TestArena(size: 4 << 20, junk: 0xA5)
        defer { arena.release() }
        let q = try arena.quarry()
        let f = q.front
        func expectZero(_ p: UnsafeMutableRawPointer, _ n: Int) {
            var nonZero = 0
            for k in 0..<n where p.load(fromByteOffset: k, as: UInt8.self) != 0 { nonZero += 1 }
            #expect(nonZero == 0, "\(nonZero) non-zero bytes of \(n)")
        }
        for (count, size) in [(1, 1), (3, 40), (10, 100), (1, 4096), (7, 5000), (1, 100_000), (0, 5)] {
            // Fresh memory (junk from the arena), then reused memory (junk we wrote).
            let p = try f.calloc(count, size)
            expectZero(p, count * size)
            let usable = try f.usableSize(p)
            p.initializeMemory(as: UInt8.self, repeating: 0xFF, count: usable)
            try f.free(p)
            let r = try f.calloc(count, size)
            expectZero(r, count * size)
            try f.free(r)
        }
        q.checkInvariants()
    }

    @Test(arguments: [Tuning.standard, Tuning.tiny])
    func reallocAcrossClassesAndSpans(tuning: Tuning) throws {
        let arena = TestArena(size: 16 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let f = q.front
        let sizes = [
            1, 8, 9, 16, 100, 128, 129, 144, 1000, 4096, 4097, 32768, 32769, 100_000, 200_000,
            150_000, 40_000, 36_864, 33_000, 32_768, 20_000, 5000, 100, 0, 300_000, 1, 0,
        ]
        var p = try f.realloc(nil, sizes[0])
        var size = sizes[0]
        func fill(_ p: UnsafeMutableRawPointer, _ n: Int, _ seed: Int) {
            for k in 0..<n {
                p.storeBytes(of: UInt8(truncatingIfNeeded: k &* 31 &+ seed), toByteOffset: k, as: UInt8.self)
            }
        }
        fill(p, size, 0)
        for (step, newSize) in sizes.dropFirst().enumerated() {
            let oldUsable = try f.usableSize(p)
            let q2 = try f.realloc(p, newSize)
            let kept = min(size, newSize)
            var bad = 0
            for k in 0..<kept
            where q2.load(fromByteOffset: k, as: UInt8.self) != UInt8(truncatingIfNeeded: k &* 31 &+ step) {
                bad += 1
            }
            #expect(bad == 0, "step \(step): \(size) -> \(newSize) lost \(bad) bytes")
            let sameClass =
                newSize <= SizeClasses.largest && size <= SizeClasses.largest
                && SizeClasses.index(forSize: newSize) == SizeClasses.index(forSize: size)
            let spanFits =
                newSize > SizeClasses.largest && size > SizeClasses.largest
                && (newSize + Geometry.pageSize - 1) / Geometry.pageSize <= oldUsable / Geometry.pageSize
            if sameClass || spanFits { #expect(q2 == p, "step \(step): \(size) -> \(newSize) should stay in place") }
            if spanFits {
                #expect(
                    try f.usableSize(q2) == (newSize + Geometry.pageSize - 1) / Geometry.pageSize * Geometry.pageSize)
            }
            p = q2
            size = newSize
            fill(p, size, step + 1)
            q.checkInvariants()
        }
        try f.free(p, size: size)
        f.shrink()
        #expect(q.pageStatistics.pagesInUse == 0)
        q.checkInvariants()
    }

    @Test func reallocFailureKeepsTheBlock() throws {
        let arena = TestArena(size: 256 << 10)
        defer { arena.release() }
        let q = try arena.quarry()
        let f = q.front
        let p = try f.malloc(1000)
        p.initializeMemory(as: UInt8.self, repeating: 0x5C, count: 1000)
        // No arena of 256 KiB holds 200 KiB twice: the move fails, p stays.
        let big = try f.realloc(p, 150_000)
        // A refusal for lack of memory first reclaims (the emptied malloc-1024 slab goes
        // back): start from a reclaimed heap, so the snapshot shows what the refusal changed.
        q.shrink()
        expectRefusal(q, .outOfMemory, counted: false) { () throws(QuarryError) in _ = try f.realloc(big, 200_000) }
        var bad = 0
        for k in 0..<1000 where big.load(fromByteOffset: k, as: UInt8.self) != 0x5C { bad += 1 }
        #expect(bad == 0)
        try f.free(big)
        f.shrink()
        #expect(q.pageStatistics.pagesInUse == 0)
        q.checkInvariants()
    }

    @Test(arguments: [Tuning.standard, Tuning.tiny])
    func badFreesChangeNothing(tuning: Tuning) throws {
        let arena = TestArena(size: 2 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let f = q.front
        let small = try f.malloc(48)
        let other = try f.malloc(48)
        let large = try f.malloc(50_000)
        let user = try q.createCache(name: "user", size: 48)
        let foreignObject = try user.allocate()
        var onStack = 0
        let hostMemory = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
        defer { hostMemory.deallocate() }
        // The arena's last page: far above the bump pointer, never used.
        let unusedPage = UnsafeMutableRawPointer(
            bitPattern: q.heap.pointee.arena.address(of: PageNumber(q.pageStatistics.pageCount - 1)))!

        // Every entry point that takes a pointer refuses the same way.
        enum Entry: CaseIterable { case free, realloc, sizedFree, usableSize }
        for entry in Entry.allCases {
            func free(_ p: UnsafeMutableRawPointer) throws(QuarryError) {
                switch entry {
                case .free: try f.free(p)
                case .realloc: _ = try f.realloc(p, 10)
                case .sizedFree: try f.free(p, size: 48)
                case .usableSize: _ = try f.usableSize(p)
                }
            }
            withUnsafeMutablePointer(to: &onStack) { stack in
                expectRefusal(q, .outsideArena) { () throws(QuarryError) in try free(UnsafeMutableRawPointer(stack)) }
            }
            expectRefusal(q, .outsideArena) { () throws(QuarryError) in try free(hostMemory) }
            expectRefusal(q, .metadataPointer) { () throws(QuarryError) in try free(arena.base + 64) }
            expectRefusal(q, .freePage) { () throws(QuarryError) in try free(unusedPage) }
            expectRefusal(q, .misaligned) { () throws(QuarryError) in try free(small + 1) }
            expectRefusal(q, .misaligned) { () throws(QuarryError) in try free(small + 4) }
            expectRefusal(q, .interiorPointer) { () throws(QuarryError) in try free(small + 8) }
            expectRefusal(q, .interiorPointer) { () throws(QuarryError) in try free(large + 8) }
            expectRefusal(q, .interiorPointer) { () throws(QuarryError) in try free(large + Geometry.pageSize) }
            expectRefusal(q, .wrongCache) { () throws(QuarryError) in try free(foreignObject) }
        }
        // Wrong size hints: another class, a span length, or a class for a span.
        expectRefusal(q, .sizeMismatch) { () throws(QuarryError) in try f.free(small, size: 200) }
        expectRefusal(q, .sizeMismatch) { () throws(QuarryError) in try f.free(small, size: 24) }
        expectRefusal(q, .sizeMismatch) { () throws(QuarryError) in try f.free(small, size: 48, alignment: 32) }
        expectRefusal(q, .sizeMismatch) { () throws(QuarryError) in try f.free(large, size: 100) }
        expectRefusal(q, .sizeMismatch) { () throws(QuarryError) in try f.free(large, size: 60_000) }
        expectRefusal(q, .sizeMismatch) { () throws(QuarryError) in try f.free(large, size: -1) }
        // Double free: an object (the allocation bitmap says so), through every entry point.
        try f.free(other)
        expectRefusal(q, .doubleFree) { () throws(QuarryError) in try f.free(other) }
        expectRefusal(q, .doubleFree) { () throws(QuarryError) in _ = try f.realloc(other, 100) }
        expectRefusal(q, .doubleFree) { () throws(QuarryError) in try f.free(other, size: 48) }
        expectRefusal(q, .doubleFree) { () throws(QuarryError) in _ = try f.usableSize(other) }
        // The user cache sees its object as its own and the front's as another cache's.
        #expect(throws: QuarryError.wrongCache) { try user.free(small) }
        // Nothing was lost: everything still frees, the heap empties.
        try f.free(small, size: 48)
        try f.free(large, size: 50_000)
        try user.free(foreignObject)
        #expect(user.destroy() == 0)
        f.shrink()
        #expect(q.pageStatistics.pagesInUse == 0)
        #expect(q.pageStatistics.bump == 0)
        q.checkInvariants()
    }

    @Test func outOfMemoryOnATinyArena() throws {
        let arena = TestArena(size: 96 << 10)
        defer { arena.release() }
        let q = try arena.quarry(tuning: .tiny)
        let f = q.front
        var blocks: [UnsafeMutableRawPointer] = []
        let sizes = [16, 300, 5000, 40_000, 9000, 24]
        var failures = 0
        var i = 0
        while failures < 12 && i < 10_000 {
            let size = sizes[i % sizes.count]
            do {
                blocks.append(try f.malloc(size))
            } catch {
                #expect(error == .outOfMemory)
                failures += 1
            }
            i += 1
        }
        #expect(failures == 12)
        q.checkInvariants()
        for p in blocks { try f.free(p) }
        f.shrink()
        #expect(q.pageStatistics.pagesInUse == 0)
        q.checkInvariants()
    }

    @Test func classCachesAppearInSlabinfo() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let f = q.front
        let a = try f.malloc(100)
        let b = try f.malloc(100)
        let c = try f.malloc(3000)
        let d = try f.malloc(70_000)
        var out = TextBuffer()
        q.writeSlabinfo(to: &out)
        let text = out.text
        #expect(text.contains("malloc-112"))
        #expect(text.contains("malloc-3072"))
        #expect(text.contains("# spans: 1 live, 18 pages"))
        #expect(q.cache(owning: a)?.statistics.activeObjects == 2)
        for p in [a, b, c, d] { try f.free(p) }
        q.checkInvariants()
    }

    @Test func destroyingAClassCacheIsRefused() async throws {
        await #expect(processExitsWith: .failure) {
            let arena = TestArena(size: 1 << 20)
            let q = try arena.quarry()
            _ = try q.front.malloc(10)
            q.forEachCache { if $0.objectSize == 16 { _ = q.destroy($0) } }
        }
    }
}
