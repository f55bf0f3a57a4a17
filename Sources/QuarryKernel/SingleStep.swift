// SingleStep: EFLAGS.TF around one call of each allocate and free path (cache and malloc
// front, hit and miss); the #DB handler allocates and frees at every instruction boundary
// it interrupts, on the same caches, while the other CPUs use them too (issue 14).
// Neighbours: Tests/Scenarios/HandlerWork.swift (the handler's work), Interrupts.swift (vector 1 and
// HandlerPolicy), quarry_support.h (quarry_set_tf, quarry_clear_tf), AllocatorSuite.swift
// (runs it), TestHarness.swift (reports).

import CQuarrySupport
import Quarry
import Synchronization

/// The stepped calls run on the boot CPU. Each path's set-up puts this CPU's magazines
/// of the cache in the state the path needs (drainCPU, then a counted number of
/// allocations or frees), and the handler's pairs keep that state where it may touch
/// the slot: `.freeThenAllocate` while the path needs both magazines empty (allocate miss),
/// `.allocateThenFree` otherwise (a full loaded magazine stays full). A miss must take more
/// boundaries than the hit of the same operation, which the suite checks.
///
/// Boundaries are counted per path, less those of an empty stepped window (the TF
/// helpers' own: `baseline`). Each stepped function holds exactly one inlined call
/// between `quarry_set_tf` and `quarry_clear_tf`.
enum SingleStep {
    enum Path: Int {
        case baseline = 0
        case cacheAllocateMiss, cacheAllocateHit, cacheFreeHit, cacheFreeMiss
        case mallocMiss, mallocHit, frontFreeHit, frontFreeMiss

        static let count = 9

        var name: StaticString {
            switch self {
            case .baseline: "empty window (baseline)"
            case .cacheAllocateMiss: "cache allocate, miss"
            case .cacheAllocateHit: "cache allocate, hit"
            case .cacheFreeHit: "cache free, hit"
            case .cacheFreeMiss: "cache free, miss"
            case .mallocMiss: "malloc, miss"
            case .mallocHit: "malloc, hit"
            case .frontFreeHit: "malloc free, hit"
            case .frontFreeMiss: "malloc free, miss"
            }
        }
    }

    static let objectSize = 64
    static let blockSize = 160
    static let companionRing = 16

    nonisolated(unsafe) static var heap: KernelQuarry? = nil
    nonisolated(unsafe) static var work: HandlerWork<X86Platform>? = nil
    nonisolated(unsafe) static var ledger: UnsafeMutablePointer<HandlerLedger>? = nil
    /// The shapes the handler uses for the path being stepped (set with TF clear).
    nonisolated(unsafe) static var objectShape = HandlerShape.allocateThenFree
    nonisolated(unsafe) static var blockShape = HandlerShape.allocateThenFree

    /// The path being stepped (`-1`: none) and the CPU stepping it.
    static let current = Atomic<Int>(-1)
    static let steppingCPU = Atomic<Int>(-1)
    static let boundaries = InlineArray<9, Atomic<Int>> { _ in Atomic<Int>(0) }
    static let served = InlineArray<9, Atomic<Int>> { _ in Atomic<Int>(0) }
    /// Stepped calls that threw, or whose objects came back with a broken cookie.
    static let stepFailures = Atomic<Int>(0)

    // The other CPUs.
    static let done = Atomic<Bool>(false)
    static let companionsStarted = Atomic<Int>(0)
    static let companionOperations = Atomic<Int>(0)
    static let companionFailures = Atomic<Int>(0)

    // MARK: Run

    static func run(base: UnsafeMutableRawPointer, size: Int) {
        Console.printLine("== single-step (allocate and free at every instruction boundary of each path)")
        guard let q = try? KernelQuarry.initialize(base: base, size: size),
            let records = try? q.createCache(name: "step-ledger", size: MemoryLayout<HandlerLedger>.stride),
            let ledgerMemory = try? records.allocate(),
            let cache = try? q.createCache(name: "step-objects", size: objectSize)
        else {
            TestHarness.fail("step: set-up") { Console.print("refused") }
            return
        }
        // Sound: one object of `stride` bytes, aligned for the record.
        let l = ledgerMemory.bindMemory(to: HandlerLedger.self, capacity: 1)
        l.initialize(to: HandlerLedger())
        heap = q
        ledger = l
        work = HandlerWork(cache: cache, front: q.front, blockSize: blockSize)

        done.store(false, ordering: .relaxed)
        SMP.runOnAllCPUs { cpu in
            if cpu == 0 { SingleStep.stepEveryPath() } else { SingleStep.companion(cpu) }
        }

        let leftovers = work!.release(l)
        let failures = l.pointee.failures.load(ordering: .relaxed)
        Console.line {
            Console.print("step: handler ")
            Console.handlerCounts(l)
            Console.print("; other CPUs ")
            Console.decimal(companionOperations.load(ordering: .relaxed))
            Console.print(" operations meanwhile; handlers call Quarry wherever they land")
            Console.newline()
        }
        TestHarness.checkEqual(
            "step: handler failures (errors other than .outOfMemory/.busy, cookie mismatches)", failures, 0)
        TestHarness.checkEqual(
            "step: stepped calls and set-ups: errors and cookie mismatches",
            stepFailures.load(ordering: .relaxed), 0)
        TestHarness.checkEqual("step: objects kept by the handler freed intact", leftovers, 0)
        TestHarness.checkEqual(
            "step: other CPUs' failures (errors, cookie mismatches)",
            companionFailures.load(ordering: .relaxed), 0)
        if SMP.cpuCount > 1 {
            TestHarness.checkAtLeast(
                "step: other CPUs allocated from the same caches meanwhile",
                companionOperations.load(ordering: .relaxed), 1)
        }

        q.checkInvariants()
        TestHarness.pass("step: heap invariants hold at quiescence (checkInvariants)")
        work = nil
        heap = nil
        ledger = nil
        _ = try? records.free(ledgerMemory)
        let leaked = cache.destroy() + records.destroy()
        q.front.shrink()
        q.shrink()
        TestHarness.checkEqual("step: every cache destroyed without leaks", leaked, 0)
        TestHarness.checkEqual("step: every page came back", q.pageStatistics.pagesInUse, 0)
    }

    // MARK: The stepping CPU

    /// Objects the set-ups hold (at most two magazines and one more).
    struct Held {
        var items = InlineArray<72, UInt>(repeating: 0)
        var count = 0
        mutating func append(_ address: UInt) {
            items[count] = address
            count += 1
        }
    }

    /// Steps every path on this CPU (the boot CPU), then releases the other CPUs.
    static func stepEveryPath() {
        defer { done.store(true, ordering: .releasing) }
        guard let work, let heap else { return }
        // Let the other CPUs get going first.
        let deadline = Clock.now() &+ Clock.ticks(microseconds: 500_000)
        while companionsStarted.load(ordering: .acquiring) < SMP.cpuCount - 1 && Clock.now() < deadline {
            quarry_pause()
        }
        steppingCPU.store(X86Platform.cpuIndex, ordering: .relaxed)
        defer { steppingCPU.store(-1, ordering: .relaxed) }
        guard let probe = try? work.front.malloc(blockSize), let classCache = heap.cache(owning: probe) else {
            stepFailures.add(1, ordering: .relaxed)
            return
        }
        _ = try? work.front.free(probe)

        stepBaseline()
        show(.baseline)
        stepFourPaths(work.cache, isBlock: false)
        stepFourPaths(classCache, isBlock: true)
        report()
    }

    /// Allocates one object (or block) with TF clear, cookie written; nil on failure.
    static func take(isBlock: Bool) -> UInt? {
        guard let work else { return nil }
        let p = isBlock ? try? work.front.malloc(blockSize) : try? work.cache.allocate()
        guard let p else {
            stepFailures.add(1, ordering: .relaxed)
            return nil
        }
        Cookie.fill(at: UInt(bitPattern: p), size: isBlock ? blockSize : objectSize)
        return UInt(bitPattern: p)
    }

    /// Checks the cookie and frees, with TF clear.
    static func giveBack(_ address: UInt, isBlock: Bool) {
        guard let work else { return }
        if !Cookie.intact(at: address, size: isBlock ? blockSize : objectSize) {
            stepFailures.add(1, ordering: .relaxed)
        }
        let p = UnsafeMutableRawPointer(bitPattern: address)
        do throws(QuarryError) {
            if isBlock { try work.front.free(p) } else { try work.cache.free(p) }
        } catch {
            stepFailures.add(1, ordering: .relaxed)
        }
    }

    /// The four paths of one kind: allocate miss, allocate hit, free hit, free miss.
    /// `cache` is the cache the allocations come from (for blocks, the class cache of
    /// `blockSize`), whose magazines on this CPU each set-up arranges.
    static func stepFourPaths(_ cache: KernelCache, isBlock: Bool) {
        let m = cache.magazineCapacity
        var held = Held()
        guard m > 0, 2 * m + 1 <= 72, let kept = take(isBlock: isBlock) else {
            stepFailures.add(1, ordering: .relaxed)
            return
        }
        func setShape(_ shape: HandlerShape) {
            if isBlock { blockShape = shape } else { objectShape = shape }
        }
        func stepAllocation(_ path: Path) {
            let p = isBlock ? steppedMalloc(path) : steppedAllocate(path)
            show(path)
            guard let p else {
                stepFailures.add(1, ordering: .relaxed)
                return
            }
            Cookie.fill(at: UInt(bitPattern: p), size: isBlock ? blockSize : objectSize)
            held.append(UInt(bitPattern: p))
        }
        func stepFree(_ path: Path, _ address: UInt) {
            if !Cookie.intact(at: address, size: isBlock ? blockSize : objectSize) {
                stepFailures.add(1, ordering: .relaxed)
            }
            let p = UnsafeMutableRawPointer(bitPattern: address)!
            let freed = isBlock ? steppedFrontFree(path, p) : steppedFree(path, p)
            show(path)
            if !freed { stepFailures.add(1, ordering: .relaxed) }
        }

        // Allocate, miss: both magazines attached and empty (detached, then one miss
        // refills the loaded magazine and m - 1 hits empty it). The handler frees the
        // object it keeps, then takes one back: the loaded magazine stays empty.
        cache.drainCPU()
        for _ in 0..<m {
            if let p = take(isBlock: isBlock) { held.append(p) }
        }
        ledger!.pointee.hold(kept, isBlock: isBlock)
        setShape(.freeThenAllocate)
        stepAllocation(isBlock ? .mallocMiss : .cacheAllocateMiss)

        // Allocate, hit: the refill left objects in the loaded magazine. From here on
        // the handler allocates first (a magazine it hits ends as it was).
        setShape(.allocateThenFree)
        stepAllocation(isBlock ? .mallocHit : .cacheAllocateHit)

        // Free, hit: the loaded magazine has room.
        held.count -= 1
        stepFree(isBlock ? .frontFreeHit : .cacheFreeHit, held.items[held.count])
        while held.count > 0 {
            held.count -= 1
            giveBack(held.items[held.count], isBlock: isBlock)
        }

        // Free, miss: 2m + 1 out, detached, then 2m frees fill both magazines (the first
        // attaches two empty ones, the (m + 1)th swaps them).
        for _ in 0..<(2 * m + 1) {
            if let p = take(isBlock: isBlock) { held.append(p) }
        }
        cache.drainCPU()
        for i in 0..<(held.count - 1) { giveBack(held.items[i], isBlock: isBlock) }
        stepFree(isBlock ? .frontFreeMiss : .cacheFreeMiss, held.items[held.count - 1])
    }

    // MARK: Stepped calls

    // Each runs exactly one call with TF set: the #DB traps inside count as `path`'s
    // boundaries (less the baseline: the TF helpers' own).

    @inline(never)
    static func stepBaseline() {
        begin(.baseline)
        quarry_set_tf()
        quarry_clear_tf()
        end()
    }

    @inline(never)
    static func steppedAllocate(_ path: Path) -> UnsafeMutableRawPointer? {
        guard let cache = work?.cache else { return nil }
        begin(path)
        quarry_set_tf()
        let p = try? cache.allocate()
        quarry_clear_tf()
        end()
        return p
    }

    @inline(never)
    static func steppedFree(_ path: Path, _ object: UnsafeMutableRawPointer) -> Bool {
        guard let cache = work?.cache else { return false }
        begin(path)
        quarry_set_tf()
        let freed: ()? = try? cache.free(object)
        quarry_clear_tf()
        end()
        return freed != nil
    }

    @inline(never)
    static func steppedMalloc(_ path: Path) -> UnsafeMutableRawPointer? {
        guard let front = work?.front else { return nil }
        begin(path)
        quarry_set_tf()
        let p = try? front.malloc(blockSize)
        quarry_clear_tf()
        end()
        return p
    }

    @inline(never)
    static func steppedFrontFree(_ path: Path, _ block: UnsafeMutableRawPointer) -> Bool {
        guard let front = work?.front else { return false }
        begin(path)
        quarry_set_tf()
        let freed: ()? = try? front.free(block)
        quarry_clear_tf()
        end()
        return freed != nil
    }

    @inline(__always)
    static func begin(_ path: Path) { current.store(path.rawValue, ordering: .releasing) }

    @inline(__always)
    static func end() { current.store(-1, ordering: .releasing) }

    // MARK: #DB handler

    /// True on the stepping CPU inside a stepped window: a #DB there is a single-step
    /// trap. (Not "TF is set in the frame": the popf that clears TF traps too, with TF
    /// already clear in the flags it leaves.)
    static var isSteppingHere: Bool {
        current.load(ordering: .acquiring) >= 0 && steppingCPU.load(ordering: .relaxed) == X86Platform.cpuIndex
    }

    /// Vector 1 (TF is clear in here; iret sets it again): count the boundary, allocate and
    /// free objects and blocks wherever it lands (HandlerPolicy only counts the landings in
    /// masked code), and count the boundary as served when that got one.
    static func trap(_ frame: UnsafeMutablePointer<InterruptFrame>) {
        let path = current.load(ordering: .acquiring)
        boundaries[path].add(1, ordering: .relaxed)
        guard let work, let ledger else { return }
        ledger.pointee.taken.add(1, ordering: .relaxed)
        if HandlerPolicy.landedInMaskedCode(frame) { ledger.pointee.landedMasked.add(1, ordering: .relaxed) }
        if work.run(ledger, objects: objectShape, blocks: blockShape) { served[path].add(1, ordering: .relaxed) }
    }

    // MARK: The other CPUs

    /// Until the stepping CPU is done: a ring of objects and blocks of the same cache and
    /// size class, each freed (cookie checked) and replaced at random.
    static func companion(_ cpu: Int) {
        guard let work else { return }
        var rng = SeededGenerator(seed: 0x5BEB_0000 &+ UInt64(cpu))
        var objects = InlineArray<16, UInt>(repeating: 0)
        var blocks = InlineArray<16, UInt>(repeating: 0)
        companionsStarted.add(1, ordering: .releasing)
        func retire(_ address: UInt, _ size: Int, isBlock: Bool) {
            if !Cookie.intact(at: address, size: size) { companionFailures.add(1, ordering: .relaxed) }
            let p = UnsafeMutableRawPointer(bitPattern: address)
            do throws(QuarryError) {
                if isBlock { try work.front.free(p) } else { try work.cache.free(p) }
            } catch {
                companionFailures.add(1, ordering: .relaxed)
            }
        }
        while !done.load(ordering: .acquiring) {
            let i = rng.below(companionRing)
            let isBlock = rng.below(2) == 0
            let size = isBlock ? blockSize : objectSize
            let old = isBlock ? blocks[i] : objects[i]
            if old != 0 { retire(old, size, isBlock: isBlock) }
            let p = isBlock ? try? work.front.malloc(blockSize) : try? work.cache.allocate()
            let address = UInt(bitPattern: p)
            if address != 0 {
                Cookie.fill(at: address, size: size)
            } else {
                companionFailures.add(1, ordering: .relaxed)
            }
            if isBlock { blocks[i] = address } else { objects[i] = address }
            companionOperations.add(1, ordering: .relaxed)
        }
        for i in 0..<companionRing {
            if objects[i] != 0 { retire(objects[i], objectSize, isBlock: false) }
            if blocks[i] != 0 { retire(blocks[i], blockSize, isBlock: true) }
        }
    }

    // MARK: Report

    /// Boundaries of `path` less the baseline's (the baseline's own count for itself).
    static func net(_ path: Path) -> Int {
        let total = boundaries[path.rawValue].load(ordering: .relaxed)
        return path == .baseline ? total : total - boundaries[Path.baseline.rawValue].load(ordering: .relaxed)
    }

    /// Boundaries of `path` where the handler allocated and freed, less the baseline's.
    static func netServed(_ path: Path) -> Int {
        let total = served[path.rawValue].load(ordering: .relaxed)
        return path == .baseline ? total : total - served[Path.baseline.rawValue].load(ordering: .relaxed)
    }

    /// Prints `path`'s counts, right after it was stepped (so a hang shows the last path
    /// that completed).
    static func show(_ path: Path) {
        Console.line {
            Console.print("step: ")
            Console.print(path.name)
            Console.print(": ")
            Console.decimal(net(path))
            Console.print(path == .baseline ? " boundaries (" : " boundaries beyond the baseline (")
            Console.decimal(netServed(path))
            Console.print(" with a nested allocate and free)")
            Console.newline()
        }
    }

    static func report() {
        var everyPath = true
        var everyPathServed = true
        for k in 1..<Path.count {
            let path = Path(rawValue: k)!
            if net(path) <= 0 { everyPath = false }
            if netServed(path) <= 0 { everyPathServed = false }
        }
        TestHarness.check("step: every path interrupted at one boundary or more", everyPath, "a path's count is zero")
        TestHarness.check(
            "step: the handler allocated and freed inside every path", everyPathServed,
            "a path had no boundary where the handler got an object or a block")
        TestHarness.check(
            "step: each miss takes more boundaries than its hit",
            net(.cacheAllocateMiss) > net(.cacheAllocateHit) && net(.cacheFreeMiss) > net(.cacheFreeHit)
                && net(.mallocMiss) > net(.mallocHit) && net(.frontFreeMiss) > net(.frontFreeHit),
            "a miss was served like a hit: the set-up did not reach the slow path")
    }
}
