// Serial: the COM1 UART (16550) set-up and its self-test; Console prints through it.
// Neighbours: Console.swift (text on top of X86Platform.write), QuarryX86/X86Platform.swift
// (the byte-level write that polls the line status register).

import CQuarrySupport
import Quarry

/// COM1 at 0x3F8, 115200 baud, 8N1, FIFOs on, no UART interrupts (the kernel polls).
enum Serial {
    static let base: UInt16 = 0x3F8

    /// Register offsets from `base`.
    enum Register: UInt16 {
        case data = 0  // also the divisor low byte while DLAB is set
        case interruptEnable = 1  // also the divisor high byte while DLAB is set
        case fifoControl = 2
        case lineControl = 3
        case modemControl = 4
        case lineStatus = 5
    }

    @inline(__always)
    static func write(_ register: Register, _ value: UInt8) {
        quarry_outb(base + register.rawValue, value)
    }

    @inline(__always)
    static func read(_ register: Register) -> UInt8 {
        quarry_inb(base + register.rawValue)
    }

    /// Modem control: DTR | RTS | OUT2; `loopback` adds bit 4.
    static let modemNormal: UInt8 = 0x0B
    static let modemLoopback: UInt8 = 0x1B
    /// Line status: data ready (bit 0).
    static let dataReady: UInt8 = 0x01

    static func initialize() {
        write(.interruptEnable, 0x00)  // no UART interrupts
        write(.lineControl, 0x80)  // DLAB: the next two writes set the divisor
        write(.data, 0x01)  // divisor 1: 115200 baud
        write(.interruptEnable, 0x00)
        write(.lineControl, 0x03)  // 8 data bits, no parity, 1 stop bit, DLAB off
        write(.fifoControl, 0xC7)  // FIFOs on and cleared, 14-byte threshold
        write(.modemControl, modemNormal)
    }

    /// Sends bytes through the UART's internal loopback and reads them back: proves
    /// the port exists and its transmit and receive paths work. Leaves the UART in
    /// normal mode. Call before other CPUs print.
    static func loopbackWorks() -> Bool {
        if read(.lineStatus) == 0xFF { return false }  // no device answers the port
        write(.modemControl, modemLoopback)
        defer { write(.modemControl, modemNormal) }
        while read(.lineStatus) & dataReady != 0 { _ = read(.data) }  // drain
        let probes: UInt32 = 0xA55A_00FF  // four probe bytes, no array (no allocation)
        for i in 0..<4 {
            let probe = UInt8(truncatingIfNeeded: probes >> UInt32(8 * i))
            X86Platform.write(probe)
            var spins = 0
            while read(.lineStatus) & dataReady == 0 {
                spins += 1
                if spins > 1_000_000 { return false }
                X86Platform.pause()
            }
            if read(.data) != probe { return false }
        }
        return true
    }
}
