// X86Platform: Quarry's Platform on bare-metal x86 (i686 and x86_64 kernels), built on CQuarrySupport.
// Neighbours: Quarry/Platform/Platform.swift (the contract), CQuarrySupport/include/quarry_support.h
// (the instructions), boot/multiboot_<arch>.S and boot/ap_trampoline_<arch>.S (which set each
// CPU's %fs segment (i686) or IA32_GS_BASE (x86_64) so that cpuIndex is one instruction).

import CQuarrySupport

#if SWIFT_PACKAGE
import Quarry  // its own module in the package; the Makefile compiles this file into Quarry
#endif

/// Bare-metal x86, ring 0 (i686: no paging; x86_64: an identity map). Costs of the
/// fast-path requirements, inlined into the caller (no call):
/// - `cpuIndex`: 1 instruction, `mov %fs:0, %reg` on i686, `mov %gs:0, %reg` on x86_64
///   (each CPU's segment base is its per-CPU slot, whose first word is its index).
/// - `disableInterrupts()`: 3 instructions, `pushf; pop; cli`.
/// - `restoreInterrupts(_:)`: 2 instructions, `push; popf` (restores IF exactly as
///   it was, never a blind `sti`).
/// - `pause()`: 1 instruction.
///
/// `write(_:)` polls COM1 and must only be used after the kernel initialised the UART
/// (QEMU's UART works without initialisation, real ones need a baud rate).
public enum X86Platform: Platform {
    /// Must equal QUARRY_MAX_CPUS in quarry_support.h and boot/boot_defs.h (the
    /// number of per-CPU GDT segments and AP stacks); the kernel checks it at boot.
    public static var maxCPUs: Int { 16 }

    @inlinable
    public static var cpuIndex: Int {
        @inline(__always) get { Int(truncatingIfNeeded: quarry_cpu_index()) }
    }

    @inlinable @inline(__always)
    public static func disableInterrupts() -> InterruptState {
        InterruptState(raw: quarry_save_flags_cli())
    }

    @inlinable @inline(__always)
    public static func restoreInterrupts(_ state: InterruptState) {
        quarry_restore_flags(state.raw)
    }

    @inlinable @inline(__always)
    public static func pause() {
        quarry_pause()
    }

    /// COM1 data register; its line status register is at +5.
    public static let com1Port: UInt16 = 0x3F8
    /// LSR bit 5: the transmit holding register is empty.
    public static let transmitEmpty: UInt8 = 0x20

    public static func write(_ byte: UInt8) {
        while quarry_inb(com1Port + 5) & transmitEmpty == 0 {
            quarry_pause()
        }
        quarry_outb(com1Port, byte)
    }

    /// `rdrand` when CPUID says the CPU has it (QEMU's default model does not),
    /// otherwise a mix of the time-stamp counter.
    public static func entropy() -> UInt {
        quarry_rdrand_or_rdtsc()
    }
}
