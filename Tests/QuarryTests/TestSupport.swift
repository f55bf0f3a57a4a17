// TestSupport: seeds, stress sizes, live-object models and interval checks shared by the
// host tests, and ExpectChecks (the scenarios of Tests/Scenarios reporting through #expect).
// Neighbours: ThreadPlatform (the platform), TestArena, every *Tests.swift file,
// Tests/Scenarios (ScenarioChecks; TestRandom: the generator and the cookies).

import QuarryScenarios
import Testing

@testable import Quarry

/// A scenario's checks as `#expect`s: a failure names the check and where the test ran
/// the scenario.
struct ExpectChecks: ScenarioChecks {
    let sourceLocation: SourceLocation
    init(_ sourceLocation: SourceLocation = #_sourceLocation) { self.sourceLocation = sourceLocation }

    func check(_ name: StaticString, _ condition: Bool, _ detail: StaticString) {
        #expect(condition, "\(name): \(detail)", sourceLocation: sourceLocation)
    }

    func checkEqual(_ name: StaticString, _ actual: Int, _ expected: Int) {
        #expect(actual == expected, "\(name)", sourceLocation: sourceLocation)
    }
}

/// Seeds for randomized tests: the ones given (fixed for reproducible CI, or drawn by
/// the caller), or QUARRY_SEED alone when it is set.
func testSeeds(_ fixed: [UInt64]) -> [UInt64] {
    if let s = ProcessInfoLite.environment("QUARRY_SEED"), let v = UInt64(s) { return [v] }
    return fixed
}

/// Operations per thread in the threaded tests (QUARRY_STRESS_OPS overrides).
func stressOperations(_ standard: Int) -> Int {
    if let s = ProcessInfoLite.environment("QUARRY_STRESS_OPS"), let v = Int(s) { return v }
    return standard
}

enum ProcessInfoLite {
    static func environment(_ name: String) -> String? {
        guard let v = getenv(name) else { return nil }
        return String(cString: v)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Caches every heap has from `initialize` on: `quarry_cache` (the cache of caches)
/// and `quarry_magazine` (the per-CPU layer's magazines).
let internalCaches = 2

/// Collects text written through a ByteSink.
struct TextBuffer: ByteSink {
    var bytes: [UInt8] = []
    mutating func write(_ byte: UInt8) { bytes.append(byte) }
    var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// A live object in a model: its address, size and cookie.
struct LiveObject {
    var address: UInt
    var size: Int
    var cookie: UInt64
    var cacheIndex: Int
}

/// True when no two of `objects` overlap.
func noOverlap(_ objects: [LiveObject]) -> Bool {
    let sorted = objects.sorted { $0.address < $1.address }
    for i in sorted.indices.dropFirst() where sorted[i - 1].address + UInt(sorted[i - 1].size) > sorted[i].address {
        return false
    }
    return true
}

extension SlabCache {
    /// Colour (byte offset of object 0) of the slab holding `object`.
    func slabColor(of object: UnsafeMutableRawPointer) -> Int? {
        guard case .success(let page) = locate(UInt(bitPattern: object)) else { return nil }
        return Int(heap.pointee.map[page].color)
    }

    /// First and one-past-last byte of the slab holding `object`.
    func slabBounds(of object: UnsafeMutableRawPointer) -> (start: UInt, end: UInt)? {
        guard case .success(let page) = locate(UInt(bitPattern: object)) else { return nil }
        let start = heap.pointee.arena.address(of: page)
        return (start, start + UInt(geometry.slabBytes))
    }
}
