// CABITests: the C functions over the global instance: a C program written against
// quarry.h, error codes equal to QuarryError's raw values, calls before quarry_init,
// threads (a CPU index each, concurrent calls, the limit), the per-thread last error,
// the handle generation.
// Serialized: every test here uses the one global instance.

import CQuarryHeader
import Foundation
import Quarry
import QuarryCScenario
import Synchronization
import Testing

@testable import QuarryC

#if canImport(Glibc)
import Glibc
#endif

/// A job for a new thread.
final class ThreadJob {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Runs `body(i)` for i in 0 ..< count, each on a new thread, and returns when every
/// thread has exited (pthread_join: its key destructors, which give its CPU index
/// back, have run).
func onNewThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    var threads: [pthread_t] = []
    for i in 0..<count {
        let job = Unmanaged.passRetained(ThreadJob { body(i) }).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(
            &thread, nil,
            { job in
                Unmanaged<ThreadJob>.fromOpaque(job!).takeRetainedValue().body()
                return nil
            }, job)
        precondition(created == 0, "pthread_create")
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
}

/// What the threads of one test share (atomics only).
final class ThreadResults: @unchecked Sendable {
    let arrived = Atomic<Int>(0)
    let go = Atomic<Bool>(false)
    let served = Atomic<Int>(0)
    let refused = Atomic<Int>(0)
    let refusal = Atomic<UInt32>(0)
    let failures = Atomic<Int>(0)
    /// Per thread: its CPU index, and its last error at the end.
    let cpus: UnsafeMutablePointer<Atomic<Int>>
    let errors: UnsafeMutablePointer<Atomic<UInt32>>
    let threads: Int

    init(threads: Int) {
        self.threads = threads
        cpus = .allocate(capacity: threads)
        errors = .allocate(capacity: threads)
        for i in 0..<threads {
            (cpus + i).initialize(to: Atomic<Int>(-2))
            (errors + i).initialize(to: Atomic<UInt32>(99))
        }
    }

    deinit {
        cpus.deinitialize(count: threads).deallocate()
        errors.deinitialize(count: threads).deallocate()
    }

    /// Waits until `count` threads have arrived (each calls it once).
    func meet(_ count: Int) {
        if arrived.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue == count {
            go.store(true, ordering: .releasing)
        }
        while !go.load(ordering: .acquiring) { sched_yield() }
    }

    func check(_ condition: Bool) {
        if !condition { failures.wrappingAdd(1, ordering: .relaxed) }
    }
}

/// The cache the error hook last saw.
let hookedCache = Atomic<UInt>(0)

/// CPU indexes held by live threads.
var heldCPUs: Int { (0..<HostCPlatform.maxCPUs).filter { CCaller.owners[$0].load(ordering: .acquiring) }.count }

/// A heap for one test over a fresh arena; `body` runs with it; then no instance.
func withInstance(size: Int = 8 << 20, _ body: () throws -> Void) rethrows {
    let arena = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
    defer {
        CABI.instance = nil
        arena.deallocate()
    }
    #expect(quarry_init(arena, size) == QUARRY_OK)
    try body()
}

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
        #expect(quarry_shrink() == 0 && quarry_drain_all() == 0)
    }

    @Test func errorCodesAreQuarryErrorRawValues() {
        let pairs: [(quarry_error, QuarryError)] = [
            (QUARRY_ERR_ZERO_SIZE, .zeroSize), (QUARRY_ERR_SIZE_TOO_LARGE, .sizeTooLarge),
            (QUARRY_ERR_BAD_ALIGNMENT, .badAlignment), (QUARRY_ERR_OUT_OF_MEMORY, .outOfMemory),
            (QUARRY_ERR_ARENA_TOO_SMALL, .arenaTooSmall), (QUARRY_ERR_INVALID_CACHE, .invalidCache),
            (QUARRY_ERR_NOT_INITIALIZED, .notInitialized), (QUARRY_ERR_BUSY, .busy),
            (QUARRY_ERR_TOO_MANY_THREADS, .tooManyThreads), (QUARRY_ERR_BAD_OPTIONS, .badOptions),
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
        quarry_slabinfo(
            { text, length, context in
                let lines = Unmanaged<Lines>.fromOpaque(context!).takeUnretainedValue()
                lines.text += String(decoding: UnsafeRawBufferPointer(start: text, count: length), as: UTF8.self)
            }, Unmanaged.passUnretained(lines).toOpaque())
        #expect(lines.text.hasPrefix("# name"))
        #expect(lines.text.contains("malloc-320"))
        #expect(lines.text.contains("# spans: 0 live"))
        quarry_free(p)
        quarry_check_invariants()
    }

    // MARK: Threads, the last error, handles (issue 11)

    /// Two threads get distinct CPU indexes (not the test thread's) and allocate and
    /// free concurrently through the C functions, cache and malloc, with a cookie in
    /// every block; each keeps its own last error; their indexes come back at exit.
    @Test func twoThreadsGetTheirOwnCPUAndAllocateConcurrently() {
        withInstance {
            let cache = quarry_cache_create("shared", 48, 0, nil)
            #expect(cache != nil)
            let mine = CCaller.cpu
            #expect(mine >= 0, "quarry_init gave the test thread an index")
            let results = ThreadResults(threads: 2)
            let cacheBits = UInt(bitPattern: cache)
            onNewThreads(2) { t in
                let cache = OpaquePointer(bitPattern: cacheBits)
                results.check(CCaller.cpu == -1 && quarry_last_error() == QUARRY_OK)
                let first = quarry_malloc(16)
                results.check(first != nil)
                results.cpus[t].store(CCaller.cpu, ordering: .relaxed)
                results.meet(2)
                var blocks: [(UnsafeMutableRawPointer, UInt)] = []
                for round in 0..<500 {
                    for k in 0..<24 {
                        let cookie = UInt(t) << 48 | UInt(round) << 16 | UInt(k)
                        if let p = k % 2 == 0 ? quarry_cache_alloc(cache) : quarry_malloc(8 + 8 * k) {
                            p.storeBytes(of: cookie, as: UInt.self)
                            blocks.append((p, cookie))
                        } else {
                            results.check(false)
                        }
                    }
                    for (i, (p, cookie)) in blocks.enumerated() {
                        results.check(p.load(as: UInt.self) == cookie)
                        if i % 2 == 0 {
                            results.check(quarry_cache_free(cache, p) == QUARRY_OK)
                        } else {
                            quarry_free(p)
                        }
                    }
                    blocks.removeAll(keepingCapacity: true)
                }
                quarry_free(first)
                // Thread 0 is refused once; thread 1's last error stays QUARRY_OK.
                if t == 0 {
                    var outside = 0
                    quarry_free(&outside)
                }
                results.meet(4)
                results.errors[t].store(quarry_last_error().rawValue, ordering: .relaxed)
                results.check(CCaller.cpu == results.cpus[t].load(ordering: .relaxed))
            }
            #expect(results.failures.load(ordering: .relaxed) == 0)
            let a = results.cpus[0].load(ordering: .relaxed), b = results.cpus[1].load(ordering: .relaxed)
            #expect(
                a >= 0 && b >= 0 && a != b && a != mine && b != mine, "indexes \(a), \(b); the test thread's \(mine)")
            #expect(results.errors[0].load(ordering: .relaxed) == QUARRY_ERR_OUTSIDE_ARENA.rawValue)
            #expect(results.errors[1].load(ordering: .relaxed) == QUARRY_OK.rawValue)
            #expect(
                !CCaller.owners[a].load(ordering: .acquiring) && !CCaller.owners[b].load(ordering: .acquiring),
                "given back at thread exit")
            var cs = quarry_cache_statistics()
            #expect(
                quarry_cache_stats(cache, &cs) == QUARRY_OK && cs.active_objects == 0 && cs.allocations == 2 * 500 * 12)
            quarry_check_invariants()
            #expect(quarry_cache_destroy(cache) == QUARRY_OK)
            _ = quarry_drain_all()
            var h = quarry_heap_statistics()
            #expect(quarry_heap_stats(&h) == QUARRY_OK && h.pages_in_use == 0)
        }
    }

    /// With every CPU index held, one more thread is refused with
    /// QUARRY_ERR_TOO_MANY_THREADS (and keeps that as its last error); the indexes come
    /// back when the threads exit, and a new thread is served again.
    @Test func aThreadBeyondTheLastCPUIsRefused() {
        withInstance {
            let free = HostCPlatform.maxCPUs - heldCPUs
            #expect(free > 0 && free < HostCPlatform.maxCPUs)
            let results = ThreadResults(threads: free + 1)
            onNewThreads(free + 1) { t in
                let p = quarry_malloc(16)
                if p != nil {
                    results.served.wrappingAdd(1, ordering: .relaxed)
                } else {
                    results.refused.wrappingAdd(1, ordering: .relaxed)
                    results.refusal.store(quarry_last_error().rawValue, ordering: .relaxed)
                    results.check(CCaller.cpu == -1)
                    results.check(
                        quarry_cache_create("x", 16, 0, nil) == nil
                            && quarry_last_error() == QUARRY_ERR_TOO_MANY_THREADS)
                }
                // Hold the index until every thread has tried.
                results.meet(free + 1)
                quarry_free(p)
            }
            #expect(results.failures.load(ordering: .relaxed) == 0)
            #expect(results.served.load(ordering: .relaxed) == free && results.refused.load(ordering: .relaxed) == 1)
            #expect(results.refusal.load(ordering: .relaxed) == QUARRY_ERR_TOO_MANY_THREADS.rawValue)
            #expect(heldCPUs == HostCPlatform.maxCPUs - free, "every index given back at thread exit")
            let again = ThreadResults(threads: 1)
            onNewThreads(1) { _ in
                let p = quarry_malloc(16)
                again.check(p != nil && CCaller.cpu >= 0)
                quarry_free(p)
            }
            #expect(again.failures.load(ordering: .relaxed) == 0)
            quarry_check_invariants()
        }
    }

    /// A destroyed cache's handle is refused although each new cache lives in its memory,
    /// until 64 caches later the generation wraps (the documented limit).
    @Test func aStaleHandleIsRefusedUntilTheGenerationWraps() {
        withInstance {
            let first = quarry_cache_create("gen", 40, 0, nil)
            #expect(first != nil && quarry_cache_destroy(first) == QUARRY_OK)
            // quarry.h: a handle is its state (256-aligned) plus 4 * generation, 64 generations.
            let memory = UInt(bitPattern: first) & ~UInt(255)
            for n in 1...64 {
                let next = quarry_cache_create("gen", 40, 0, nil)
                #expect(next != nil && UInt(bitPattern: next) & ~UInt(255) == memory, "the same memory")
                if n < 64 {
                    #expect(next != first)
                    quarry_clear_error()
                    #expect(quarry_cache_alloc(first) == nil && quarry_last_error() == QUARRY_ERR_INVALID_CACHE)
                    #expect(quarry_cache_destroy(first) == QUARRY_ERR_INVALID_CACHE)
                } else {
                    #expect(next == first, "the generation wrapped")
                }
                #expect(quarry_cache_destroy(next) == QUARRY_OK)
            }
        }
    }

    /// The error hook names a cache by its handle (the generation included).
    @Test func theErrorHookGetsTheHandle() {
        withInstance {
            let cache = quarry_cache_create("hooked", 40, 0, nil)
            #expect(UInt(bitPattern: cache) % 256 != 0, "a handle with generation bits")
            hookedCache.store(0, ordering: .relaxed)
            quarry_set_error_hook { _, cache, _ in hookedCache.store(UInt(bitPattern: cache), ordering: .relaxed) }
            let p = quarry_cache_alloc(cache)
            #expect(quarry_cache_free(cache, p! + 8) == QUARRY_ERR_INTERIOR_POINTER)
            #expect(hookedCache.load(ordering: .relaxed) == UInt(bitPattern: cache))
            quarry_set_error_hook(nil)
            #expect(quarry_cache_free(cache, p) == QUARRY_OK)
        }
    }
}
