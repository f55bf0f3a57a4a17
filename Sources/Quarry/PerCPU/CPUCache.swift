// CPUCache: one CPU's slot in one cache: its loaded and previous magazines, a small
// reserve for re-entrant frees, and its event counters.
// Neighbours: Magazine (what it holds), CacheState (the per-CPU array follows the cache's
// state), SlabCache (the fast path) and SlabCache+PerCPU (the slow path), Depot.
//
// ## Concurrency and interrupt contract of the per-CPU layer
//
// Who touches a CPUCache:
// - its own CPU, with the slot *claimed* (the in-use marker below), for `loaded`,
//   `previous`, `reserve*` and the counters: the hit paths claim it without masking
//   interrupts; the slow path masks them and keeps the slot claimed throughout;
// - `drainAll` and `destroy` from any CPU, only at quiescence for that cache (no CPU is
//   inside the cache; the caller establishes happens-before, e.g. by joining threads or
//   by the IPI that parked the other CPUs);
// - `statistics` from any CPU, reading only the counters, which are `Atomic` words with a
//   single writer (their CPU): updated by a relaxed load and a relaxed store, no RMW.
// So no word of a CPUCache is ever read by one CPU while another CPU writes it
// non-atomically.
//
// ## The in-use marker and the nested path
//
// A slot's marker word is 1 while code of its CPU works on the slot. A call that finds
// it set (an interrupt handler or NMI that landed inside a hit or slow path of the same
// CPU, a constructor, a test hook) takes the *nested path*: straight to or from the
// slabs under the cache lock, never through the slot. Interrupts nest, so the handler
// finishes before the interrupted code resumes: testing then setting the marker needs
// no atomic RMW, and the fences around it only keep the compiler from moving the slot's
// accesses outside the claimed region (no instruction on x86). Locks in the nested path
// follow the *nolock* rule: if the CPU holds any Quarry lock (`CPUState.locksHeld > 0`,
// exact even for an NMI), locks are only tried, and a call that cannot be served fails
// cleanly: allocate with `.outOfMemory`, free with `.busy` (the object stays the
// caller's). A non-nested slow path in `.tryOnly` mode (its CPU holds another cache's
// lock) may still use the slot and park a freed object in `reserve`.
//
// ## Magazine states of one CPU (Bonwick 2001, section 3)
//
//     state            | loaded           | previous        | allocate                | free
//     -----------------+------------------+-----------------+-------------------------+------------------------
//     detached         | sentinel         | sentinel        | slow: attach 2 empties  | slow: attach 2 empties
//     loaded has some  | 0 < count < cap  | any             | fast: pop               | fast: push
//     loaded empty     | 0                | > 0             | slow: swap, pop         | fast: push
//     loaded full      | cap              | < cap           | fast: pop               | slow: swap, push
//     both empty       | 0                | 0               | slow: depot full for    | fast: push
//                      |                  |                 | previous, or refill     |
//                      |                  |                 | loaded from slabs       |
//     both full        | cap              | cap             | fast: pop               | slow: previous to depot
//                      |                  |                 |                         | full, empty from depot
//
// Lock order (whole heap): registry -> depot -> cache -> page. Never two depot or two
// cache locks at once, except a cache's depot lock then the magazine cache's cache lock.

import Synchronization

extension UnsafeMutablePointer where Pointee == CPUCache {
    /// The counters in the same slot.
    @inline(__always)
    var counters: UnsafeMutablePointer<CPUCounters> {
        // Sound: a CPUCache is always the start of a slot, and its CPUCounters sit at
        // `countersOffset` (CacheState.initialize).
        (UnsafeMutableRawPointer(self) + CPUCache.countersOffset).assumingMemoryBound(to: CPUCounters.self)
    }

    /// The slot's *in use* marker (see "The in-use marker" above).
    @inline(__always)
    var marker: UnsafeMutablePointer<Atomic<UInt>> {
        // Sound: the marker word sits at `markerOffset` in every slot, zeroed by
        // CacheState.initialize, and is only ever accessed as an atomic.
        (UnsafeMutableRawPointer(self) + CPUCache.markerOffset).assumingMemoryBound(to: Atomic<UInt>.self)
    }

    /// Claims the slot for the calling code: false if it is already claimed (the
    /// caller interrupted, or was re-entered from, code of its own CPU that holds it).
    /// Two plain `mov`s and a branch; the fence only stops the compiler from moving
    /// the slot's accesses above the claim (it emits no instruction on x86).
    @inline(__always)
    func claim() -> Bool {
        guard marker.pointee.load(ordering: .relaxed) == 0 else { return false }
        marker.pointee.store(1, ordering: .relaxed)
        atomicMemoryFence(ordering: .acquiringAndReleasing)
        return true
    }

    /// Gives the slot up (one plain `mov`); the fence keeps the slot's accesses above it.
    @inline(__always)
    func unclaim() {
        atomicMemoryFence(ordering: .acquiringAndReleasing)
        marker.pointee.store(0, ordering: .relaxed)
    }
}

/// A counter with one writer (its CPU, interrupts masked) and any number of readers:
/// a relaxed load and a relaxed store (`mov`, `inc`, `mov`), never a locked RMW.
struct CPUCounter: ~Copyable {
    private let word = Atomic<UInt>(0)

    init() {}

    @inline(__always)
    func bump() {
        word.store(word.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }

    /// Adds `n` at once (a bulk call's objects), with the same load and store.
    @inline(__always)
    func add(_ n: Int) {
        word.store(word.load(ordering: .relaxed) &+ UInt(bitPattern: n), ordering: .relaxed)
    }

    var value: UInt { word.load(ordering: .relaxed) }
}

/// One CPU's counters in one cache: written by that CPU only (relaxed load and store),
/// read by anyone (statistics). Next to its CPUCache in the slot, but a separate
/// record, so reading them is never an access to the magazines.
struct CPUCounters: ~Copyable {
    /// Allocations served by the fast path.
    let allocHits = CPUCounter()
    /// Allocations served by the slow path.
    let allocMisses = CPUCounter()
    let freeHits = CPUCounter()
    let freeMisses = CPUCounter()
    /// Magazines exchanged with the depot.
    let exchanges = CPUCounter()

    init() {}
}

/// One CPU's magazines in one cache. Lives in the per-CPU array after the cache's
/// state (allocator-owned memory): slot i is `CPUCache` then `CPUCounters`, whole cache
/// lines per CPU so that CPUs never share a line.
///
/// Invariants (checked by SlabCache.checkInvariants at quiescence):
/// - `loaded` and `previous` are distinct magazines of capacity `magazineCapacity`, or
///   both the sentinel (detached, and always for a cache without magazines)
/// - `0 <= reserveCount <= Geometry.cpuReserve`; reserve objects are free objects of
///   the cache, bit set and cached mark written, counted in their slab's `inUse`
struct CPUCache {
    var loaded: Magazine
    var previous: Magazine
    var reserveCount = 0
    var reserve = InlineArray<4, UInt>(repeating: 0)

    init(sentinel: Magazine) {
        loaded = sentinel
        previous = sentinel
    }

    /// Offset of the slot's in-use marker word.
    static var markerOffset: Int {
        (MemoryLayout<CPUCache>.stride + MemoryLayout<UInt>.alignment - 1) & ~(MemoryLayout<UInt>.alignment - 1)
    }

    /// Offset of the slot's CPUCounters.
    static var countersOffset: Int { markerOffset + MemoryLayout<UInt>.stride }

    /// Bytes between consecutive CPUs' slots: whole cache lines.
    static var slotStride: Int {
        (countersOffset + MemoryLayout<CPUCounters>.stride + Geometry.cacheLine - 1) & ~(Geometry.cacheLine - 1)
    }

    /// Objects this slot holds (magazines and reserve).
    var objectCount: Int { loaded.count + previous.count + reserveCount }

    // MARK: Per-CPU steps (its CPU, interrupts masked; no nested call can run inside one)

    /// Pops from `loaded`, or swaps in a non-empty `previous` first; nil if both are empty.
    @inline(__always)
    mutating func popEitherMagazine() -> UInt? {
        if loaded.count > 0 { return loaded.pop() }
        if previous.count > 0 {
            let m = previous
            previous = loaded
            loaded = m
            return m.pop()
        }
        return nil
    }

    /// Pushes onto `loaded`, or swaps in a `previous` with room first; false if both are full.
    @inline(__always)
    mutating func pushEitherMagazine(_ object: UInt) -> Bool {
        if loaded.count < loaded.capacity {
            loaded.push(object)
            return true
        }
        if previous.count < previous.capacity {
            let m = previous
            previous = loaded
            loaded = m
            m.push(object)
            return true
        }
        return false
    }

    var hasRoom: Bool { loaded.count < loaded.capacity || previous.count < previous.capacity }
    var hasObjects: Bool { loaded.count > 0 || previous.count > 0 }

    mutating func takeReserve() -> UInt? {
        guard reserveCount > 0 else { return nil }
        reserveCount -= 1
        return reserve[reserveCount]
    }

    /// Parks a freed object in the reserve; false when it is full.
    mutating func park(_ object: UInt) -> Bool {
        guard reserveCount < Geometry.cpuReserve else { return false }
        reserve[reserveCount] = object
        reserveCount += 1
        return true
    }
}
