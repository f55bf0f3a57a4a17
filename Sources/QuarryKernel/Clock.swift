// Clock: time from the time-stamp counter, calibrated once against the PIT; busy delays.
// Neighbours: LocalAPIC.swift (calibrates its timer against this clock), SMP.swift
// (INIT-SIPI-SIPI delays), PlatformChecks.swift (bounded waits), NMIStorm.swift (PIT
// channel 0 as an NMI source).

import CQuarrySupport
import Quarry
import Synchronization

/// Under QEMU TCG the guest TSC runs at the host TSC rate and the PIT follows
/// QEMU's virtual clock; both track wall time, so the calibration holds.
enum Clock {
    /// TSC ticks per millisecond; 0 until `calibrate()` ran on the boot CPU.
    static let tscPerMillisecond = Atomic<UInt>(0)

    static let pitHz: UInt64 = 1_193_182
    static let pitChannel0Data: UInt16 = 0x40
    static let pitChannel2Data: UInt16 = 0x42
    static let pitCommand: UInt16 = 0x43
    /// Port 0x61: bit 0 gates PIT channel 2, bit 1 drives the speaker, bit 5 reads OUT2.
    static let pitGatePort: UInt16 = 0x61

    @inline(__always)
    static func now() -> UInt64 { quarry_rdtsc() }

    /// Measures the TSC over `milliseconds` of PIT channel 2 in mode 0 (one-shot):
    /// OUT2 goes high when the count reaches zero. Takes the fastest of three runs
    /// (a run can only be lengthened by the host descheduling the vCPU).
    static func calibrate(milliseconds: UInt64 = 10) {
        let count = UInt16(pitHz * milliseconds / 1000)
        var best = UInt64.max
        for _ in 0..<3 {
            let gate = quarry_inb(pitGatePort)
            quarry_outb(pitGatePort, (gate & ~0x02) | 0x01)  // speaker off, gate on
            quarry_outb(pitCommand, 0xB0)  // channel 2, lo/hi byte, mode 0, binary
            quarry_outb(pitChannel2Data, UInt8(truncatingIfNeeded: count))
            quarry_outb(pitChannel2Data, UInt8(truncatingIfNeeded: count >> 8))
            let start = now()
            while quarry_inb(pitGatePort) & 0x20 == 0 { quarry_pause() }
            let elapsed = now() &- start
            if elapsed < best { best = elapsed }
        }
        tscPerMillisecond.store(UInt(best / milliseconds), ordering: .releasing)
    }

    /// Runs PIT channel 0 as a square wave (mode 3) at about `hz`: its output, ISA IRQ 0,
    /// rises once per period (IOAPIC.swift routes it; the 8259 keeps IRQ 0 masked). Not
    /// mode 2, whose output is low for one PIT tick per period: measured here, mode 2 at
    /// 40 kHz gave about 4000 NMIs a second, mode 3 at 20 kHz about 17000.
    static func startPITChannel0(hz: UInt64) {
        let count = UInt16(clamping: max(pitHz / hz, 2))
        quarry_outb(pitCommand, 0x36)  // channel 0, lo/hi byte, mode 3, binary
        quarry_outb(pitChannel0Data, UInt8(truncatingIfNeeded: count))
        quarry_outb(pitChannel0Data, UInt8(truncatingIfNeeded: count >> 8))
    }

    /// Stops channel 0's pulses: mode 0 (one-shot) with the longest count, so its output
    /// rises at most once more, 55 ms later.
    static func stopPITChannel0() {
        quarry_outb(pitCommand, 0x30)  // channel 0, lo/hi byte, mode 0, binary
        quarry_outb(pitChannel0Data, 0xFF)
        quarry_outb(pitChannel0Data, 0xFF)
    }

    /// TSC ticks in `microseconds`.
    static func ticks(microseconds: UInt64) -> UInt64 {
        UInt64(tscPerMillisecond.load(ordering: .acquiring)) * microseconds / 1000
    }

    static func delay(microseconds: UInt64) {
        let end = now() &+ ticks(microseconds: microseconds)
        while now() < end { quarry_pause() }
    }

    /// Milliseconds between two TSC readings.
    static func milliseconds(from start: UInt64, to end: UInt64) -> UInt64 {
        let perMillisecond = UInt64(tscPerMillisecond.load(ordering: .acquiring))
        return perMillisecond == 0 ? 0 : (end &- start) / perMillisecond
    }
}
