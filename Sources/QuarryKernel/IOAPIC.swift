// IOAPIC: the I/O APIC at its usual address, and the one route the kernel programs: the
// PIT's IRQ 0 delivered as an NMI to a set of CPUs, the NMI storm's asynchronous source.
// Neighbours: NMIStorm.swift (its user), Clock.swift (PIT channel 0's rate),
// LocalAPIC.swift (the delivery mode encoding and each CPU's logical id).

import CQuarrySupport
import Quarry

/// The I/O APIC at 0xFEC00000 (QEMU's pc machine; identity-mapped uncached on x86_64 like
/// the LAPIC). Registers are reached through a select register and a window. Only the
/// boot CPU programs it, with no other CPU touching it.
enum IOAPIC {
    static let base = UInt(0xFEC0_0000)  // UInt(...): the literal overflows Int on i686
    static let selectRegister = base
    static let windowRegister = base + 0x10

    static let versionIndex: UInt32 = 0x01
    /// Redirection entry n is registers 0x10 + 2n (low word) and 0x11 + 2n (high word).
    static let firstEntryIndex: UInt32 = 0x10

    /// ISA IRQ 0 (the PIT) arrives on input 2 (the ACPI interrupt source override every
    /// PC has; QEMU wires it so).
    static let pitInput = 2

    static let masked: UInt32 = 1 << 16
    static let logicalDestination: UInt32 = 1 << 11

    static func read(_ index: UInt32) -> UInt32 {
        quarry_mmio_write32(selectRegister, index)
        return quarry_mmio_read32(windowRegister)
    }

    static func write(_ index: UInt32, _ value: UInt32) {
        quarry_mmio_write32(selectRegister, index)
        quarry_mmio_write32(windowRegister, value)
    }

    /// The number of redirection entries (0 if nothing answers at `base`).
    static var entryCount: Int {
        let version = read(versionIndex)
        return version == 0xFFFF_FFFF ? 0 : Int((version >> 16) & 0xFF) + 1
    }

    /// Routes `input` to the CPUs whose flat logical ids are in `cpus` as an NMI: edge
    /// triggered, active high, unmasked (the high word first, so it is never unmasked
    /// with a stale destination). Each target CPU must have called
    /// `LocalAPIC.setFlatLogicalID(cpu:)`.
    static func routeNMI(input: Int, cpus: UInt8) {
        let low = firstEntryIndex + UInt32(2 * input)
        write(low, masked)
        write(low + 1, UInt32(cpus) << 24)
        write(low, LocalAPIC.deliveryNMI | logicalDestination)
    }

    static func mask(input: Int) {
        write(firstEntryIndex + UInt32(2 * input), masked)
    }
}
