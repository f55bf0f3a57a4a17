// NMIStorm: NMIs at a high rate on every CPU while its main loop and its timer handler
// allocate and free; the NMI handler allocates and frees wherever it lands (issue 10).
// Neighbours: Tests/Scenarios/HandlerWork.swift (the handler's work and counts), Interrupts.swift
// (vector 2 and HandlerPolicy), LocalAPIC.swift and IOAPIC.swift (the two NMI sources),
// AllocatorSuite.swift (runs it, forwards the timer hook), TestHarness.swift (reports).

import CQuarrySupport
import Quarry
import Synchronization

/// One CPU's counts outside the NMI handler, and the objects its timer handler keeps.
/// Counters: atomic words written by that CPU, read by the boot CPU after the run.
/// `timerObject`/`timerBlock`: that CPU's timer handler only. `landings`: that CPU's
/// NMI handler only (NMIs do not nest).
struct StormRow: ~Copyable {
    let operations = Atomic<Int>(0)
    let sent = Atomic<Int>(0)
    let timerRuns = Atomic<Int>(0)
    let mismatches = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    var timerObject: UInt = 0
    var timerBlock: UInt = 0
    /// Distinct addresses the NMIs interrupted (the first `landingSlots` seen).
    var landings = InlineArray<64, UInt>(repeating: 0)
    var distinctLandings = 0

    init() {}
}

/// The storm. Two NMI sources run at once:
/// - the local APIC ICR: every `icrInterval` operations a CPU's main loop sends an NMI to
///   its own APIC id, and half-way between, one to the next CPU's (its own when alone).
///   QEMU's TCG takes a self-NMI at the next translation-block boundary after the ICR
///   write, so self-NMIs land right after the send; those from the next CPU land
///   wherever this CPU is;
/// - PIT channel 0 at `pitHz`, routed by the I/O APIC as an NMI to every CPU (CPUs 0-7):
///   asynchronous on every CPU, the only source that reaches a lone CPU's masked code.
///
/// The handler takes part only while `active` is set; `inFlight` lets the boot CPU wait
/// for handlers that saw it set before it tears the heap down.
enum NMIStorm {
    static let operationsPerCPU = 200_000
    static let icrInterval = 64
    static let pitHz: UInt64 = 20_000
    static let objectSize = 32
    static let blockSize = 48
    static let mainSizes: InlineArray<3, Int> = [16, 48, 96]
    static let ringSize = 32
    static let landingSlots = 64

    /// Thresholds that keep the run from passing vacuously.
    static let minimumNMIsPerCPU = 1_000
    static let minimumHandlerAllocationsPerCPU = 1_000
    static let minimumMaskedLandings = 10

    nonisolated(unsafe) static var work: HandlerWork<X86Platform>? = nil
    nonisolated(unsafe) static var rows: UnsafeMutablePointer<StormRow>? = nil
    nonisolated(unsafe) static var ledgers: UnsafeMutablePointer<HandlerLedger>? = nil
    /// APIC id of each CPU (written by that CPU in the set-up phase).
    static let apicIDs = InlineArray<16, Atomic<UInt32>> { _ in Atomic<UInt32>(0) }

    static let active = Atomic<Bool>(false)
    static let inFlight = Atomic<Int>(0)
    /// NMIs taken while no storm was active (sent just before the end; harmless).
    static let outside = Atomic<Int>(0)
    /// While set, the NMI handler zeroes every xmm register first (as SSE code in it
    /// would); `simdPhase` counts CPUs whose registers changed across NMIs, or took none.
    static let clobberSIMD = Atomic<Bool>(false)
    static let simdDamage = Atomic<Int>(0)
    static let simdQuietCPUs = Atomic<Int>(0)

    // MARK: Run

    static func run(base: UnsafeMutableRawPointer, size: Int) {
        Console.printLine("== NMI storm (allocate and free in NMI handlers)")
        guard let q = try? KernelQuarry.initialize(base: base, size: size) else {
            TestHarness.fail("nmi: initialize") { Console.print("refused") }
            return
        }
        let cpus = SMP.cpuCount
        guard
            let records = try? q.createCache(
                name: "nmi-records",
                size: X86Platform.maxCPUs * MemoryLayout<StormRow>.stride),
            let ledgerRecords = try? q.createCache(
                name: "nmi-ledgers",
                size: X86Platform.maxCPUs * MemoryLayout<HandlerLedger>.stride),
            let rowMemory = try? records.allocate(),
            let ledgerMemory = try? ledgerRecords.allocate(),
            let cache = try? q.createCache(name: "nmi-objects", size: objectSize)
        else {
            TestHarness.fail("nmi: set-up") { Console.print("allocation refused") }
            return
        }
        // Sound: each object holds maxCPUs records of its type, suitably aligned (object
        // sizes are multiples of 8, alignment 8 or more).
        let rowBase = rowMemory.bindMemory(to: StormRow.self, capacity: X86Platform.maxCPUs)
        let ledgerBase = ledgerMemory.bindMemory(to: HandlerLedger.self, capacity: X86Platform.maxCPUs)
        for i in 0..<X86Platform.maxCPUs {
            (rowBase + i).initialize(to: StormRow())
            (ledgerBase + i).initialize(to: HandlerLedger())
        }
        rows = rowBase
        ledgers = ledgerBase
        work = HandlerWork(cache: cache, front: q.front, blockSize: blockSize)

        SMP.runOnAllCPUs { cpu in NMIStorm.prepare(cpu) }
        let routed = IOAPIC.entryCount > IOAPIC.pitInput
        TestHarness.check("nmi: the I/O APIC answers and has the PIT's input", routed, "no redirection entry 2")
        active.store(true, ordering: .sequentiallyConsistent)
        if routed {
            let targets = UInt8(truncatingIfNeeded: (1 << min(cpus, 8)) - 1)
            IOAPIC.routeNMI(input: IOAPIC.pitInput, cpus: targets)
            Clock.startPITChannel0(hz: pitHz)
        }
        clobberSIMD.store(true, ordering: .relaxed)
        SMP.runOnAllCPUs { cpu in NMIStorm.simdPhase(cpu) }
        clobberSIMD.store(false, ordering: .relaxed)
        TestHarness.checkEqual(
            "nmi: xmm registers survive NMIs whose handler zeroes them (the stub's fxsave)",
            simdDamage.load(ordering: .relaxed), 0)
        TestHarness.checkEqual(
            "nmi: CPUs that took no NMI during that check", simdQuietCPUs.load(ordering: .relaxed), 0)
        let start = Clock.now()
        SMP.runOnAllCPUs { cpu in NMIStorm.phase(cpu) }
        let milliseconds = Clock.milliseconds(from: start, to: Clock.now())
        if routed {
            IOAPIC.mask(input: IOAPIC.pitInput)
            Clock.stopPITChannel0()
        }
        // Quiescence: no handler starts work after this, and none is still working.
        active.store(false, ordering: .sequentiallyConsistent)
        while inFlight.load(ordering: .sequentiallyConsistent) != 0 { quarry_pause() }

        var leftovers = 0
        for cpu in 0..<X86Platform.maxCPUs {
            leftovers += work!.release(ledgerBase + cpu)
            leftovers += releaseTimerObjects(cpu)
        }
        report(cpus: cpus, milliseconds: milliseconds, leftovers: leftovers)

        q.checkInvariants()
        TestHarness.pass("nmi: heap invariants hold at quiescence (checkInvariants)")
        work = nil
        rows = nil
        ledgers = nil
        _ = try? records.free(rowMemory)
        _ = try? ledgerRecords.free(ledgerMemory)
        let leaked = cache.destroy() + records.destroy() + ledgerRecords.destroy()
        q.front.shrink()
        q.shrink()
        TestHarness.checkEqual("nmi: every cache destroyed without leaks", leaked, 0)
        TestHarness.checkEqual("nmi: every page came back", q.pageStatistics.pagesInUse, 0)
    }

    /// Every CPU: publish its APIC id, take a flat logical id for the I/O APIC route.
    static func prepare(_ cpu: Int) {
        apicIDs[cpu].store(LocalAPIC.id, ordering: .relaxed)
        LocalAPIC.setFlatLogicalID(cpu: cpu)
    }

    /// Every CPU, with the PIT's NMIs arriving and `clobberSIMD` set: xmm0-7 (0-15 on
    /// x86_64) hold patterns across 20 halts, each ended by an NMI or a timer tick.
    static func simdPhase(_ cpu: Int) {
        let ledger = ledgers! + cpu
        let before = ledger.pointee.taken.load(ordering: .relaxed)
        if quarry_xmm_damage_across_halts(20) != 0 { simdDamage.add(1, ordering: .relaxed) }
        if ledger.pointee.taken.load(ordering: .relaxed) == before { simdQuietCPUs.add(1, ordering: .relaxed) }
    }

    // MARK: Main loop

    /// One CPU's main loop: a ring of objects and blocks, each freed (cookie checked)
    /// and replaced at random, sending NMIs as it goes (with interrupts on: no handler
    /// sends IPIs, so nothing on this CPU writes the ICR between its two words).
    static func phase(_ cpu: Int) {
        guard let work else { return }
        let row = rows! + cpu
        let me = apicIDs[cpu].load(ordering: .relaxed)
        let next = apicIDs[(cpu + 1) % SMP.cpuCount].load(ordering: .relaxed)
        var rng = SeededGenerator(seed: 0x4E4D_4900 &+ UInt64(cpu))
        var objects = InlineArray<32, UInt>(repeating: 0)
        var blocks = InlineArray<32, UInt>(repeating: 0)
        var blockSizes = InlineArray<32, Int>(repeating: 0)
        for n in 0..<operationsPerCPU {
            if n % icrInterval == 0 {
                LocalAPIC.sendNMI(toAPIC: me)
                row.pointee.sent.add(1, ordering: .relaxed)
            } else if n % icrInterval == icrInterval / 2 {
                LocalAPIC.sendNMI(toAPIC: next)
                row.pointee.sent.add(1, ordering: .relaxed)
            }
            let i = rng.below(ringSize)
            do throws(QuarryError) {
                if rng.below(2) == 0 {
                    if objects[i] != 0 { try retire(objects[i], size: objectSize, isBlock: false, row) }
                    objects[i] = 0
                    let p = UInt(bitPattern: try work.cache.allocate())
                    Cookie.fill(at: p, size: objectSize)
                    objects[i] = p
                } else {
                    if blocks[i] != 0 { try retire(blocks[i], size: blockSizes[i], isBlock: true, row) }
                    blocks[i] = 0
                    let size = mainSizes[rng.below(3)]
                    let p = UInt(bitPattern: try work.front.malloc(size))
                    Cookie.fill(at: p, size: size)
                    blocks[i] = p
                    blockSizes[i] = size
                }
            } catch {
                row.pointee.errors.add(1, ordering: .relaxed)
            }
            row.pointee.operations.add(1, ordering: .relaxed)
        }
        for i in 0..<ringSize {
            do throws(QuarryError) {
                if objects[i] != 0 { try retire(objects[i], size: objectSize, isBlock: false, row) }
                if blocks[i] != 0 { try retire(blocks[i], size: blockSizes[i], isBlock: true, row) }
            } catch {
                row.pointee.errors.add(1, ordering: .relaxed)
            }
        }
    }

    /// Checks the cookie of an object or block and frees it.
    static func retire(_ address: UInt, size: Int, isBlock: Bool, _ row: UnsafeMutablePointer<StormRow>)
        throws(QuarryError)
    {
        if !Cookie.intact(at: address, size: size) { row.pointee.mismatches.add(1, ordering: .relaxed) }
        let p = UnsafeMutableRawPointer(bitPattern: address)
        if isBlock { try work!.front.free(p) } else { try work!.cache.free(p) }
    }

    // MARK: Timer handler

    /// Every tick on every CPU while the storm is active (interrupts masked): allocate
    /// an object and a block, keep them to the next tick, free the previous ones.
    static func timerHook() {
        inFlight.add(1, ordering: .sequentiallyConsistent)
        defer { inFlight.subtract(1, ordering: .sequentiallyConsistent) }
        guard active.load(ordering: .sequentiallyConsistent), let work else { return }
        let row = rows! + X86Platform.cpuIndex
        do throws(QuarryError) {
            let object = UInt(bitPattern: try work.cache.allocate())
            Cookie.fill(at: object, size: objectSize)
            let block = UInt(bitPattern: try work.front.malloc(blockSize))
            Cookie.fill(at: block, size: blockSize)
            let previousObject = row.pointee.timerObject
            let previousBlock = row.pointee.timerBlock
            row.pointee.timerObject = object
            row.pointee.timerBlock = block
            if previousObject != 0 { try retire(previousObject, size: objectSize, isBlock: false, row) }
            if previousBlock != 0 { try retire(previousBlock, size: blockSize, isBlock: true, row) }
        } catch {
            row.pointee.errors.add(1, ordering: .relaxed)
        }
        row.pointee.timerRuns.add(1, ordering: .relaxed)
    }

    /// Frees what CPU `cpu`'s timer handler kept (after the run; cookie mismatches are
    /// counted in its row). Returns the frees that failed.
    static func releaseTimerObjects(_ cpu: Int) -> Int {
        let row = rows! + cpu
        var bad = 0
        if row.pointee.timerObject != 0 {
            do throws(QuarryError) { try retire(row.pointee.timerObject, size: objectSize, isBlock: false, row) } catch
            { bad += 1 }
        }
        if row.pointee.timerBlock != 0 {
            do throws(QuarryError) { try retire(row.pointee.timerBlock, size: blockSize, isBlock: true, row) } catch {
                bad += 1
            }
        }
        row.pointee.timerObject = 0
        row.pointee.timerBlock = 0
        return bad
    }

    // MARK: NMI handler

    /// Vector 2, on any CPU, with NMIs held by the CPU until its iret. Wherever it lands
    /// (HandlerPolicy only counts the landings in masked code), allocates and frees
    /// objects and blocks, keeping one more or one fewer than before
    /// (`HandlerShape.unbalanced`).
    static func nmi(_ frame: UnsafeMutablePointer<InterruptFrame>) {
        inFlight.add(1, ordering: .sequentiallyConsistent)
        defer { inFlight.subtract(1, ordering: .sequentiallyConsistent) }
        if clobberSIMD.load(ordering: .relaxed) { quarry_clobber_xmm() }
        guard active.load(ordering: .sequentiallyConsistent), let work else {
            outside.add(1, ordering: .relaxed)
            return
        }
        let cpu = X86Platform.cpuIndex
        let ledger = ledgers! + cpu
        ledger.pointee.taken.add(1, ordering: .relaxed)
        noteLanding(frame, rows! + cpu, ledger)
        work.run(
            ledger, objects: .unbalanced(keeping: ledger.pointee.objects.count),
            blocks: .unbalanced(keeping: ledger.pointee.blocks.count))
    }

    static func noteLanding(
        _ frame: UnsafeMutablePointer<InterruptFrame>, _ row: UnsafeMutablePointer<StormRow>,
        _ ledger: UnsafeMutablePointer<HandlerLedger>
    ) {
        if HandlerPolicy.landedInMaskedCode(frame) { ledger.pointee.landedMasked.add(1, ordering: .relaxed) }
        let ip = frame.pointee.interruptedIP
        let n = row.pointee.distinctLandings
        var i = 0
        while i < n {
            if row.pointee.landings[i] == ip { return }
            i += 1
        }
        if n < landingSlots {
            row.pointee.landings[n] = ip
            row.pointee.distinctLandings = n + 1
        }
    }

    // MARK: Report

    static func report(cpus: Int, milliseconds: UInt64, leftovers: Int) {
        var fewestNMIs = Int.max, fewestAllocations = Int.max, totalNMIs = 0, totalMasked = 0
        var failures = 0, mismatches = 0, errors = 0, timerEverywhere = true
        for cpu in 0..<cpus {
            let l = ledgers! + cpu
            let r = rows! + cpu
            let taken = l.pointee.taken.load(ordering: .relaxed)
            let allocations = l.pointee.allocations
            fewestNMIs = min(fewestNMIs, taken)
            fewestAllocations = min(fewestAllocations, allocations)
            totalNMIs += taken
            totalMasked += l.pointee.landedMasked.load(ordering: .relaxed)
            failures += l.pointee.failures.load(ordering: .relaxed)
            mismatches += r.pointee.mismatches.load(ordering: .relaxed)
            errors += r.pointee.errors.load(ordering: .relaxed)
            if r.pointee.timerRuns.load(ordering: .relaxed) == 0 { timerEverywhere = false }
            Console.line {
                Console.print("nmi: cpu ")
                Console.decimal(cpu)
                Console.print(": ")
                Console.decimal(taken)
                Console.print(" NMIs taken (")
                Console.decimal(l.pointee.landedMasked.load(ordering: .relaxed))
                Console.print(" in masked code; ")
                Console.decimal(r.pointee.distinctLandings)
                Console.print(
                    r.pointee.distinctLandings == landingSlots ? "+ distinct addresses), " : " distinct addresses), ")
                Console.handlerCounts(l)
                Console.print("; main loop ")
                Console.decimal(r.pointee.operations.load(ordering: .relaxed))
                Console.print(" operations, ")
                Console.decimal(r.pointee.sent.load(ordering: .relaxed))
                Console.print(" NMIs sent; timer handler ")
                Console.decimal(r.pointee.timerRuns.load(ordering: .relaxed))
                Console.print(" runs")
                Console.newline()
            }
        }
        Console.line {
            Console.print("nmi: ")
            Console.decimal(totalNMIs)
            Console.print(" NMIs in ")
            Console.decimal(milliseconds)
            Console.print(" ms (")
            Console.decimal(totalMasked)
            Console.print(" in masked code; ")
            Console.decimal(outside.load(ordering: .relaxed))
            Console.print(" after the end); handlers call Quarry wherever they land")
            Console.newline()
        }
        TestHarness.checkAtLeast("nmi: NMIs taken on the CPU that took fewest", fewestNMIs, minimumNMIsPerCPU)
        TestHarness.checkAtLeast(
            "nmi: handler allocations on the CPU that made fewest", fewestAllocations,
            minimumHandlerAllocationsPerCPU)
        TestHarness.checkAtLeast("nmi: NMIs landed in masked code", totalMasked, minimumMaskedLandings)
        TestHarness.checkEqual(
            "nmi: handler failures (errors other than .outOfMemory/.busy, cookie mismatches)", failures, 0)
        TestHarness.checkEqual("nmi: main loop and timer handler cookie mismatches", mismatches, 0)
        TestHarness.checkEqual("nmi: main loop and timer handler errors", errors, 0)
        TestHarness.check("nmi: the timer handler allocated on every CPU", timerEverywhere, "a CPU never did")
        TestHarness.checkEqual("nmi: objects kept by handlers freed intact", leftovers, 0)
    }
}
