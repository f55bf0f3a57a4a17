// SingleStepTests: single-step re-entry (issue 14, item 1, host part). The x86 trap flag
// (EFLAGS.TF, Tests/CTestPlatform) is set around one call of a hit path or a miss path, so
// a SIGTRAP arrives after every instruction of it. The test thread does not register, so
// it is CPU 0 (of a `ThreadPlatform<1>` heap), and the SIGTRAP handler plays an interrupt
// on that CPU: unless VirtualCPU's per-thread mask count says "interrupts off", it allocates,
// checks and frees on the same cache, through the malloc front and inside an epoch read
// section. After the call, at quiescence, everything both sides allocated must be
// distinct, intact and freeable, and the invariants must hold.
// Neighbours: Tests/CTestPlatform (TF, the per-thread mask count), VirtualCPU (the
// signal-interrupt model this handler follows), InjectionTests
// (nested calls at hook points), docs/testing.md ("Single-step re-entry").
//
// Written against the public API (plus `checkInvariants`), so it holds for any hit-path
// design: today's (the hit path masks interrupts, so most of its boundaries are masked
// and the handler counts them instead of calling Quarry) and one that does not mask
// (then the handler lands inside the hit path and must be served by a nested path).
//
// Signal-safety: the handler touches only the context below (C heap memory, raw
// buffers), Quarry, the C mask functions and the shared HandlerWork
// (Tests/Scenarios/HandlerWork.swift: the allocations, checks and counts, whose state is
// the ledger and live map this context points to): no Swift allocation, no lock, no
// exclusivity-checked global. Every path it and the stepped call take is run once
// before stepping (the dry run), so no metadata, lazy binding or `swift_once` is first
// done inside the handler or between the trap and the handler.

import CTestPlatform
import QuarryScenarios
import Testing

@testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

// MARK: - What the handler sees

/// Everything the handler reads and writes, in C heap memory. The handler's work, its
/// checks and its counts are the shared `HandlerWork` (Tests/Scenarios, as the test
/// kernel's NMI and #DB handlers use it): its state is the ledger and the live map's
/// bytes this context points to.
struct StepContext {
    var armed = false
    /// One byte per 8-byte granule of the arena, shared by the test's own objects and the
    /// handler's, so no object is ever held twice.
    var live: LiveMap? = nil
    /// The handler's work on the measured cache (objects) and a malloc class (blocks),
    /// nil while no scenario runs.
    var work: HandlerWork<ThreadPlatform<1>>? = nil
    /// Per interrupt: two objects and two blocks, allocated then freed in reverse (the
    /// slot ends as it began), or for a slot whose loaded magazine is empty (where an
    /// allocation first would miss and change what the interrupted call does) the two the
    /// handler keeps freed, then as many allocated back.
    var objectShape = HandlerShape.allocateThenFree(2)
    var blockShape = HandlerShape.allocateThenFree(2)
    /// The handler's kept objects, counts and first failure (also the test's own
    /// objects' failures), made fresh for each run.
    var ledger: UnsafeMutablePointer<HandlerLedger>
    var reclaimer: EpochReclaimer<ThreadPlatform<1>>? = nil
    /// Change the slot's object count at every interrupt: one net allocation (kept) at
    /// each of `perturbPeriod - 1` interrupts, then all of them freed at the next. Any run
    /// of 1 to `perturbPeriod - 1` consecutive interrupts changes the count, so an
    /// interrupt inside an unprotected read-modify-write of the slot leaves a trace (a
    /// duplicate, a lost object, a lost count); a balanced handler would restore the slot
    /// exactly and hide it. The drift stays below half a magazine, so a hit stays a hit.
    /// Off for miss scenarios, where it would turn the measured miss into a hit.
    var perturb = false
    static let perturbPeriod = 12

    // Counters.
    var steps = 0
    /// Traps whose interrupted context still had TF set (all but the last).
    var tfSet = 0
    var masked = 0
    /// Boundaries where the handler called Quarry.
    var ran = 0
    /// Of those, boundaries where it got at least one object.
    var served = 0
    var perturbAllocations = 0
    var perturbFrees = 0
    var stray = 0
}

/// The one context (a `let`: no exclusivity check, no lazy initialisation in the handler).
nonisolated(unsafe) let stepContext: UnsafeMutablePointer<StepContext> = {
    let ledger = UnsafeMutablePointer<HandlerLedger>.allocate(capacity: 1)
    ledger.initialize(to: HandlerLedger())
    let p = UnsafeMutablePointer<StepContext>.allocate(capacity: 1)
    p.initialize(to: StepContext(ledger: ledger))
    return p
}()

extension UnsafeMutablePointer where Pointee == StepContext {
    func fail(_ what: HandlerFailure, _ address: UInt) { pointee.ledger.pointee.fail(what, address) }

    /// Checks a new object of the test's own of `size` bytes, marks it live and writes its cookie.
    func accept(_ p: UnsafeMutableRawPointer, size: Int) {
        let a = UInt(bitPattern: p)
        let found = HandlerWork<ThreadPlatform<1>>.accept(a, size: size, live: pointee.live)
        if found != .none { fail(found, a) }
    }

    /// Checks an object's cookie and marks it no longer live (before it is freed).
    func release(_ p: UnsafeMutableRawPointer, size: Int) {
        let a = UInt(bitPattern: p)
        let found = HandlerWork<ThreadPlatform<1>>.release(a, size: size, live: pointee.live)
        if found != .none { fail(found, a) }
    }

    var failures: Int { pointee.ledger.pointee.failures.load(ordering: .relaxed) }
    var failureText: String {
        let ledger = pointee.ledger
        return "first \(ledger.pointee.firstFailure) (address or error 0x"
            + "\(String(ledger.pointee.failureAddress.load(ordering: .relaxed), radix: 16)))"
    }
}

/// The interrupt body: an epoch read section around the work on the cache and the class,
/// plus one net allocation or free when perturbing.
private func interruptBody(_ ctx: UnsafeMutablePointer<StepContext>) {
    let reclaimer = ctx.pointee.reclaimer
    if let reclaimer {
        reclaimer.enter()
        if !reclaimer.isInsideCriticalSection { ctx.fail(.notInside, 0) }
    }
    if let work = ctx.pointee.work {
        let ledger = ctx.pointee.ledger
        if work.run(ledger, objects: ctx.pointee.objectShape, blocks: ctx.pointee.blockShape) {
            ctx.pointee.served += 1
        }
        if ctx.pointee.perturb {
            if ctx.pointee.ran % StepContext.perturbPeriod != StepContext.perturbPeriod - 1 {
                ctx.pointee.perturbAllocations += work.perform(ledger, isBlock: false, .keepOne)
            } else {
                ctx.pointee.perturbFrees += ledger.pointee.objects.count
                work.perform(ledger, isBlock: false, .freeAll)
            }
        }
    }
    reclaimer?.exit()
    ctx.pointee.ran += 1
}

/// The SIGTRAP handler: one instruction boundary of the stepped call.
private func onSingleStepTrap(
    _ signal: Int32, _ info: UnsafeMutablePointer<siginfo_t>?, _ ucontext: UnsafeMutableRawPointer?
) {
    let savedErrno = errno
    defer { errno = savedErrno }
    let ctx = stepContext
    guard ctx.pointee.armed else {
        ctx.pointee.stray += 1
        return
    }
    ctx.pointee.steps += 1
    if quarry_test_context_flags(ucontext) & 0x100 != 0 { ctx.pointee.tfSet += 1 }
    if quarry_test_mask_depth() > 0 {
        ctx.pointee.masked += 1
        return
    }
    // An interrupt gate: interrupts stay masked while the handler runs.
    let saved = quarry_test_mask_raise()
    interruptBody(ctx)
    quarry_test_mask_restore(saved)
}

// MARK: - Stepping

/// Runs `body` with TF set, with the handler armed and asynchronous signals blocked (a
/// timer signal of another suite must not land here). The counts go to `stepContext`.
@inline(never)
private func singleStep(_ body: () -> Void) {
    var block = sigset_t()
    var old = sigset_t()
    sigfillset(&block)
    for s in [SIGTRAP, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT] { sigdelset(&block, s) }
    pthread_sigmask(SIG_BLOCK, &block, &old)
    stepContext.pointee.armed = true
    quarry_test_tf_on()
    body()
    quarry_test_tf_off()
    stepContext.pointee.armed = false
    pthread_sigmask(SIG_SETMASK, &old, nil)
}

/// Installs the SIGTRAP handler for the duration of `body`.
private func withTrapHandler<R>(_ body: () throws -> R) rethrows -> R {
    var action = sigaction()
    action.__sigaction_handler.sa_sigaction = { signal, info, ucontext in onSingleStepTrap(signal, info, ucontext) }
    action.sa_flags = SA_SIGINFO
    sigemptyset(&action.sa_mask)
    var previous = sigaction()
    precondition(sigaction(SIGTRAP, &action, &previous) == 0, "sigaction")
    defer { sigaction(SIGTRAP, &previous, nil) }
    return try body()
}

/// Clears the context's counters.
private func resetCounters() {
    let c = stepContext
    c.pointee.steps = 0; c.pointee.tfSet = 0; c.pointee.masked = 0; c.pointee.ran = 0; c.pointee.served = 0
    c.pointee.perturbAllocations = 0; c.pointee.perturbFrees = 0; c.pointee.stray = 0
    c.pointee.ledger.pointee.resetCounts()
}

// MARK: - Scenarios

/// One stepped call: a path and the state that makes it a hit or a particular miss.
struct StepScenario: CustomTestStringConvertible, Sendable {
    enum Path: String, Sendable { case cacheAllocate, cacheFree, malloc, mallocFree, epochEnter, epochExit }
    enum Kind: String, Sendable {
        /// Loaded magazine half full: allocate pops, free pushes.
        case hit
        /// Both magazines and the depot empty: allocate refills from the slabs.
        case missRefill
        /// Both magazines empty, one full magazine in the depot: allocate exchanges.
        case missDepot
        /// Both magazines full, depot below its limit: free exchanges for an empty one.
        case missExchange
        /// Both magazines full, depot at its full limit: free flushes the coldest full
        /// magazine to the slabs, then exchanges.
        case missFlush
        /// Epoch: the outermost `enter`/`exit` (announces / withdraws).
        case outer
        /// Epoch: a nested `enter`/`exit` (depth only).
        case nested
    }
    let path: Path
    let kind: Kind
    /// Floor for boundaries where the handler ran Quarry (checked build, release build);
    /// see `all`.
    let ranFloor: (checked: Int, release: Int)
    /// Floor for instructions stepped, the wrappers included; likewise.
    let stepFloor: (checked: Int, release: Int)

    var name: String { "\(path.rawValue) \(kind.rawValue)" }
    var testDescription: String { name }

    var isMalloc: Bool { path == .malloc || path == .mallocFree }
    var isEpoch: Bool { path == .epochEnter || path == .epochExit }
    var allocates: Bool { path == .cacheAllocate || path == .malloc }
    var isMiss: Bool { kind != .hit && kind != .outer && kind != .nested }

    /// Floors: half of what was measured here (Swift 6.3.1, x86_64, `ThreadPlatform<1>`;
    /// boundaries that ran Quarry, instructions stepped), for the checked debug build and
    /// the release build (docs/testing.md, "Single-step re-entry"). Measured:
    ///
    ///     path                     checked ran / stepped   release ran / stepped
    ///     cacheAllocate hit         1879 / 1879        196 / 196
    ///     cacheAllocate missRefill  2103 / 90780       260 / 5950
    ///     cacheAllocate missDepot   2103 / 7870        260 / 667
    ///     cacheFree hit             3372 / 3372        259 / 259
    ///     cacheFree missExchange    6452 / 17755       486 / 1394
    ///     cacheFree missFlush       6452 / 97785       486 / 5522
    ///     malloc hit                2182 / 2182        219 / 219
    ///     malloc missRefill         2406 / 90982       286 / 5976
    ///     mallocFree hit            3358 / 3358        276 / 276
    ///     mallocFree missExchange   6257 / 17560       513 / 1421
    ///     epochEnter outer           189 / 598          72 / 133
    ///     epochEnter nested          189 / 590          72 / 129
    ///     epochExit outer            172 / 585          72 / 131
    ///     epochExit nested           172 / 582          72 / 130
    static let all: [StepScenario] = [
        .init(path: .cacheAllocate, kind: .hit, ranFloor: (939, 98), stepFloor: (939, 98)),
        .init(path: .cacheAllocate, kind: .missRefill, ranFloor: (1051, 130), stepFloor: (45390, 2975)),
        .init(path: .cacheAllocate, kind: .missDepot, ranFloor: (1051, 130), stepFloor: (3935, 333)),
        .init(path: .cacheFree, kind: .hit, ranFloor: (1686, 129), stepFloor: (1686, 129)),
        .init(path: .cacheFree, kind: .missExchange, ranFloor: (3226, 243), stepFloor: (8877, 697)),
        .init(path: .cacheFree, kind: .missFlush, ranFloor: (3226, 243), stepFloor: (48892, 2761)),
        .init(path: .malloc, kind: .hit, ranFloor: (1091, 109), stepFloor: (1091, 109)),
        .init(path: .malloc, kind: .missRefill, ranFloor: (1203, 143), stepFloor: (45491, 2988)),
        .init(path: .mallocFree, kind: .hit, ranFloor: (1679, 138), stepFloor: (1679, 138)),
        .init(path: .mallocFree, kind: .missExchange, ranFloor: (3128, 256), stepFloor: (8780, 710)),
        .init(path: .epochEnter, kind: .outer, ranFloor: (94, 36), stepFloor: (299, 66)),
        .init(path: .epochEnter, kind: .nested, ranFloor: (94, 36), stepFloor: (295, 64)),
        .init(path: .epochExit, kind: .outer, ranFloor: (86, 36), stepFloor: (292, 65)),
        .init(path: .epochExit, kind: .nested, ranFloor: (86, 36), stepFloor: (291, 65)),
    ]
}

/// What one run of a scenario measured.
struct StepMeasurement {
    var steps = 0, tfSet = 0, masked = 0, ran = 0, served = 0, refusals = 0, stray = 0
    var perturbAllocations = 0, perturbFrees = 0
}

/// The size of the objects of the measured cache (and malloc class), and of the other
/// malloc class the handler uses when the measured path is not the front.
private let objectBytes = 64
private let otherMallocBytes = 48

/// One heap set up for a scenario, with the test's own objects tracked in the live map.
private struct Bench {
    let arena: TestArena
    let q: Quarry<ThreadPlatform<1>>
    let reclaimer: EpochReclaimer<ThreadPlatform<1>>
    let cache: SlabCache<ThreadPlatform<1>>
    let scenario: StepScenario
    /// Objects the test holds (of `cache`), newest last.
    var held: [UnsafeMutableRawPointer] = []
    let live: UnsafeMutablePointer<UInt8>

    init(_ scenario: StepScenario) throws {
        self.scenario = scenario
        arena = TestArena(size: 8 << 20)
        q = try Quarry<ThreadPlatform<1>>.initialize(base: arena.base, size: arena.size)
        reclaimer = try q.createReclaimer(retiredPerCPU: 16)
        live = .allocate(capacity: arena.size / 8)
        live.initialize(repeating: 0, count: arena.size / 8)
        let c = stepContext
        c.pointee.live = LiveMap(start: arena.base, size: arena.size, bytes: live)
        // A fresh ledger: nothing held from a run that stopped half-way.
        c.pointee.ledger.deinitialize(count: 1)
        c.pointee.ledger.initialize(to: HandlerLedger())
        if scenario.isMalloc {
            // The class cache exists once the first block of its class was allocated.
            let first = try q.front.malloc(objectBytes)
            cache = try #require(q.cache(owning: first))
            stepContext.accept(first, size: objectBytes)
            held.append(first)
        } else {
            cache = try q.createCache(name: "step", size: objectBytes)
        }
    }

    mutating func take() throws {
        let p = scenario.isMalloc ? try q.front.malloc(objectBytes) : try cache.allocate()
        stepContext.accept(p, size: objectBytes)
        held.append(p)
    }

    /// Frees the newest held object.
    mutating func give() throws {
        let p = held.removeLast()
        stepContext.release(p, size: objectBytes)
        if scenario.isMalloc { try q.front.free(p) } else { try cache.free(p) }
    }

    var stats: CacheStatistics { cache.statistics }

    /// Objects of `cache` held by its CPU slot (magazines and reserve), not the depot.
    var inSlot: Int { stats.cachedObjects - stats.depotFullMagazines * cache.magazineCapacity }

    /// Brings the cache into the state of the scenario's kind.
    mutating func prepare() throws {
        let m = cache.magazineCapacity
        try #require(m >= 4)
        if held.isEmpty { try take() }  // attaches the CPU and refills its magazine
        switch scenario.kind {
        case .hit, .outer, .nested:
            while inSlot > m / 2 { try take() }
            try #require(inSlot == m / 2 && stats.depotFullMagazines == 0)
        case .missRefill:
            while stats.cachedObjects > 0 { try take() }
        case .missDepot:
            // Three magazines' worth freed: both magazines full, one full in the depot;
            // then two magazines' worth allocated: both empty, the depot keeps its one.
            while held.count < 3 * m { try take() }
            while stats.cachedObjects > 0 { try take() }
            for _ in 0..<(3 * m) { try give() }
            try #require(stats.depotFullMagazines == 1 && stats.cachedObjects == 3 * m)
            for _ in 0..<(2 * m) { try take() }
            try #require(stats.depotFullMagazines == 1 && stats.cachedObjects == m)
        case .missExchange, .missFlush:
            let depot = scenario.kind == .missFlush ? Tuning.standard.depotFullLimit : 0
            while held.count < (2 + depot) * m + 1 { try take() }
            while stats.cachedObjects > 0 { try take() }
            for _ in 0..<((2 + depot) * m) { try give() }
            try #require(stats.depotFullMagazines == depot && stats.cachedObjects == (2 + depot) * m)
        }
    }
}

/// True when the test process runs under ThreadSanitizer (`make host-tsan`): TSan takes
/// over signal delivery (it defers a handler to its own safe points) and its runtime is
/// not built to be single-stepped, so the trap-flag test would only test TSan. The
/// plain and release runs of `make test` cover it.
let runningUnderThreadSanitizer = dlsym(nil, "__tsan_init") != nil  // nil: RTLD_DEFAULT

@Suite(.serialized) struct SingleStepTests {
    /// Measures the instructions of an empty stepped region (the TF wrappers, the
    /// closure call): the per-call overhead included in every count.
    static let overhead: Int = withTrapHandler {
        stepContext.pointee.work = nil
        stepContext.pointee.reclaimer = nil
        for _ in 0..<2 { resetCounters(); singleStep {} }
        return stepContext.pointee.steps
    }

    /// Runs `scenario` once on a fresh heap: plain (`stepped == false`: the handler body is
    /// called directly instead, to warm every path the handler takes) or single-stepped.
    /// Checks what both runs must satisfy; returns the trap counts.
    func run(_ scenario: StepScenario, stepped: Bool) throws -> StepMeasurement {
        var bench = try Bench(scenario)
        defer {
            bench.arena.release()
            bench.live.deallocate()
            stepContext.pointee.live = nil
        }
        let ctx = stepContext
        let q = bench.q
        let front = q.front
        let m = bench.cache.magazineCapacity
        let freeFirst = scenario.kind == .missRefill || scenario.kind == .missDepot

        // The handler's work: the measured cache's objects, and blocks of its class (malloc
        // paths) or of another class. What it keeps comes first, so it does not change the
        // prepared state.
        let blockBytes = scenario.isMalloc ? objectBytes : otherMallocBytes
        let work = HandlerWork(cache: bench.cache, front: front, blockSize: blockBytes, live: ctx.pointee.live)
        let ledger = ctx.pointee.ledger
        let blocksFreeFirst = freeFirst && scenario.isMalloc
        ctx.pointee.reclaimer = bench.reclaimer
        resetCounters()
        for _ in 0..<2 {
            if freeFirst {
                let p = try bench.cache.allocate()
                ctx.accept(p, size: objectBytes)
                ledger.pointee.hold(UInt(bitPattern: p), isBlock: false)
            }
            if blocksFreeFirst {
                let p = try front.malloc(blockBytes)
                ctx.accept(p, size: blockBytes)
                ledger.pointee.hold(UInt(bitPattern: p), isBlock: true)
            }
        }
        ctx.pointee.objectShape = freeFirst ? .freeThenAllocate(2) : .allocateThenFree(2)
        ctx.pointee.blockShape = blocksFreeFirst ? .freeThenAllocate(2) : .allocateThenFree(2)
        if !scenario.isMalloc {
            // The other class: created and loaded, so the handler's malloc hits.
            let p = try front.malloc(otherMallocBytes)
            try front.free(p)
        }
        try bench.prepare()
        if scenario.isEpoch {
            if scenario.path == .epochExit { bench.reclaimer.enter() }
            if scenario.kind == .nested { bench.reclaimer.enter() }
        }
        ctx.pointee.work = work
        ctx.pointee.perturb = !scenario.isMiss

        // The measured call.
        let before = bench.stats
        let frontErrorsBefore = front.statistics.errors
        var freed = bench.held.last
        if !scenario.allocates && !scenario.isEpoch {
            bench.held.removeLast()
            ctx.release(freed.unsafelyUnwrapped, size: objectBytes)
        }
        var allocated: UnsafeMutableRawPointer? = nil
        var callError: QuarryError? = nil
        let cache = bench.cache
        let reclaimer = bench.reclaimer
        let call: () -> Void
        switch scenario.path {
        case .cacheAllocate:
            call = { do throws(QuarryError) { allocated = try cache.allocate() } catch { callError = error } }
        case .malloc:
            call = { do throws(QuarryError) { allocated = try front.malloc(objectBytes) } catch { callError = error } }
        case .cacheFree: call = { do throws(QuarryError) { try cache.free(freed) } catch { callError = error } }
        case .mallocFree: call = { do throws(QuarryError) { try front.free(freed) } catch { callError = error } }
        case .epochEnter: call = { reclaimer.enter() }
        case .epochExit: call = { reclaimer.exit() }
        }
        if stepped {
            withTrapHandler { singleStep(call) }
        } else {
            call()
        }
        #expect(callError == nil, "\(scenario.name): the measured call failed: \(String(describing: callError))")
        freed = nil
        if let allocated {
            ctx.accept(allocated, size: objectBytes)
            bench.held.append(allocated)
        }
        let after = bench.stats
        if !stepped {
            // Warm the handler's paths (as an interrupt would run them, masked) on this heap.
            for _ in 0..<4 {
                let saved = quarry_test_mask_raise()
                interruptBody(ctx)
                quarry_test_mask_restore(saved)
            }
        }
        let counts = StepMeasurement(
            steps: ctx.pointee.steps, tfSet: ctx.pointee.tfSet, masked: ctx.pointee.masked, ran: ctx.pointee.ran,
            served: ctx.pointee.served, refusals: ledger.pointee.refusals.load(ordering: .relaxed),
            stray: ctx.pointee.stray,
            perturbAllocations: ctx.pointee.perturbAllocations, perturbFrees: ctx.pointee.perturbFrees)
        #expect(
            ctx.failures == 0, "\(scenario.name): the handler found \(ctx.failures) problem(s), \(ctx.failureText)"
        )

        // The statistics: the measured call took the intended path, and every successful
        // operation (the call's and the handler's on this cache) was counted once.
        let objectAllocations = ledger.pointee.objectAllocations.load(ordering: .relaxed)
        let blockAllocations = ledger.pointee.blockAllocations.load(ordering: .relaxed)
        let handlerAllocations = objectAllocations + (scenario.isMalloc ? blockAllocations : 0)
        let objectFrees = ledger.pointee.objectFrees.load(ordering: .relaxed)
        let handlerFrees = objectFrees + (scenario.isMalloc ? ledger.pointee.blockFrees.load(ordering: .relaxed) : 0)
        let mainAllocations = scenario.allocates ? 1 : 0
        let mainFrees = scenario.allocates || scenario.isEpoch ? 0 : 1
        // Nothing was refused as misuse or corruption (a double free, a bad pointer), on
        // either side: Quarry counts those even when it refuses them cleanly.
        #expect(
            after.errors == before.errors,
            "\(scenario.name): \(after.errors - before.errors) error(s) counted by the cache")
        #expect(front.statistics.errors == frontErrorsBefore, "\(scenario.name): error(s) counted by the malloc front")
        q.forEachCache { c in
            var name: [UInt8] = []
            c.name.forEachByte { name.append($0) }
            #expect(
                c.statistics.errors == 0,
                "\(scenario.name): error(s) counted by cache \(String(decoding: name, as: UTF8.self))")
        }
        if stepped {
            #expect(
                after.allocations - before.allocations == UInt64(mainAllocations + handlerAllocations),
                "\(scenario.name): allocations counted")
            #expect(after.frees - before.frees == UInt64(mainFrees + handlerFrees), "\(scenario.name): frees counted")
        }
        let d = (
            allocHits: after.allocationHits - before.allocationHits,
            allocMisses: after.allocationMisses - before.allocationMisses,
            freeHits: after.freeHits - before.freeHits, freeMisses: after.freeMisses - before.freeMisses,
            refills: after.refills - before.refills, exchanges: after.depotExchanges - before.depotExchanges,
            flushes: after.flushes - before.flushes
        )
        if !stepped {
            // No handler ran during the call: the deltas are the call's alone.
            let hit = scenario.kind == .hit || scenario.isEpoch
            #expect(d.allocHits == (scenario.allocates && hit ? 1 : 0), "\(scenario.name): allocation hits \(d)")
            #expect(d.allocMisses == (scenario.allocates && !hit ? 1 : 0), "\(scenario.name): allocation misses \(d)")
            #expect(d.freeHits == (mainFrees == 1 && hit ? 1 : 0), "\(scenario.name): free hits \(d)")
            #expect(d.freeMisses == (mainFrees == 1 && !hit ? 1 : 0), "\(scenario.name): free misses \(d)")
            #expect(d.refills == (scenario.kind == .missRefill ? 1 : 0), "\(scenario.name): refills \(d)")
            #expect(
                d.exchanges
                    == (scenario.kind == .missDepot || scenario.kind == .missExchange || scenario.kind == .missFlush
                        ? 1 : 0),
                "\(scenario.name): depot exchanges \(d)")
            #expect(d.flushes == (scenario.kind == .missFlush ? 1 : 0), "\(scenario.name): flushes \(d)")
        } else {
            // The handler's balanced work may add hits (or, in a nested path, misses), but
            // never takes these slow steps away from the call.
            switch scenario.kind {
            case .missRefill: #expect(d.allocMisses >= 1 && d.refills >= 1, "\(scenario.name): not a refill \(d)")
            case .missDepot: #expect(d.allocMisses >= 1 && d.exchanges >= 1, "\(scenario.name): no depot exchange \(d)")
            case .missExchange:
                #expect(d.freeMisses >= 1 && d.exchanges >= 1, "\(scenario.name): no depot exchange \(d)")
            case .missFlush: #expect(d.freeMisses >= 1 && d.flushes >= 1, "\(scenario.name): no flush \(d)")
            case .hit:
                #expect((scenario.allocates ? d.allocHits : d.freeHits) >= 1, "\(scenario.name): no hit \(d)")
            case .outer, .nested: break
            }
        }

        // The epoch section the call entered or left.
        if scenario.isEpoch {
            let depth = (scenario.kind == .nested ? 1 : 0) + (scenario.path == .epochEnter ? 1 : 0)
            #expect(bench.reclaimer.isInsideCriticalSection == (depth > 0), "\(scenario.name): section state")
            for _ in 0..<depth { bench.reclaimer.exit() }
            #expect(!bench.reclaimer.isInsideCriticalSection)
            for _ in 0..<2 {
                if case .blocked(let cpu) = bench.reclaimer.tryAdvance() {
                    Issue.record("\(scenario.name): the epoch is blocked by CPU \(cpu) after the last exit")
                }
            }
        }

        // Quiescence: invariants with everything still held, then free it all.
        q.checkInvariants()
        bench.reclaimer.checkInvariants()
        resetCounters()
        // Everything the handler keeps (perturbing, refused frees, the free-first pair):
        // each intact and freed without error.
        ctx.pointee.work = nil
        #expect(work.release(ledger) == 0, "\(scenario.name): an object the handler kept was damaged or refused")
        while !bench.held.isEmpty { try bench.give() }
        q.checkInvariants()
        #expect(bench.stats.activeObjects == 0, "\(scenario.name): objects still counted active")

        // Afterwards: many allocations, none handed out twice, all intact, all freeable.
        let many = 4 * bench.stats.objectsPerSlab + 3 * m
        for _ in 0..<many { try bench.take() }
        #expect(Set(bench.held.map { UInt(bitPattern: $0) }).count == many)
        while !bench.held.isEmpty { try bench.give() }
        #expect(
            ctx.failures == 0, "\(scenario.name): \(ctx.failures) problem(s) after the call, \(ctx.failureText)"
        )
        q.checkInvariants()
        bench.reclaimer.checkInvariants()
        if !scenario.isMalloc { #expect(bench.cache.destroy() == 0, "\(scenario.name): leaked objects") }
        ctx.pointee.work = nil
        ctx.pointee.reclaimer = nil
        return counts
    }

    /// Single-stepping needs an x86_64 host: skipped elsewhere.
    @Test(
        .enabled(if: quarry_test_single_step_supported() != 0 && !runningUnderThreadSanitizer),
        arguments: StepScenario.all)
    func everyBoundaryOfOneCall(_ scenario: StepScenario) throws {
        _ = Self.overhead
        _ = try run(scenario, stepped: false)
        let n = try run(scenario, stepped: true)
        #if QUARRY_CHECKED
        let (ranFloor, stepFloor) = (scenario.ranFloor.checked, scenario.stepFloor.checked)
        #else
        let (ranFloor, stepFloor) = (scenario.ranFloor.release, scenario.stepFloor.release)
        #endif
        print(
            "single-step \(scenario.name): \(n.steps) instructions stepped (\(Self.overhead) of them the TF wrappers), "
                + "\(n.ran) boundaries ran Quarry (\(n.served) served), \(n.masked) masked, \(n.refusals) refusals, "
                + "perturb +\(n.perturbAllocations)/-\(n.perturbFrees)")
        #expect(n.stray == 0, "\(scenario.name): traps outside the stepped call")
        #expect(n.steps == n.ran + n.masked)
        #expect(n.tfSet == n.steps - 1, "\(scenario.name): TF was not set in the interrupted context")
        #expect(n.steps >= stepFloor && n.steps > Self.overhead + 10, "\(scenario.name): too few instructions stepped")
        #expect(
            n.ran > 0 && n.ran >= ranFloor,
            "\(scenario.name): the handler ran Quarry at only \(n.ran) boundaries (floor \(ranFloor))")
        #expect(
            n.served >= ranFloor,
            "\(scenario.name): the handler got objects at only \(n.served) boundaries (floor \(ranFloor))")
    }
}
