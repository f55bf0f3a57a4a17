// TestRandom: the tests' one seeded random generator and one cookie scheme, host and
// kernel alike (Embedded-compatible: no allocation, no existentials).
// Neighbours: the scenarios of Tests/Scenarios, Tests/QuarryTests (testSeeds: seeds from
// the environment), Sources/QuarryKernel (the suites' fixed seeds).

/// SplitMix64: a small, fast, seedable generator (every 64-bit state is valid, 0
/// included); every randomized test prints or fixes its seed.
public struct SeededGenerator: RandomNumberGenerator {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A value in `0 ..< n` (`n` > 0).
    public mutating func below(_ n: Int) -> Int { Int(truncatingIfNeeded: next() % UInt64(n)) }
}

/// A cookie per object. `write` and `check` put a word derived from the object's address
/// and a per-run key into its first, middle and last word (cheap: for stress runs);
/// `fill` and `intact` cover every byte with a pattern of the key alone (the word at
/// byte `i` holds key + i, each tail byte the low byte of key + i), so contents that
/// move (realloc) keep their pattern. Two overlapping objects, or a write into a free
/// object, show up as a mismatch when the object is checked before it is freed.
public enum Cookie {
    @inline(__always)
    public static func value(_ address: UInt, key: UInt) -> UInt { (address &* 0x9E37_79B9) ^ key }

    public static func write(_ p: UnsafeMutableRawPointer, size: Int, key: UInt) {
        let v = value(UInt(bitPattern: p), key: key)
        let w = MemoryLayout<UInt>.stride
        let words = size / w
        p.storeBytes(of: v, as: UInt.self)
        if words > 2 { (p + (words / 2) * w).storeBytes(of: v ^ 1, as: UInt.self) }
        if words > 1 { (p + (words - 1) * w).storeBytes(of: v ^ 2, as: UInt.self) }
    }

    public static func check(_ p: UnsafeMutableRawPointer, size: Int, key: UInt) -> Bool {
        let v = value(UInt(bitPattern: p), key: key)
        let w = MemoryLayout<UInt>.stride
        let words = size / w
        if p.load(as: UInt.self) != v { return false }
        if words > 2 && (p + (words / 2) * w).load(as: UInt.self) != v ^ 1 { return false }
        if words > 1 && (p + (words - 1) * w).load(as: UInt.self) != v ^ 2 { return false }
        return true
    }

    public static func fill(_ p: UnsafeMutableRawPointer, size: Int, key: UInt) {
        let w = MemoryLayout<UInt>.stride
        var i = 0
        while i + w <= size {
            p.storeBytes(of: key &+ UInt(i), toByteOffset: i, as: UInt.self)
            i += w
        }
        while i < size {
            p.storeBytes(of: UInt8(truncatingIfNeeded: key &+ UInt(i)), toByteOffset: i, as: UInt8.self)
            i += 1
        }
    }

    public static func intact(_ p: UnsafeMutableRawPointer, size: Int, key: UInt) -> Bool {
        let w = MemoryLayout<UInt>.stride
        var i = 0
        while i + w <= size {
            if p.load(fromByteOffset: i, as: UInt.self) != key &+ UInt(i) { return false }
            i += w
        }
        while i < size {
            if p.load(fromByteOffset: i, as: UInt8.self) != UInt8(truncatingIfNeeded: key &+ UInt(i)) { return false }
            i += 1
        }
        return true
    }

    /// `fill` keyed by the object's own address (nothing to remember per object).
    public static func fill(at address: UInt, size: Int) {
        fill(UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped, size: size, key: value(address, key: 0))
    }

    public static func intact(at address: UInt, size: Int) -> Bool {
        intact(UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped, size: size, key: value(address, key: 0))
    }
}
