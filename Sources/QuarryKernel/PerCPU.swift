// PerCPU: each CPU's 64-byte slot in `quarry_percpu`, the memory its %fs (i686) or %gs (x86_64) base maps.
// Neighbours: boot/multiboot_<arch>.S (allocates the slots, writes each index word, points
// the GDT's per-CPU segments (i686) or each CPU's IA32_GS_BASE (x86_64) at them),
// QuarryX86/X86Platform.swift (reads the index through the segment), Interrupts.swift
// (counts timer ticks here).

import CQuarrySupport
import Quarry
import Synchronization

/// A handle to one CPU's slot. Layout (W = the word size: 4 on i686, 8 on x86_64):
///   +0  index      UInt32, written once by _start before any CPU runs Swift; read via
///                  %fs:0 (i686) or %gs:0 (x86_64)
///   +W  ticks      UInt, LAPIC timer interrupts taken by that CPU (written only by its
///                  own timer handler, read by any CPU: atomic)
/// Invariant: slot(i).index == i for every i in 0 ..< maxCPUs.
struct PerCPU {
    let address: UInt

    static let slotSize = Int(QUARRY_PERCPU_SIZE)
    static let count = Int(QUARRY_MAX_CPUS)

    static func slot(_ index: Int) -> PerCPU {
        precondition(index >= 0 && index < count, "PerCPU.slot: CPU index out of range")
        return PerCPU(address: quarry_percpu_base() + UInt(index * slotSize))
    }

    /// The calling CPU's slot.
    static var current: PerCPU { slot(X86Platform.cpuIndex) }

    /// The index word, read through the flat data segment (not %fs).
    var index: Int {
        // Sound: `address` is inside quarry_percpu (checked in slot(_:)), the word is
        // 4-aligned, and it is written only before any Swift code runs.
        Int(UnsafePointer<UInt32>(bitPattern: address)!.pointee)
    }

    /// Timer interrupts taken by this CPU.
    var ticks: UnsafeMutablePointer<Atomic<UInt>> {
        // Sound: word 1 of the slot, word-aligned (the slot is 64-aligned), used by
        // nothing else; every access goes through Atomic, so readers on other CPUs do
        // not race the handler.
        UnsafeMutablePointer<Atomic<UInt>>(bitPattern: address + UInt(MemoryLayout<UInt>.stride))!
    }
}
