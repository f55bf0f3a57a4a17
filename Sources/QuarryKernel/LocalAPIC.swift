// LocalAPIC: each CPU's local APIC: enable, EOI, periodic timer, inter-processor interrupts.
// Neighbours: Interrupts.swift (vectors, the timer handler), SMP.swift (INIT-SIPI-SIPI),
// Clock.swift (timer calibration), boot/isr_<arch>.S (sends EOI at LAPIC_EOI itself).

import CQuarrySupport
import Quarry
import Synchronization

/// The xAPIC register page at its reset address 0xFEE00000 (paging is off on i686 and
/// the page is identity-mapped uncached on x86_64, so the physical address is used
/// directly). boot/isr_<arch>.S hard-codes the EOI register
/// at this base; `enable()` checks the base has not been moved.
enum LocalAPIC {
    static let base = UInt(0xFEE0_0000)  // UInt(...): the literal overflows Int on i686
    static let baseMSR: UInt32 = 0x1B

    enum Register: UInt {
        case id = 0x20  // bits 31:24
        case taskPriority = 0x80
        case endOfInterrupt = 0xB0
        case logicalDestination = 0xD0  // bits 31:24
        case destinationFormat = 0xE0
        case spuriousVector = 0xF0
        case commandLow = 0x300
        case commandHigh = 0x310
        case timerVector = 0x320  // LVT timer
        case timerInitialCount = 0x380
        case timerCurrentCount = 0x390
        case timerDivide = 0x3E0
    }

    @inline(__always)
    static func read(_ register: Register) -> UInt32 {
        quarry_mmio_read32(base + register.rawValue)
    }

    @inline(__always)
    static func write(_ register: Register, _ value: UInt32) {
        quarry_mmio_write32(base + register.rawValue, value)
    }

    static let softwareEnable: UInt32 = 1 << 8
    static let lvtMasked: UInt32 = 1 << 16
    static let lvtPeriodic: UInt32 = 1 << 17
    static let divideBy16: UInt32 = 0x3

    /// Whether the MSR says the LAPIC is globally enabled at `base`.
    static var isAtResetBase: Bool {
        let msr = quarry_rdmsr(baseMSR)
        return UInt(truncatingIfNeeded: msr & 0xFFFF_F000) == base && msr & (1 << 11) != 0
    }

    /// Software-enables this CPU's LAPIC with the spurious vector and accepts all
    /// priorities. Every CPU calls it for itself.
    static func enable() {
        write(.taskPriority, 0)
        write(.spuriousVector, softwareEnable | UInt32(QUARRY_VECTOR_SPURIOUS))
    }

    // MARK: Timer

    /// Initial count for the periodic timer; set by `calibrateTimer` on the boot CPU,
    /// used by every CPU (they share the bus clock).
    static let timerInitialCount = Atomic<UInt>(0)

    /// Counts the timer's decrements (divide by 16) against the TSC over about 10 ms
    /// and stores the initial count that gives `hz` interrupts per second. Both
    /// readings bracket the same interval, so a vCPU descheduled in between changes
    /// both counts alike. Boot CPU, after `Clock.calibrate()`.
    static func calibrateTimer(hz: UInt) {
        write(.timerDivide, divideBy16)
        write(.timerVector, lvtMasked | UInt32(QUARRY_VECTOR_TIMER))  // one-shot, masked
        let start = Clock.now()
        write(.timerInitialCount, UInt32.max)
        Clock.delay(microseconds: 10_000)
        let remaining = read(.timerCurrentCount)
        let end = Clock.now()
        write(.timerInitialCount, 0)  // stop
        let decrements = UInt64(UInt32.max - remaining)
        let tscPerSecond = UInt64(Clock.tscPerMillisecond.load(ordering: .acquiring)) * 1000
        let perSecond = decrements * tscPerSecond / max(end &- start, 1)
        timerInitialCount.store(UInt(max(perSecond / UInt64(hz), 1)), ordering: .releasing)
    }

    /// Starts this CPU's periodic timer on QUARRY_VECTOR_TIMER. Interrupts arrive once
    /// the CPU enables them.
    static func startPeriodicTimer() {
        write(.timerDivide, divideBy16)
        write(.timerVector, lvtPeriodic | UInt32(QUARRY_VECTOR_TIMER))
        write(.timerInitialCount, UInt32(timerInitialCount.load(ordering: .acquiring)))
    }

    // MARK: Inter-processor interrupts

    static let deliveryPending: UInt32 = 1 << 12
    static let levelAssert: UInt32 = 1 << 14
    static let allExcludingSelf: UInt32 = 0b11 << 18
    static let deliveryINIT: UInt32 = 0b101 << 8
    static let deliveryStartup: UInt32 = 0b110 << 8
    static let deliveryNMI: UInt32 = 0b100 << 8

    /// This CPU's local APIC id (QEMU numbers them 0, 1, ... like the CPU indices, but
    /// nothing here assumes it).
    static var id: UInt32 { read(.id) >> 24 }

    /// Sends an IPI (destination in the high word first; writing the low word sends)
    /// and waits until the LAPIC has accepted it.
    static func sendIPI(low: UInt32, destination: UInt32 = 0) {
        write(.commandHigh, destination << 24)
        write(.commandLow, low)
        while read(.commandLow) & deliveryPending != 0 { quarry_pause() }
    }

    /// INIT to every other CPU.
    static func broadcastINIT() {
        sendIPI(low: allExcludingSelf | levelAssert | deliveryINIT)
    }

    /// Startup IPI to every other CPU: they begin in real mode at vectorPage * 4 KiB.
    static func broadcastStartup(vectorPage: UInt8) {
        sendIPI(low: allExcludingSelf | levelAssert | deliveryStartup | UInt32(vectorPage))
    }

    /// An NMI to the CPU whose APIC id is `apicID` (physical destination, no shorthand:
    /// the xAPIC's "self" shorthand is valid for fixed delivery only). The caller's own
    /// id sends it to itself. Writes the high word, then the low word: the caller must
    /// keep other senders on its CPU (its timer handler) out of the pair.
    static func sendNMI(toAPIC apicID: UInt32) {
        sendIPI(low: levelAssert | deliveryNMI, destination: apicID)
    }

    /// Puts this CPU in the flat logical model with `1 << cpu` as its logical id (CPUs
    /// 0-7), so that the I/O APIC can deliver one message to a set of CPUs.
    static func setFlatLogicalID(cpu: Int) {
        write(.destinationFormat, 0xFFFF_FFFF)
        write(.logicalDestination, cpu < 8 ? UInt32(1) << UInt32(24 + cpu) : 0)
    }
}
