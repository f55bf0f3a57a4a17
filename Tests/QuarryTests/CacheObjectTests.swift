// CacheObjectTests: the typed handle at run time: a round trip, the cached mark its free
// writes (so a stale raw pointer's free is refused), the slow paths under tiny magazines,
// a nested allocate and `tryFree` at every hook point, and `free()` trapping where only
// `tryFree()` may be used. The compile-time half is QuarryCTests/CacheObjectCompileTests.
// Neighbours: Sources/Quarry/PerCPU/CacheObject.swift, InjectionTests (the hook technique).

import QuarryScenarios
import Testing

@_spi(Testing) @testable import Quarry

@Suite struct CacheObjectTests {
    @Test func allocateUseFree() throws {
        let arena = TestArena(size: 1 << 20)
        defer { arena.release() }
        let q = try arena.quarry()
        let c = try q.createCache(name: "typed", size: 40)
        let object = try c.allocateObject()
        #expect(object.byteCount == c.objectSize && object.cache.state == c.state)
        #expect(c.isUserHeld(UInt(bitPattern: object.pointer)))
        let sum = object.withUnsafeMutableBytes { bytes in
            for i in bytes.indices { bytes[i] = UInt8(i) }
            return bytes.reduce(0) { $0 + Int($1) }
        }
        #expect(sum == (0..<40).reduce(0, +))
        let stale = object.pointer
        let before = c.statistics
        object.free()
        let after = c.statistics
        #expect(after.freeHits == before.freeHits + 1 && after.activeObjects == 0 && after.errors == 0)
        // The handle's free wrote the cached mark: a raw free of the stale pointer is refused.
        #expect(throws: QuarryError.doubleFree) { try c.free(stale) }
        q.checkInvariants()
    }

    /// Many handles at once under two-round magazines: every free goes through the
    /// depot exchanges and flushes of the slow path; everything comes back.
    @Test(arguments: [Tuning.tiny, Tuning.standard, Tuning.noMagazines])
    func slowPathsWithManyHandles(tuning: Tuning) throws {
        let arena = TestArena(size: 8 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let c = try q.createCache(name: "typed-many", size: 64)
        let count = 500
        let handles = UnsafeMutablePointer<CacheObject<ThreadPlatform<1>>>.allocate(capacity: count)
        defer { handles.deallocate() }
        for round in 0..<3 {
            for i in 0..<count {
                (handles + i).initialize(to: try c.allocateObject())
                Cookie.write(handles[i].pointer, size: 64, key: UInt(round))
            }
            #expect(c.activeObjects == count)
            for i in 0..<count {
                let j = round % 2 == 0 ? i : count - 1 - i
                #expect(Cookie.check(handles[j].pointer, size: 64, key: UInt(round)))
                (handles + j).move().free()
            }
            q.checkInvariants()
            #expect(c.activeObjects == 0)
        }
        #expect(c.statistics.errors == 0)
        #expect(c.destroy() == 0)
        q.drainAll()
        #expect(q.pageStatistics.pagesInUse == 0)
    }

    /// At every hook point a simulated interrupt allocates a handle and frees one with
    /// `tryFree()`: where the CPU holds the cache lock the free comes back (`.busy`),
    /// the object still the caller's; everywhere else it is freed, on the nested path
    /// when the slot is claimed. Invariants after every outer operation.
    @Test(arguments: [Tuning.tiny, Tuning.standard])
    func nestedHandlesAtEveryHookPoint(tuning: Tuning) throws {
        let arena = TestArena(size: 8 << 20)
        defer { arena.release() }
        let q = try arena.quarry(tuning: tuning)
        let c = try q.createCache(name: "typed-nested", size: 48)
        let injector = HandleInjector(cache: c)
        defer { injector.release() }
        q.setTestHook(TestHook(function: HandleInjector.hook, context: Unmanaged.passUnretained(injector).toOpaque()))
        defer { q.setTestHook(nil) }
        var rng = SeededGenerator(seed: 0x7E5)
        for raw in 0..<UInt32(HookPoint.count) {
            injector.target = HookPoint(rawValue: raw)
            for _ in 0..<150 {
                injector.injectedThisOperation = false
                if injector.count == 0 || rng.below(100) < 50 {
                    injector.push(try c.allocateObject())
                } else {
                    injector.pop().free()
                }
                q.checkInvariants()
            }
        }
        q.setTestHook(nil)
        #expect(injector.nestedFreed > 0 && injector.nestedAllocated > 0)
        // Two-round magazines refill and flush under the cache lock all the time.
        if tuning.magazineSize == 2 { #expect(injector.nestedBusy > 0) }
        #expect(injector.mismatches == 0)
        while injector.count > 0 { injector.pop().free() }
        q.checkInvariants()
        #expect(c.statistics.activeObjects == 0 && c.statistics.errors == 0)
    }

    /// `free()` where a free would be `.busy` (a nested call while this CPU holds the
    /// cache lock) traps with its message; `tryFree()` is the call for that context.
    @Test func freeTrapsWhereOnlyTryFreeIsAllowed() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let arena = TestArena(size: 1 << 20)
            defer { arena.release() }
            let q = try arena.quarry(tuning: .tiny)
            let c = try q.createCache(name: "typed-trap", size: 48)
            let injector = HandleInjector(cache: c)
            injector.useFree = true
            injector.target = .cacheLocked
            q.setTestHook(
                TestHook(function: HandleInjector.hook, context: Unmanaged.passUnretained(injector).toOpaque()))
            for _ in 0..<10 {
                injector.injectedThisOperation = false
                injector.push(try c.allocateObject())
            }
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("use tryFree()"), "\(message)")
    }
}

/// Handles owned by the test, in allocator-independent host memory, and what a
/// simulated interrupt does with them.
final class HandleInjector {
    let cache: SlabCache<ThreadPlatform<1>>
    let capacity = 4096
    let handles: UnsafeMutablePointer<CacheObject<ThreadPlatform<1>>>
    var count = 0
    var target: HookPoint? = nil
    var injectedThisOperation = false
    var nested = false
    /// Nested frees with `free()` instead of `tryFree()` (the trap test).
    var useFree = false
    var nestedAllocated = 0
    var nestedFreed = 0
    var nestedBusy = 0
    var mismatches = 0

    init(cache: SlabCache<ThreadPlatform<1>>) {
        self.cache = cache
        handles = .allocate(capacity: capacity)
    }

    func release() {
        (handles + 0).deinitialize(count: count)
        handles.deallocate()
    }

    func push(_ object: consuming CacheObject<ThreadPlatform<1>>) {
        precondition(count < capacity)
        Cookie.write(object.pointer, size: 48, key: 0x7E5)
        (handles + count).initialize(to: object)
        count += 1
    }

    func pop() -> CacheObject<ThreadPlatform<1>> {
        count -= 1
        let object = (handles + count).move()
        if !Cookie.check(object.pointer, size: 48, key: 0x7E5) { mismatches += 1 }
        return object
    }

    func fire(_ raw: UInt32) {
        guard !nested, let point = HookPoint(rawValue: raw), point == target, !injectedThisOperation else { return }
        injectedThisOperation = true
        nested = true
        defer { nested = false }
        do throws(QuarryError) {
            push(try cache.allocateObject())
            nestedAllocated += 1
        } catch {
            // .outOfMemory: the CPU holds the cache lock.
        }
        guard count > 0 else { return }
        let object = pop()
        if useFree {
            object.free()
            nestedFreed += 1
        } else if let back = object.tryFree() {
            nestedBusy += 1
            #expect(cache.isUserHeld(UInt(bitPattern: back.pointer)), "a busy free changed nothing")
            push(back)
        } else {
            nestedFreed += 1
        }
    }

    static let hook: @convention(c) (UnsafeMutableRawPointer?, UInt32) -> Void = { context, point in
        Unmanaged<HandleInjector>.fromOpaque(context!).takeUnretainedValue().fire(point)
    }
}
