// AddressSanitizer: host builds with QUARRY_ASAN poison what is free inside Quarry's own
// memory, so ASan reports a user's access to a freed object. Compiled out everywhere else.
// Neighbours: CQuarryASan (the C shim), SlabCache (free and handOut), SlabLayer
// (createSlab), Span (allocate, free, shrink). docs/testing.md.

#if QUARRY_ASAN && !hasFeature(Embedded)
import CQuarryASan
#endif

/// What is poisoned (unaddressable) in a QUARRY_ASAN build:
/// - a freed object of an ordinary cache, from its free until it is handed out again
///   (in a magazine, the depot, or on its slab's free list), except its link word, which
///   Quarry reads and writes while the object is free (FreeLink; a stray write there is
///   caught as `.corruptFreeList` instead);
/// - the pages of a freed span, and the pages a span gives back when it shrinks.
/// Not poisoned: type-stable caches (readers may read freed objects by design), caches
/// with the `poison` option (Quarry checks their freed bytes itself, and `validate()`
/// reads them), the internal caches, slab slack and never-carved objects. A new slab and a new span are
/// unpoisoned as a whole, so pages reused from an old slab or span start clean.
enum AddressSanitizer {
    /// True when the build calls the shim (it may still be a no-op without ASan).
    static var isCompiledIn: Bool {
        #if QUARRY_ASAN && !hasFeature(Embedded)
        return true
        #else
        return false
        #endif
    }

    /// True when the shim itself was built with AddressSanitizer (`--sanitize=address`).
    static var isActive: Bool {
        #if QUARRY_ASAN && !hasFeature(Embedded)
        return quarry_asan_enabled() != 0
        #else
        return false
        #endif
    }

    /// True when ASan reports an access to the byte at `pointer` (tests).
    static func isPoisoned(_ pointer: UnsafeRawPointer) -> Bool {
        #if QUARRY_ASAN && !hasFeature(Embedded)
        return quarry_asan_is_poisoned(pointer) != 0
        #else
        return false
        #endif
    }

    @inline(__always)
    static func poison(_ address: UInt, _ count: Int) {
        #if QUARRY_ASAN && !hasFeature(Embedded)
        if count > 0 { quarry_asan_poison(UnsafeMutableRawPointer(bitPattern: address), count) }
        #endif
    }

    @inline(__always)
    static func unpoison(_ address: UInt, _ count: Int) {
        #if QUARRY_ASAN && !hasFeature(Embedded)
        if count > 0 { quarry_asan_unpoison(UnsafeMutableRawPointer(bitPattern: address), count) }
        #endif
    }
}

extension SlabCache {
    /// The object at `address` was just freed (it passed the double-free checks): poison it,
    /// all but its link word.
    @inline(__always)
    func poisonFreed(_ address: UInt) {
        #if QUARRY_ASAN && !hasFeature(Embedded)
        guard !state.pointee.typeStable, !state.pointee.isInternal, !state.pointee.options.poison else { return }
        let g = geometry
        let link = g.linkOffset
        AddressSanitizer.poison(address, link)
        AddressSanitizer.poison(
            address &+ UInt(link + MemoryLayout<UInt>.size),
            g.objectSize - link - MemoryLayout<UInt>.size)
        #endif
    }

    /// The object at `address` is being handed out: make all of it addressable.
    @inline(__always)
    func unpoisonHandedOut(_ address: UInt) {
        #if QUARRY_ASAN && !hasFeature(Embedded)
        AddressSanitizer.unpoison(address, geometry.objectSize)
        #endif
    }
}
