// ByteSink: text output without allocation (decimal numbers, fixed strings, padding).
// Neighbours: Platform (PlatformOutput writes through it), Quarry+Statistics (slabinfo).

/// Anything that accepts bytes of text: the serial port, a test's buffer.
public protocol ByteSink {
    /// Accepts one byte of text. Must not allocate (slabinfo writes with Quarry's locks held).
    mutating func write(_ byte: UInt8)
}

extension ByteSink {
    /// Writes the UTF-8 bytes of `text`.
    public mutating func write(_ text: StaticString) {
        text.withUTF8Buffer { for b in $0 { write(b) } }
    }

    /// Writes the bytes of `name`.
    public mutating func write(_ name: CacheName) {
        name.forEachByte { write($0) }
    }

    /// Writes `value` in decimal, with a leading `-` when negative.
    public mutating func write(_ value: Int) {
        if value < 0 { write(UInt8(ascii: "-")) }
        write(UInt64(word: value.magnitude))
    }

    /// Writes `value` in decimal (at most 20 digits, from a fixed buffer: no allocation).
    public mutating func write(_ value: UInt64) {
        var digits = InlineArray<20, UInt8>(repeating: 0)
        var n = 0
        var v = value
        repeat {
            digits[n] = UInt8(truncatingIfNeeded: v % 10) + UInt8(ascii: "0")
            v /= 10
            n += 1
        } while v != 0
        while n > 0 {
            n -= 1
            write(digits[n])
        }
    }

    /// Writes `value` right-aligned in `width` columns.
    public mutating func write(_ value: UInt64, width: Int) {
        var digits = 1
        var v = value
        while v >= 10 { v /= 10; digits += 1 }
        pad(width - digits)
        write(value)
    }

    /// Writes `value` right-aligned in `width` columns; a negative value is written as 0.
    public mutating func write(_ value: Int, width: Int) {
        write(UInt64(word: UInt(max(value, 0))), width: width)
    }

    /// Writes `name` left-aligned in `width` columns.
    public mutating func write(_ name: CacheName, width: Int) {
        write(name)
        pad(width - name.count)
    }

    /// Writes `count` spaces (none when `count <= 0`).
    public mutating func pad(_ count: Int) {
        var i = 0
        while i < count { write(UInt8(ascii: " ")); i += 1 }
    }
}

/// Writes through `P.write` (the serial port on bare metal).
public struct PlatformOutput<P: Platform>: ByteSink {
    /// An output over `P`; it holds no state.
    public init() {}
    /// Writes `byte` with `P.write(_:)`.
    @inline(__always) public mutating func write(_ byte: UInt8) { P.write(byte) }
}

extension UInt64 {
    /// Zero-extends a machine word. Plain `UInt64(word)` on a 32-bit target goes through
    /// the generic `BinaryInteger` conversion, which builds an array of words: an
    /// allocation, refused by the Embedded library's -no-allocations (measured on i686).
    @inline(__always)
    public init(word: UInt) { self.init(_truncatingBits: word) }
}
