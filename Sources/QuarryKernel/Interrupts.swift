// Interrupts: the IDT, the legacy PIC (remapped and masked), and the Swift side of
// every interrupt: the dispatcher, the timer hook, and the fatal-exception report.
// Neighbours: boot/isr_<arch>.S (the stubs that call quarry_interrupt_dispatch),
// LocalAPIC.swift (timer and EOI), PerCPU.swift (tick counts), AllocatorSuite.swift
// (allocatorTimerHook, called from every tick), NMIStorm.swift (vector 2) and
// SingleStep.swift (vector 1), Tests/Scenarios/HandlerWork.swift (what those two handlers do).

import CQuarrySupport
import Quarry
import Synchronization

/// What the stubs push (declared in quarry_support.h, which boot/isr_<arch>.S follows).
typealias InterruptFrame = quarry_interrupt_frame

enum Interrupts {
    /// Where the IDT stubs sit in `quarry_isr_stub_table` and which vector each serves.
    static let exceptionCount = 32

    /// Interrupt gate (32-bit on i686, 64-bit in long mode), present, DPL 0: the CPU
    /// clears IF on entry.
    static let interruptGate: UInt32 = 0x8E00
    /// The kernel code segment (QUARRY_GDT_CODE in boot/boot_defs.h: 64-bit code on x86_64).
    static let codeSelector: UInt32 = 0x08

    #if arch(x86_64)
    static let gateSize = 16
    #else
    static let gateSize = 8
    #endif

    /// Fills the shared IDT from the stub table: exceptions 0-31 (the NMI, vector 2, and
    /// #DB, vector 1, included: their stubs save the x87/SSE state like every other), the
    /// LAPIC timer and the spurious vector. Other vectors stay not-present (a stray one
    /// raises #NP, which is reported as an exception). Boot CPU only, before any AP starts.
    static func buildIDT() {
        for stub in 0..<Int(QUARRY_STUB_COUNT) {
            let vector: Int
            switch Int32(stub) {
            case QUARRY_STUB_TIMER: vector = Int(QUARRY_VECTOR_TIMER)
            case QUARRY_STUB_SPURIOUS: vector = Int(QUARRY_VECTOR_SPURIOUS)
            default: vector = stub
            }
            setGate(vector, handler: quarry_isr_stub(UInt32(stub)))
        }
    }

    static func setGate(_ vector: Int, handler: UInt) {
        // Sound: quarry_idt is 256 gates of `gateSize` bytes and 0 <= vector < 256.
        precondition(vector >= 0 && vector < 256, "setGate: vector out of range")
        let gate = UnsafeMutablePointer<UInt32>(bitPattern: quarry_idt_base() + UInt(vector * gateSize))!
        let low = UInt32(truncatingIfNeeded: handler)
        gate[0] = (low & 0xFFFF) | (codeSelector << 16)  // offset 15:0, kernel code selector
        gate[1] = (low & 0xFFFF_0000) | interruptGate  // offset 31:16, type and present (IST 0)
        #if arch(x86_64)
        gate[2] = UInt32(truncatingIfNeeded: handler >> 32)  // offset 63:32
        gate[3] = 0  // reserved
        #endif
    }

    /// Loads the shared IDT on the calling CPU (APs do this in their entry path).
    static func load() {
        quarry_lidt(UnsafeRawPointer(bitPattern: quarry_idt_descriptor()))
    }

    // MARK: Legacy PIC

    /// Remaps the two 8259s to vectors 0x20-0x2F (away from the exceptions) and masks
    /// every line. Must run before the first `sti`: a pending IRQ0 would otherwise
    /// arrive as vector 8 and look like a double fault.
    static func remapAndMaskPIC() {
        let master: UInt16 = 0x20, slave: UInt16 = 0xA0
        func out(_ port: UInt16, _ value: UInt8) {
            quarry_outb(port, value)
            quarry_outb(0x80, 0)  // a short I/O delay for old PICs
        }
        out(master, 0x11); out(slave, 0x11)  // ICW1: init, ICW4 follows
        out(master + 1, 0x20); out(slave + 1, 0x28)  // ICW2: vector offsets
        out(master + 1, 0x04); out(slave + 1, 0x02)  // ICW3: cascade on IRQ2
        out(master + 1, 0x01); out(slave + 1, 0x01)  // ICW4: 8086 mode
        out(master + 1, 0xFF); out(slave + 1, 0xFF)  // mask everything
    }

    static var picMasks: (master: UInt8, slave: UInt8) {
        (quarry_inb(0x21), quarry_inb(0xA1))
    }

    /// While set, every timer tick zeroes every xmm register (xmm0-7; xmm0-15 on x86_64),
    /// as SSE code in a handler would: the interrupted code must not notice (the stubs'
    /// fxsave/fxrstor).
    static let clobberSIMDInTimer = Atomic<Bool>(false)

    // MARK: Breakpoint self-test

    /// Set by the self-test before it executes `int3`: the handler then counts the
    /// trap and returns instead of treating it as fatal.
    static let breakpointExpected = Atomic<Bool>(false)
    static let breakpointsTaken = Atomic<Int>(0)
    /// The vector and error code the stub pushed for the last expected breakpoint.
    static let lastBreakpointFrame = Atomic<UInt>(0)
}

extension InterruptFrame {
    /// The flags register of the interrupted code (as iret will restore it).
    var interruptedFlags: UInt {
        #if arch(x86_64)
        UInt(rflags)
        #else
        UInt(eflags)
        #endif
    }

    /// The address of the interrupted instruction (for a trap: the next one to run).
    var interruptedIP: UInt {
        #if arch(x86_64)
        UInt(rip)
        #else
        UInt(eip)
        #endif
    }
}

/// Where a handler that masking cannot hold off (the NMI, #DB) landed. Such handlers
/// call Quarry wherever they land (docs/design.md, "Interrupt contract": a call that
/// interrupted its CPU inside Quarry takes the nested path); the suites count the
/// landings in masked code to show that those places were reached.
enum HandlerPolicy {
    /// True when the code `frame` interrupted had interrupts masked.
    static func landedInMaskedCode(_ frame: UnsafeMutablePointer<InterruptFrame>) -> Bool {
        frame.pointee.interruptedFlags & UInt(QUARRY_FLAGS_IF) == 0
    }
}

/// The periodic LAPIC timer's work, on the CPU that took the interrupt, with
/// interrupts disabled and the x87/SSE state saved by the stub. It may run any Swift
/// code that does not wait for another CPU (including allocating, once Quarry backs
/// the runtime's allocations).
func timerTick() {
    PerCPU.current.ticks.pointee.add(1, ordering: .relaxed)
    if Interrupts.clobberSIMDInTimer.load(ordering: .relaxed) {
        quarry_clobber_xmm()
    }
    allocatorTimerHook()
}

/// Called by every stub in boot/isr_<arch>.S.
@c(quarry_interrupt_dispatch)
func quarryInterruptDispatch(_ vector: UInt32, _ errorCode: UInt32, _ frame: UnsafeMutablePointer<InterruptFrame>) {
    switch vector {
    case UInt32(QUARRY_VECTOR_TIMER):
        timerTick()
    case UInt32(QUARRY_VECTOR_SPURIOUS):
        break
    case 2:
        NMIStorm.nmi(frame)
    case 1 where SingleStep.isSteppingHere:
        SingleStep.trap(frame)
    case 3 where Interrupts.breakpointExpected.load(ordering: .relaxed):
        Interrupts.breakpointExpected.store(false, ordering: .relaxed)
        Interrupts.lastBreakpointFrame.store(
            UInt(frame.pointee.vector) << 16 | UInt(frame.pointee.error_code),
            ordering: .relaxed)
        Interrupts.breakpointsTaken.add(1, ordering: .relaxed)
    default:
        reportFatalException(vector, errorCode, frame)
    }
}

/// Prints `EXCEPTION vector=… error=… eip=… cpu=…` (`rip=` on x86_64) and the registers,
/// then exits QEMU with the failure status. Does not return.
func reportFatalException(_ vector: UInt32, _ errorCode: UInt32, _ frame: UnsafeMutablePointer<InterruptFrame>) -> Never
{
    let f = frame.pointee
    Console.line {
        Console.newline()
        Console.print("EXCEPTION vector=")
        Console.decimal(vector)
        Console.print(" (")
        Console.print(exceptionName(vector))
        Console.print(") error=")
        Console.hex(errorCode)
        #if arch(x86_64)
        Console.print(" rip=")
        Console.hex(UInt(f.rip))
        Console.print(" cpu=")
        Console.decimal(X86Platform.cpuIndex)
        Console.newline()
        Console.print("  rax=")
        Console.hex(UInt(f.rax))
        Console.print(" rbx=")
        Console.hex(UInt(f.rbx))
        Console.print(" rcx=")
        Console.hex(UInt(f.rcx))
        Console.print(" rdx=")
        Console.hex(UInt(f.rdx))
        Console.newline()
        Console.print("  rsi=")
        Console.hex(UInt(f.rsi))
        Console.print(" rdi=")
        Console.hex(UInt(f.rdi))
        Console.print(" rbp=")
        Console.hex(UInt(f.rbp))
        Console.print(" rsp=")
        Console.hex(UInt(f.rsp))
        Console.newline()
        Console.print("  rflags=")
        Console.hex(UInt(f.rflags))
        #else
        Console.print(" eip=")
        Console.hex(f.eip)
        Console.print(" cpu=")
        Console.decimal(X86Platform.cpuIndex)
        Console.newline()
        Console.print("  eax=")
        Console.hex(f.eax)
        Console.print(" ebx=")
        Console.hex(f.ebx)
        Console.print(" ecx=")
        Console.hex(f.ecx)
        Console.print(" edx=")
        Console.hex(f.edx)
        Console.print(" esi=")
        Console.hex(f.esi)
        Console.print(" edi=")
        Console.hex(f.edi)
        Console.print(" ebp=")
        Console.hex(f.ebp)
        Console.print(" eflags=")
        Console.hex(f.eflags)
        #endif
        if vector == 14 {
            Console.print(" cr2=")
            Console.hex(quarry_read_cr2())
        }
        Console.newline()
        Console.print("FAIL cpu exception")
        Console.newline()
    }
    TestHarness.exit(.failure)
}

func exceptionName(_ vector: UInt32) -> StaticString {
    switch vector {
    case 0: return "#DE divide error"
    case 1: return "#DB debug"
    case 2: return "NMI"
    case 3: return "#BP breakpoint"
    case 4: return "#OF overflow"
    case 5: return "#BR bound range"
    case 6: return "#UD invalid opcode"
    case 7: return "#NM device not available"
    case 8: return "#DF double fault"
    case 10: return "#TS invalid TSS"
    case 11: return "#NP segment not present"
    case 12: return "#SS stack fault"
    case 13: return "#GP general protection"
    case 14: return "#PF page fault"
    case 16: return "#MF x87 error"
    case 17: return "#AC alignment check"
    case 18: return "#MC machine check"
    case 19: return "#XM SIMD error"
    default: return "unexpected vector"
    }
}
