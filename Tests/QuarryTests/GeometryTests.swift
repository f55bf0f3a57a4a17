import Testing

@testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

/// Constants and slab shapes: Style rule 10 (every coupling asserted).
@Suite struct GeometryTests {
    @Test func constantRelations() {
        #expect(Geometry.pageSize == 1 << Geometry.pageShift)
        #expect(Geometry.granule == 1 << Geometry.granuleShift)
        #expect(Geometry.cacheLine % Geometry.granule == 0)
        #expect(Geometry.pageSize % Geometry.cacheLine == 0)
        #expect(Geometry.maxObjectSize == Geometry.maxSlabPages * Geometry.pageSize)
        #expect(Geometry.bitmapBytesPerPage * 8 == Geometry.pageSize / Geometry.bitmapGranule)
        #expect(Geometry.bitmapGranule == 1 << Geometry.bitmapGranuleShift)
        #expect(Geometry.bitmapBytesPerPage % 4 == 0, "bitmap words are 32-bit")
        #expect(Geometry.maxSlabPages <= Geometry.exactRunBins, "slabs come from exact bins")
    }

    /// Every size from 1 byte to the largest object, at every alignment up to the page:
    /// the shape satisfies its invariants and no colour pushes an object past the end.
    /// The error tables (per cache, per front, C's `errors_by_kind`) have one entry per
    /// counted kind, and every kind from `.outsideArena` to `.accountingMismatch` has one.
    @Test func errorTablesCoverEveryCountedKind() {
        #expect(ErrorTable<UInt8>.count == QuarryError.countedKinds)
        #expect(QuarryError.countedKinds <= 16, "quarry_cache_statistics.errors_by_kind has 16 entries")
        var indexed = 0
        for raw in 0...255 {
            guard let e = QuarryError(rawValue: UInt8(raw)) else { continue }
            if let i = e.tableIndex {
                #expect(i == raw - QuarryError.firstCounted)
                indexed += 1
            } else {
                #expect(raw < QuarryError.firstCounted || raw >= QuarryError.firstCounted + QuarryError.countedKinds)
            }
        }
        #expect(indexed == QuarryError.countedKinds, "a gap or an uncounted kind in 16 ... 28")
        #expect(QuarryError.accountingMismatch.tableIndex == QuarryError.countedKinds - 1)
    }

    @Test(arguments: [Tuning.standard, Tuning.tiny])
    func everySizeHasAValidShape(tuning: Tuning) throws {
        var size = 1
        while size <= Geometry.maxObjectSize {
            var alignment = 1
            while alignment <= Geometry.pageSize {
                let g = try SlabGeometry.make(size: size, alignment: alignment, tuning: tuning)
                #expect(g.objectSize >= size)
                #expect(g.objectSize % max(alignment, Geometry.granule) == 0)
                #expect(
                    g.color(g.colorCount - 1) + g.objectsPerSlab * g.objectSize + g.inSlabBitmapBytes <= g.slabBytes)
                #expect(g.colorCount == g.slack / g.colorStep + 1)
                if tuning.maxObjectsPerSlab >= Int(UInt16.max), size <= Geometry.pageSize / 8, alignment <= 64 {
                    // Small objects waste at most 1/8 of a slab.
                    #expect(g.slack * Geometry.wasteDivisor <= g.slabBytes)
                }
                alignment <<= 2
            }
            size += size < 512 ? 1 : (size < 8192 ? 24 : 1000)
        }
    }

    /// Issue 10, item 8: metadata at most 2% of the arena at 64-byte objects. A 64-byte
    /// cache fills its one-page slabs with no slack and keeps its bits out of band, so
    /// all its metadata is the per-page descriptor and bitmap words (and the header).
    @Test func metadataAtMostTwoPercentAt64ByteObjects() throws {
        let perPage = PageDescriptor.stride + Geometry.bitmapBytesPerPage
        #expect(perPage * 50 <= Geometry.pageSize + perPage, "\(perPage) bytes per page")
        // The same on a 32-bit target: the descriptor is 32 + 2 words.
        #expect((32 + 2 * 4 + Geometry.bitmapBytesPerPage) * 50 <= Geometry.pageSize)
        let g = try SlabGeometry.make(size: 64, alignment: 8, tuning: .standard)
        #expect(!g.bitmapInSlab && g.inSlabBitmapBytes == 0 && g.slabPages == 1)
        #expect(g.objectsPerSlab == Geometry.pageSize / 64 && g.slack == 0)
        // Measured on whole heaps, header included (what `quarry-probe memory` reports).
        for size in [16 << 20, 1 << 30] {
            guard let raw = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
                raw != MAP_FAILED
            else {
                Issue.record("mmap failed")
                return
            }
            defer { munmap(raw, size) }
            let q = try Quarry<ThreadPlatform<1>>.initialize(base: raw, size: size)
            let meta = q.pageStatistics.metadataBytes
            #expect(meta * 50 <= size, "\(meta) bytes of metadata in \(size)")
        }
    }

    /// Objects smaller than the bitmap granule keep their bits at the end of their
    /// one-page slab, clear of every object and colour.
    @Test func smallObjectsKeepTheirBitsInTheSlab() throws {
        for (size, objects, bytes) in [
            (8, 504, 64), (16, 254, 32), (24, 169, 32), (32, 127, 16), (48, 85, 16),
            (56, 72, 16), (64, 64, 0), (72, 56, 0),
        ] {
            let g = try SlabGeometry.make(size: size, alignment: 8, tuning: .standard)
            #expect(g.objectsPerSlab == objects && g.inSlabBitmapBytes == bytes, "size \(size)")
            #expect(g.bitmapInSlab == (bytes > 0) && (!g.bitmapInSlab || g.slabPages == 1))
            #expect(g.color(g.colorCount - 1) + objects * g.objectSize + bytes <= g.slabBytes)
            // One object start per bitmap granule.
            #expect(1 << g.bitmapShift <= g.objectSize)
            #expect(bytes == 0 || bytes * 8 << g.bitmapShift == Geometry.pageSize)
        }
    }

    @Test func badShapesAreRefused() {
        #expect(throws: QuarryError.zeroSize) { try SlabGeometry.make(size: 0, alignment: 8, tuning: .standard) }
        #expect(throws: QuarryError.sizeTooLarge) {
            try SlabGeometry.make(size: Geometry.maxObjectSize + 1, alignment: 8, tuning: .standard)
        }
        for a in [0, 3, 12, -8, Geometry.pageSize * 2] {
            #expect(throws: QuarryError.badAlignment) {
                try SlabGeometry.make(size: 8, alignment: a, tuning: .standard)
            }
        }
    }

    @Test func objectsUpToFourPagesAndBeyond() throws {
        for size in [4 * Geometry.pageSize, 4 * Geometry.pageSize + 1, Geometry.maxObjectSize] {
            let g = try SlabGeometry.make(size: size, alignment: 8, tuning: .standard)
            #expect(g.objectsPerSlab >= 1 && g.slabPages <= Geometry.maxSlabPages)
        }
    }
}
