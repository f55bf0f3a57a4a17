// Console: text output for the kernel, without allocation or String interpolation.
// Neighbours: Serial.swift (the UART), TestHarness.swift (PASS/FAIL lines), Interrupts.swift
// (exception reports use the unlocked `emergency` path).

import CQuarrySupport
import Quarry
import Synchronization

/// Prints `StaticString`s and integers (decimal, hex) over `X86Platform.write`.
///
/// Concurrency: CPUs print whole lines under `line { ... }`, a spin lock held with
/// interrupts disabled on the holder. The lock records its owner, so a CPU that
/// faults while printing can still print its exception report (re-entry by the
/// owner does not spin). Timer handlers must not print.
enum Console {
    /// 0 when free, else the owner's CPU index + 1.
    static let owner = Atomic<Int>(0)

    /// Runs `body` holding the console: its output is not interleaved with other CPUs'.
    static func line(_ body: () -> Void) {
        let state = X86Platform.disableInterrupts()
        let me = X86Platform.cpuIndex + 1
        let nested = owner.load(ordering: .relaxed) == me
        if !nested {
            while !owner.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
                X86Platform.pause()
            }
        }
        body()
        if !nested {
            owner.store(0, ordering: .releasing)
        }
        X86Platform.restoreInterrupts(state)
    }

    static func print(_ text: StaticString) {
        text.withUTF8Buffer { bytes in
            for byte in bytes {
                if byte == UInt8(ascii: "\n") { X86Platform.write(UInt8(ascii: "\r")) }
                X86Platform.write(byte)
            }
        }
    }

    static func printLine(_ text: StaticString) {
        line {
            print(text)
            newline()
        }
    }

    static func newline() {
        X86Platform.write(UInt8(ascii: "\r"))
        X86Platform.write(UInt8(ascii: "\n"))
    }

    static func decimal(_ value: UInt64) {
        var divisor: UInt64 = 1
        while value / divisor >= 10 { divisor *= 10 }
        while divisor > 0 {
            X86Platform.write(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: (value / divisor) % 10))
            divisor /= 10
        }
    }

    static func decimal(_ value: Int) {
        if value < 0 {
            X86Platform.write(UInt8(ascii: "-"))
            decimal(UInt64(value.magnitude))
        } else {
            decimal(UInt64(value))
        }
    }

    static func decimal(_ value: UInt) { decimal(UInt64(value)) }
    static func decimal(_ value: UInt32) { decimal(UInt64(value)) }

    /// `prefix N CPUs x M operations in T ms: `, the head of a stress suite's report line
    /// (inside `line`).
    static func stressHead(_ prefix: StaticString, cpus: Int, operations: Int, milliseconds: UInt64) {
        print(prefix)
        decimal(cpus)
        print(" CPUs x ")
        decimal(operations)
        print(" operations in ")
        decimal(milliseconds)
        print(" ms: ")
    }

    /// `A allocations, F frees, R refusals, [S allocations skipped ..., ]X failures`: a
    /// handler's ledger (Tests/Scenarios/HandlerWork.swift) in a report line (inside `line`).
    static func handlerCounts(_ l: UnsafeMutablePointer<HandlerLedger>) {
        decimal(l.pointee.allocations)
        print(" allocations, ")
        decimal(l.pointee.frees)
        print(" frees, ")
        decimal(l.pointee.refusals.load(ordering: .relaxed))
        print(" refusals, ")
        if l.pointee.skipped.load(ordering: .relaxed) > 0 {
            decimal(l.pointee.skipped.load(ordering: .relaxed))
            print(" allocations skipped (16 held after .busy), ")
        }
        decimal(l.pointee.failures.load(ordering: .relaxed))
        print(" failures")
    }

    /// `0x` and `digits` hex digits (leading zeros kept).
    static func hex(_ value: UInt64, digits: Int = 8) {
        print("0x")
        var shift = (digits - 1) * 4
        while shift >= 0 {
            let nibble = UInt8(truncatingIfNeeded: (value >> UInt64(shift)) & 0xF)
            X86Platform.write(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
            shift -= 4
        }
    }

    static func hex(_ value: UInt32) { hex(UInt64(value), digits: 8) }
    static func hex(_ value: UInt) { hex(UInt64(value), digits: 2 * MemoryLayout<UInt>.size) }
}
