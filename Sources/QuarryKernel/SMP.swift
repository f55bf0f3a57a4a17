// SMP: how many CPUs there are, starting the APs, and running a test phase on all of them.
// Neighbours: boot/ap_trampoline_<arch>.S (the AP's path to kernel_ap_main), LocalAPIC.swift
// (INIT and startup IPIs), Clock.swift (the delays), PlatformChecks.swift and
// AllocatorSuite.swift (the phases).

import CQuarrySupport
import Quarry
import Synchronization

/// Start-up: the boot CPU reads the CPU count from QEMU's fw_cfg, copies the trampoline
/// to 0x8000 and broadcasts INIT, 10 ms, SIPI, 200 us, SIPI (the MP specification's
/// sequence). Each AP takes the next index in the trampoline (1, 2, ...), comes up with
/// its own stack, per-CPU slot (%fs or GS_BASE) and the shared IDT, enables its LAPIC and timer, joins
/// `online`, enables interrupts and idles in `idle(cpu:)`.
///
/// Phases: `runOnAllCPUs(body)` publishes `body` (release), every online CPU runs it
/// with interrupts enabled and then meets the others at a barrier; the call returns
/// on the boot CPU once every CPU has finished. Phases run one at a time.
///
/// Concurrency: `online` is the membership; once the boot CPU stops waiting it sets
/// `closed` in it, and an AP that arrives later parks without joining, so barrier
/// party counts never change under a running phase.
enum SMP {
    static let trampolineBase = UInt(QUARRY_TRAMPOLINE_BASE)
    static let startupVectorPage = UInt8(QUARRY_TRAMPOLINE_BASE >> 12)

    /// Online CPUs (the boot CPU included) in the low bits, `closed` once start-up ended.
    static let online = Atomic<Int>(1)
    static let closed = 1 << 30

    /// The number of CPUs taking part in phases (fixed after `startApplicationProcessors`).
    static var cpuCount: Int { online.load(ordering: .acquiring) & ~closed }

    // MARK: CPU count

    /// QEMU's firmware configuration interface: write a key to the selector, read bytes.
    static let fwCfgSelector: UInt16 = 0x510
    static let fwCfgData: UInt16 = 0x511
    static let fwCfgSignature: UInt16 = 0x0000  // "QEMU"
    static let fwCfgCPUCount: UInt16 = 0x0005  // 16-bit little-endian, CPUs at boot

    /// The number of CPUs QEMU was started with, or nil without fw_cfg.
    static func firmwareCPUCount() -> Int? {
        quarry_outw(fwCfgSelector, fwCfgSignature)
        var signature: UInt32 = 0
        for i in 0..<4 { signature |= UInt32(quarry_inb(fwCfgData)) << UInt32(8 * i) }
        guard signature == 0x554D_4551 else { return nil }  // "QEMU"
        quarry_outw(fwCfgSelector, fwCfgCPUCount)
        let low = Int(quarry_inb(fwCfgData))
        let high = Int(quarry_inb(fwCfgData))
        return low | high << 8
    }

    // MARK: Start-up

    /// Starts the other `expected - 1` CPUs and waits for them (at most `timeoutMilliseconds`).
    /// Returns how many CPUs are online, the boot CPU included. Call once, on the boot
    /// CPU, after the IDT, the clock and the LAPIC timer calibration.
    static func startApplicationProcessors(expected: Int, timeoutMilliseconds: UInt64 = 2000) -> Int {
        if expected > 1 {
            let size = Int(quarry_trampoline_end() - quarry_trampoline_start())
            // Sound: 0x8000 ..< 0x9000 is conventional memory that nothing else uses after
            // boot (the multiboot information lies above the kernel image), and the
            // linker script asserts the trampoline is at most 4 KiB.
            let destination = UnsafeMutableRawPointer(bitPattern: trampolineBase)!
            destination.copyMemory(from: UnsafeRawPointer(bitPattern: quarry_trampoline_start())!, byteCount: size)

            LocalAPIC.broadcastINIT()
            Clock.delay(microseconds: 10_000)
            LocalAPIC.broadcastStartup(vectorPage: startupVectorPage)
            Clock.delay(microseconds: 200)
            if quarry_ap_started_count() < UInt32(expected - 1) {
                LocalAPIC.broadcastStartup(vectorPage: startupVectorPage)
            }

            let deadline = Clock.now() &+ Clock.ticks(microseconds: timeoutMilliseconds * 1000)
            while online.load(ordering: .acquiring) < expected && Clock.now() < deadline {
                quarry_pause()
            }
        }
        let before = online.bitwiseOr(closed, ordering: .acquiringAndReleasing).oldValue
        return before & ~closed
    }

    /// An AP joins `online` unless start-up is already closed. Returns whether it joined.
    static func join() -> Bool {
        var current = online.load(ordering: .relaxed)
        while current & closed == 0 {
            let (exchanged, original) = online.compareExchange(
                expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    // MARK: Phases

    typealias Phase = @convention(c) (Int) -> Void

    /// Incremented once per phase; APs run the phase when it changes.
    static let phaseGeneration = Atomic<Int>(0)
    /// Written by the boot CPU before the releasing increment of `phaseGeneration`,
    /// read by APs after an acquiring load of it: never accessed concurrently.
    nonisolated(unsafe) static var phase: Phase? = nil

    /// Runs `body(cpuIndex)` on every online CPU at once (the boot CPU too) and returns
    /// when all of them have returned from it. Boot CPU only.
    static func runOnAllCPUs(_ body: Phase) {
        let parties = cpuCount
        phase = body
        phaseGeneration.add(1, ordering: .releasing)
        body(X86Platform.cpuIndex)
        barrier(parties: parties)
    }

    static let barrierArrived = Atomic<Int>(0)
    static let barrierGeneration = Atomic<Int>(0)

    /// Waits until `parties` CPUs have called it (sense reversal by generation: the
    /// last arrival resets the count, then releases the others).
    static func barrier(parties: Int) {
        let generation = barrierGeneration.load(ordering: .acquiring)
        if barrierArrived.add(1, ordering: .acquiringAndReleasing).newValue == parties {
            barrierArrived.store(0, ordering: .relaxed)
            barrierGeneration.add(1, ordering: .releasing)
        } else {
            while barrierGeneration.load(ordering: .acquiring) == generation {
                quarry_pause()
            }
        }
    }

    /// An AP's life after start-up: run each phase once, sleeping between them until
    /// the next timer tick.
    static func idle(cpu: Int) -> Never {
        var seen = 0
        while true {
            let generation = phaseGeneration.load(ordering: .acquiring)
            if generation != seen, let body = phase {
                seen = generation
                body(cpu)
                barrier(parties: cpuCount)
            } else {
                quarry_sti_hlt()
            }
        }
    }

    /// Parks this CPU for good.
    static func park() -> Never {
        while true {
            quarry_cli()
            quarry_hlt()
        }
    }
}

/// The AP entry (called from boot/ap_trampoline_<arch>.S with the CPU's index, its stack,
/// per-CPU segment base and the IDT in place, FPU/SSE enabled, interrupts off).
@c(kernel_ap_main)
func kernelAPMain(_ index: UInt32) {
    guard SMP.join() else { SMP.park() }
    LocalAPIC.enable()
    LocalAPIC.startPeriodicTimer()
    quarry_sti()
    SMP.idle(cpu: Int(index))
}
