// SpinLock: the interrupt-saving ticket lock that guards every slow path.
// Neighbours: Platform (interrupt save/restore, pause), PageAllocator and SlabCache (its users).

import Synchronization

/// A FIFO ticket spinlock, held with interrupts disabled on the acquiring CPU: its
/// only user, `HeapState.acquire`/`release` (CPUState.swift), masks them first and
/// restores exactly the saved state after the release.
///
/// Invariants: `serving <= next` (mod 2^32); the lock is free iff `serving == next`;
/// `owner == noOwner` iff the lock is free.
///
/// Interrupt contract: a handler must not `acquire` a lock that its own CPU holds
/// (it would spin forever). `tryAcquireMasked` never spins. Quarry takes its locks only
/// through `HeapState.acquire` (CPUState.swift), which counts the locks each CPU holds
/// and, for a call that re-entered Quarry while its CPU holds one, uses `tryAcquireMasked`
/// only. Lock order across Quarry: registry -> depot -> cache -> page (HeapState).
struct SpinLock: ~Copyable {
    private let next = Atomic<UInt32>(0)
    private let serving = Atomic<UInt32>(0)
    /// CPU index of the holder, or `noOwner`. Written only by the holder.
    private let owner = Atomic<UInt32>(SpinLock.noOwner)
    static let noOwner = UInt32.max

    init() {}

    /// Waits for this CPU's ticket. The caller has masked interrupts (`HeapState.acquire`).
    @inline(__always)
    func acquireMasked<P: Platform>(_: P.Type) {
        let ticket = next.wrappingAdd(1, ordering: .relaxed).oldValue
        while serving.load(ordering: .acquiring) != ticket { P.pause() }
        owner.store(UInt32(truncatingIfNeeded: P.cpuIndex), ordering: .relaxed)
    }

    /// Takes the lock only if it is free right now; never spins. Interrupts masked.
    @inline(__always)
    func tryAcquireMasked<P: Platform>(_: P.Type) -> Bool {
        let current = serving.load(ordering: .relaxed)
        let (exchanged, _) = next.compareExchange(
            expected: current, desired: current &+ 1, ordering: .acquiring)
        guard exchanged else { return false }
        owner.store(UInt32(truncatingIfNeeded: P.cpuIndex), ordering: .relaxed)
        return true
    }

    /// Gives the lock up; the caller restores interrupts afterwards.
    @inline(__always)
    func releaseMasked<P: Platform>(_: P.Type) {
        owner.store(SpinLock.noOwner, ordering: .relaxed)
        serving.wrappingAdd(1, ordering: .releasing)
    }

    /// True when the executing CPU holds the lock (meaningful with interrupts off).
    @inline(__always)
    func isHeldByCurrentCPU<P: Platform>(_: P.Type) -> Bool {
        owner.load(ordering: .relaxed) == UInt32(truncatingIfNeeded: P.cpuIndex)
    }

    /// True when nobody holds the lock (for invariant checks at quiescence).
    var isFree: Bool {
        serving.load(ordering: .acquiring) == next.load(ordering: .acquiring)
    }
}
