// Console: text over COM1 through X86Platform.write (QEMU's UART needs no set-up), with
// nothing that allocates: static strings and decimal numbers only.
// Neighbours: Kernel.swift (the checks that print).

import QuarryX86

enum Console {
    static func write(_ text: StaticString) {
        text.withUTF8Buffer { bytes in
            for byte in bytes { X86Platform.write(byte) }
        }
    }

    static func line(_ text: StaticString) {
        write(text)
        X86Platform.write(UInt8(ascii: "\n"))
    }

    static func number(_ value: Int) {
        var digits = InlineArray<20, UInt8>(repeating: 0)
        var rest = value.magnitude
        var count = 0
        repeat {
            digits[count] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
            count += 1
        } while rest != 0
        if value < 0 { X86Platform.write(UInt8(ascii: "-")) }
        while count > 0 {
            count -= 1
            X86Platform.write(digits[count])
        }
    }
}
