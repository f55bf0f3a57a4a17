import Testing
@testable import Quarry

@Suite struct SmokeTests {
    @Test func allocateAndFree() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "smoke", size: 24)
        var ptrs: [UnsafeMutableRawPointer] = []
        for _ in 0..<1000 { ptrs.append(try c.allocate()) }
        q.checkInvariants()
        for p in ptrs { try c.free(p) }
        q.checkInvariants()
        #expect(c.destroy() == 0)
        q.checkInvariants()
        var out = TextBuffer()
        q.writeSlabinfo(to: &out)
        print(out.text)
    }
}
