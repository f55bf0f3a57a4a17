// AddressSanitizerTests: under `make test-asan` (QUARRY_ASAN=1, --sanitize=address) a
// write to a freed object (in a magazine, on a slab's free list) or a freed span must
// kill the process with ASan's report; elsewhere these tests are skipped.
// Neighbours: AddressSanitizer.swift (what is poisoned), CQuarryASan, ThreadPlatform.

import Testing

@testable import Quarry

@Suite("AddressSanitizer", .enabled(if: AddressSanitizer.isActive, "needs make test-asan"))
struct AddressSanitizerTests {
    @Test("a freed object is poisoned, all but its link word; handed out again it is not")
    func poisonedWhileFree() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "asan", size: 64)
        let p = try c.allocate()
        try c.free(p)
        #expect(AddressSanitizer.isPoisoned(p + 8))
        #expect(AddressSanitizer.isPoisoned(p + 63))
        #expect(!AddressSanitizer.isPoisoned(p))  // the link word
        let again = try c.allocate()
        #expect(again == p)
        #expect(!AddressSanitizer.isPoisoned(p + 8))
        try c.free(again)
        #expect(c.destroy() == 0)
    }

    /// The child died of ASan's report on manually poisoned memory, not of something else.
    static func expectPoisonReport(_ result: ExitTest.Result?) {
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("AddressSanitizer: use-after-poison"), "\(text.suffix(2000))")
    }

    @Test("a write after free into a magazine's object is reported by ASan")
    func useAfterFreeInMagazine() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let arena = TestArena(size: 1 << 20)
            let q = try! arena.quarry()
            let c = try! q.createCache(name: "uaf", size: 64)
            let p = try! c.allocate()
            try! c.free(p)
            p.storeBytes(of: 0xDEAD, toByteOffset: 16, as: UInt64.self)
        }
        Self.expectPoisonReport(result)
    }

    @Test("a write after free into an object on a slab's free list is reported by ASan")
    func useAfterFreeOnSlab() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let arena = TestArena(size: 1 << 20)
            let q = try! arena.quarry(tuning: .noMagazines)
            let c = try! q.createCache(name: "uaf", size: 48)
            let keep = try! c.allocate()
            let p = try! c.allocate()
            try! c.free(p)
            _ = keep
            p.storeBytes(of: 0xDEAD, toByteOffset: 8, as: UInt64.self)
        }
        Self.expectPoisonReport(result)
    }

    @Test("a read and write after free of a malloc front span is reported by ASan")
    func useAfterFreeOfSpan() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let arena = TestArena(size: 4 << 20)
            let q = try! arena.quarry()
            let p = try! q.front.malloc(100_000)
            try! q.front.free(p)
            let stray = p.load(fromByteOffset: 5000, as: UInt64.self)
            p.storeBytes(of: stray, toByteOffset: 5000, as: UInt64.self)
        }
        Self.expectPoisonReport(result)
    }
}
