// CABITests: the C functions over the global instance: a C program written against
// quarry.h, error codes equal to QuarryError's raw values, calls before quarry_init.
// Serialized: every test here uses the one global instance.

import CQuarryHeader
import Quarry
@testable import QuarryC
import QuarryCScenario
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct CABITests {
    @Test func cScenarioPasses() {
        let size = 8 << 20
        let arena = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer {
            CABI.instance = nil
            arena.deallocate()
        }
        arena.initializeMemory(as: UInt8.self, repeating: 0xA5, count: size)
        let failures = quarry_c_scenario(arena, size) { message in
            Issue.record(Comment(rawValue: String(cString: message!)))
        }
        #expect(failures == 0)
    }

    @Test func callsBeforeInitAreRefused() {
        CABI.instance = nil
        #expect(quarry_malloc(16) == nil)
        #expect(quarry_last_error() == QUARRY_ERR_NOT_INITIALIZED)
        #expect(quarry_cache_create("x", 16, 8, nil) == nil)
        var p: UnsafeMutableRawPointer? = nil
        #expect(quarry_posix_memalign(&p, 16, 16) == QUARRY_ENOMEM && p == nil)
        var x = 0
        quarry_free(&x)
        #expect(quarry_last_error() == QUARRY_ERR_NOT_INITIALIZED)
        var h = quarry_heap_statistics()
        #expect(quarry_heap_stats(&h) == QUARRY_ERR_NOT_INITIALIZED)
        quarry_check_invariants()
        #expect(quarry_shrink() == 0)
    }

    @Test func errorCodesAreQuarryErrorRawValues() {
        let pairs: [(quarry_error, QuarryError)] = [
            (QUARRY_ERR_ZERO_SIZE, .zeroSize), (QUARRY_ERR_SIZE_TOO_LARGE, .sizeTooLarge),
            (QUARRY_ERR_BAD_ALIGNMENT, .badAlignment), (QUARRY_ERR_OUT_OF_MEMORY, .outOfMemory),
            (QUARRY_ERR_ARENA_TOO_SMALL, .arenaTooSmall), (QUARRY_ERR_INVALID_CACHE, .invalidCache),
            (QUARRY_ERR_NOT_INITIALIZED, .notInitialized), (QUARRY_ERR_BUSY, .busy),
            (QUARRY_ERR_OUTSIDE_ARENA, .outsideArena),
            (QUARRY_ERR_METADATA_POINTER, .metadataPointer), (QUARRY_ERR_FREE_PAGE, .freePage),
            (QUARRY_ERR_INTERIOR_POINTER, .interiorPointer), (QUARRY_ERR_MISALIGNED, .misaligned),
            (QUARRY_ERR_WRONG_CACHE, .wrongCache), (QUARRY_ERR_DOUBLE_FREE, .doubleFree),
            (QUARRY_ERR_CORRUPT_FREE_LIST, .corruptFreeList), (QUARRY_ERR_CACHE_NOT_EMPTY, .cacheNotEmpty),
            (QUARRY_ERR_SIZE_MISMATCH, .sizeMismatch), (QUARRY_ERR_RECLAIM_STALLED, .reclaimStalled),
            (QUARRY_ERR_RED_ZONE, .redZoneOverwritten), (QUARRY_ERR_USE_AFTER_FREE, .useAfterFree),
            (QUARRY_ERR_ACCOUNTING_MISMATCH, .accountingMismatch),
        ]
        for (c, swift) in pairs { #expect(c.rawValue == UInt32(swift.rawValue), "\(swift)") }
        // Every QuarryError has its C constant.
        let all = (0...255).compactMap { QuarryError(rawValue: UInt8($0)) }
        #expect(all.count == pairs.count)
        #expect(QUARRY_OK.rawValue == 0 && QuarryError(rawValue: 0) == nil)
    }

    @Test func errorNamesAreNulTerminated() {
        for raw in 0...40 {
            let name = quarry_error_name(quarry_error(rawValue: UInt32(raw)))!
            let expected: StaticString = raw == 0 ? "ok" : QuarryError(rawValue: UInt8(raw))?.name ?? "unknown"
            #expect(strlen(name) == expected.utf8CodeUnitCount, "error \(raw)")
            #expect(String(cString: name) == expected.description)
        }
    }

    @Test func slabinfoThroughACallbackIsTheTable() {
        let size = 1 << 20
        let arena = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer {
            CABI.instance = nil
            arena.deallocate()
        }
        #expect(quarry_init(arena, size) == QUARRY_OK)
        let p = quarry_malloc(300)
        final class Lines: @unchecked Sendable { var text = "" }
        let lines = Lines()
        quarry_slabinfo({ text, length, context in
            let lines = Unmanaged<Lines>.fromOpaque(context!).takeUnretainedValue()
            lines.text += String(decoding: UnsafeRawBufferPointer(start: text, count: length), as: UTF8.self)
        }, Unmanaged.passUnretained(lines).toOpaque())
        #expect(lines.text.hasPrefix("# name"))
        #expect(lines.text.contains("malloc-320"))
        #expect(lines.text.contains("# spans: 0 live"))
        quarry_free(p)
        quarry_check_invariants()
    }
}
