// SizeClassTests: the size-class formula against linear scans, its waste bound, and
// the relations of its table.

import Testing

@testable import Quarry

@Suite struct SizeClassTests {
    /// The reference: the first class whose size is at least `size` and a multiple of `alignment`.
    static func linearScan(_ size: Int, alignment: Int = 1) -> Int? {
        var i = 0
        while i < SizeClasses.count {
            let s = SizeClasses.size(ofClass: i)
            if s >= size && s % alignment == 0 { return i }
            i += 1
        }
        return nil
    }

    @Test func relationsHold() {
        SizeClasses.validate()
        #expect(SizeClasses.count == 73)
        #expect(SizeClasses.size(ofClass: 0) == Geometry.granule)
        #expect(SizeClasses.size(ofClass: SizeClasses.linearCount - 1) == SizeClasses.linearLimit)
        #expect(SizeClasses.size(ofClass: SizeClasses.count - 1) == SizeClasses.largest)
        #expect(SizeClasses.largest == 32768)
    }

    @Test func tableExcerpt() {
        // The documented start and end of the table (docs/design.md ("Malloc front")).
        let first = (0..<25).map { SizeClasses.size(ofClass: $0) }
        #expect(
            first == [
                8, 16, 32, 48, 64, 80, 96, 112, 128,
                144, 160, 176, 192, 208, 224, 240, 256,
                288, 320, 352, 384, 416, 448, 480, 512,
            ])
        #expect(
            (65..<73).map { SizeClasses.size(ofClass: $0) } == [18432, 20480, 22528, 24576, 26624, 28672, 30720, 32768])
    }

    @Test func mallocAlignmentIsSixteenAboveEightBytes() {
        for size in 0...SizeClasses.largest {
            let a = SizeClasses.alignment(ofClass: SizeClasses.index(forSize: size))
            #expect(a >= (size > Geometry.granule ? 16 : 8), "size \(size)")
        }
    }

    @Test func indexMatchesLinearScanForEverySize() {
        #expect(SizeClasses.index(forSize: 0) == 0)
        var mismatches = 0
        for size in 1...SizeClasses.largest where SizeClasses.index(forSize: size) != Self.linearScan(size) {
            mismatches += 1
        }
        #expect(mismatches == 0)
    }

    @Test func alignedIndexMatchesLinearScan() {
        var alignment = Geometry.granule
        while alignment <= Geometry.pageSize {
            var mismatches = 0
            for size in 0...SizeClasses.largest {
                let i = SizeClasses.index(forSize: size, alignment: alignment)
                if i != Self.linearScan(max(size, 1), alignment: alignment) { mismatches += 1 }
                if SizeClasses.alignment(ofClass: i) < alignment { mismatches += 1 }
            }
            #expect(mismatches == 0, "alignment \(alignment)")
            alignment <<= 1
        }
    }

    @Test func wasteBound() {
        // Up to the linear limit: less than one quantum. Above: less than 1/8 of the request.
        for size in 1...SizeClasses.linearLimit {
            #expect(SizeClasses.size(ofClass: SizeClasses.index(forSize: size)) - size < SizeClasses.quantum)
        }
        var worst = 0.0
        for size in (SizeClasses.linearLimit + 1)...SizeClasses.largest {
            let waste = SizeClasses.size(ofClass: SizeClasses.index(forSize: size)) - size
            #expect(waste * SizeClasses.perDoubling < size, "size \(size)")
            worst = max(worst, Double(waste) / Double(size))
        }
        // Spans: whole pages, under the same bound.
        for size in stride(from: SizeClasses.largest + 1, through: 4 << 20, by: 7) {
            let pages = (size + Geometry.pageSize - 1) / Geometry.pageSize
            let waste = pages * Geometry.pageSize - size
            #expect(waste * SizeClasses.perDoubling < size, "span size \(size)")
        }
        #expect(worst < 0.125)
    }

    @Test func everyPowerOfTwoUpToLargestIsAClass() {
        var s = Geometry.granule
        while s <= SizeClasses.largest {
            let i = SizeClasses.index(forSize: s)
            #expect(SizeClasses.size(ofClass: i) == s)
            #expect(SizeClasses.alignment(ofClass: i) == min(s, Geometry.pageSize))
            s <<= 1
        }
    }

    @Test(arguments: [Tuning.standard, Tuning.tiny])
    func everyClassHasASlabGeometry(tuning: Tuning) throws {
        for i in 0..<SizeClasses.count {
            let size = SizeClasses.size(ofClass: i)
            let g = try SlabGeometry.make(size: size, alignment: SizeClasses.alignment(ofClass: i), tuning: tuning)
            #expect(g.objectSize == size, "class \(i): no rounding beyond the class size")
            #expect(g.objectsPerSlab * g.objectSize <= g.slabBytes)
            #expect(g.colorStep % SizeClasses.alignment(ofClass: i) == 0)
        }
    }
}
