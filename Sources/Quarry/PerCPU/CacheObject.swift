// CacheObject: a `~Copyable` handle on one object a cache handed out. The type proves
// what `free` otherwise checks at run time, so its free goes straight to the hit path.
// Neighbours: SlabCache (`allocate`, and `freeHeld`, the part of free after the
// checks), SlabCache+PerCPU (freeSlow), CPUCache (the claim and the interrupt contract).
//
// What the type rules out, at compile time (Tests/QuarryCTests/CacheObjectCompileTests):
// - a double free and a use after free: `free()` is `consuming`, so the handle cannot be
//   used (or freed) again;
// - a free to another cache: the handle carries its cache, `free()` takes no cache, and
//   no `SlabCache.free` accepts a handle;
// - an interior or foreign pointer: a handle is made only by `allocateObject()` (its
//   initialiser is internal), always at an object's start.
// What it cannot rule out: a copy of `pointer` kept past `free()`, or the object's raw
// pointer handed to `SlabCache.free` as well (that free is checked: the raw free is
// refused if the handle's came first; the other order is the misuse a handle must avoid).
//
// Interrupt contract: as `allocate` and `free`. `free()` traps where a free would throw
// `.busy` (a nested call on a CPU that holds a Quarry lock: an NMI or a constructor);
// code that may run there calls `tryFree()`.

/// One object of a cache, owned by whoever holds this value: freed exactly once, to
/// its own cache, by `free()` or `tryFree()`. Dropping it without freeing leaks the
/// object (as losing a pointer would). Two words: the cache and the address.
public struct CacheObject<P: Platform>: ~Copyable {
    let state: UnsafeMutablePointer<CacheState>
    /// The object's first byte, valid until the handle is freed. Do not keep a copy
    /// past `free()`, and do not free it through `SlabCache.free`.
    public let pointer: UnsafeMutableRawPointer

    @inline(__always)
    init(state: UnsafeMutablePointer<CacheState>, pointer: UnsafeMutableRawPointer) {
        self.state = state
        self.pointer = pointer
    }

    /// The cache the object belongs to.
    public var cache: SlabCache<P> { SlabCache(state: state) }

    /// The object's usable bytes (the cache's object size).
    public var byteCount: Int { state.pointee.geometry.objectSize }

    /// Calls `body` with the object's bytes; the buffer must not escape `body`.
    @inline(__always)
    public func withUnsafeMutableBytes<R, E: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        try body(UnsafeMutableRawBufferPointer(start: pointer, count: byteCount))
    }

    /// Returns the object to its cache. No pointer validation and no double-free test
    /// (the type proves both); the debug options' work, then the hit path: claim the
    /// slot, write the cached mark, push, give the slot up; `freeSlow` otherwise.
    /// Traps in a nested call that cannot take the cache lock (see `tryFree`).
    @inline(__always)
    public consuming func free() {
        do throws(QuarryError) {
            try SlabCache<P>(state: state).freeHeld(UInt(bitPattern: pointer))
        } catch {
            preconditionFailure(
                "Quarry: CacheObject.free() in a nested call that cannot take the cache lock; use tryFree()")
        }
    }

    /// `free()` for code that may run nested inside Quarry on a CPU holding a Quarry
    /// lock (an NMI handler, a constructor): nil when freed, else the handle back
    /// (the free would have been `.busy`; the object stays the caller's, though the
    /// poison or zero-on-free options have already written its bytes).
    @inline(__always)
    public consuming func tryFree() -> CacheObject<P>? {
        let state = self.state
        let pointer = self.pointer
        do throws(QuarryError) {
            try SlabCache<P>(state: state).freeHeld(UInt(bitPattern: pointer))
            return nil
        } catch {
            return CacheObject(state: state, pointer: pointer)
        }
    }
}

extension SlabCache {
    /// `allocate()`, as a handle that only its `free()` can give back.
    @inline(__always)
    public func allocateObject() throws(QuarryError) -> CacheObject<P> {
        CacheObject(state: state, pointer: try allocate())
    }
}
