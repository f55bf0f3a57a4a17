// SpinLock: the interrupt-saving ticket lock that guards every slow path, and SpinLocked,
// a lock that owns the state it guards.
// Neighbours: Platform (interrupt save/restore, pause), CPUState (`HeapState.acquire`, the
// NMI-safe way every lock is taken), HeapState, CacheState and FrontState (the locks
// and the state each owns).

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
/// only. Lock order across Quarry: front -> registry -> depot -> cache -> page (HeapState).
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
}

/// What a lock's state does as a lock scope ends, just before the lock is given up:
/// publishes the words that lock-free readers read (whoever owns a lock publishes
/// them; the page allocator publishes `HeapState.bumpLimit`). Nothing by default.
protocol LockedState {
    /// Called under the lock at the end of every `SpinLocked` scope.
    func lockScopeEnds(_ heap: UnsafeMutablePointer<HeapState>)
}

extension LockedState {
    @inline(__always)
    func lockScopeEnds(_ heap: UnsafeMutablePointer<HeapState>) {}
}

/// A lock and the state it guards, opened only by `withLock` / `tryWithLock`: the
/// state is reachable only inside a lock scope, so "held" is a fact of the types,
/// not of a `…Locked` name. The state itself lives in its own record of allocator-owned
/// memory (the heap header, a cache's state), so that no Swift access to it overlaps
/// an access to its neighbours; this type holds the only pointer to it.
///
/// Every scope takes the lock through `HeapState.acquire` (CPUState.swift): interrupts
/// masked, the CPU's `locksHeld` raised before the lock is taken and lowered after it
/// is given up (the NMI-safety protocol), the saved interrupt state restored last.
/// The state's `lockScopeEnds` runs under the lock, just before the release.
struct SpinLocked<Value: LockedState>: ~Copyable {
    let lock = SpinLock()
    private let value: UnsafeMutablePointer<Value>
    /// The heap whose per-CPU records count the locks each CPU holds.
    private let heap: UnsafeMutablePointer<HeapState>

    init(_ value: UnsafeMutablePointer<Value>, heap: UnsafeMutablePointer<HeapState>) {
        self.value = value
        self.heap = heap
    }

    /// True when the executing CPU holds the lock (meaningful with interrupts off).
    @inline(__always)
    func isHeldByCurrentCPU<P: Platform>(_: P.Type) -> Bool { lock.isHeldByCurrentCPU(P.self) }

    /// Runs `body` on the state under the lock, spinning for it: for operations that
    /// are not interrupt-safe (create, destroy, drain, statistics, checks) and slow
    /// paths that hold no Quarry lock. Traps (checked builds) instead of hanging when
    /// this CPU holds the lock already.
    @inline(__always)
    func withLock<P: Platform, R>(_: P.Type, _ body: (inout Value) -> R) -> R {
        scope(P.self, heap.pointee.acquireBlocking(lock, P.self), body)
    }

    /// Runs `body` under the lock taken the way `mode` allows; nil (body not run) only
    /// in `.tryOnly` mode when the lock is held.
    @inline(__always)
    func tryWithLock<P: Platform, R>(_: P.Type, _ mode: LockMode, _ body: (inout Value) -> R) -> R? {
        guard let saved = heap.pointee.acquire(lock, P.self, mode) else { return nil }
        return scope(P.self, saved, body)
    }

    /// Runs `body` under the lock taken the way this CPU's lock count calls for:
    /// spinning if it holds no Quarry lock, else only trying (nil, body not run, when
    /// the lock is held). For operations that take this lock alone from any context.
    @inline(__always)
    func tryWithLock<P: Platform, R>(_: P.Type, _ body: (inout Value) -> R) -> R? {
        guard let saved = heap.pointee.acquire(lock, P.self) else { return nil }
        return scope(P.self, saved, body)
    }

    /// The scope itself, the lock held (`saved`: the interrupt state before it was taken):
    /// `body` on the state, `lockScopeEnds`, the release.
    @inline(__always)
    private func scope<P: Platform, R>(_: P.Type, _ saved: InterruptState, _ body: (inout Value) -> R) -> R {
        let result = body(&value.pointee)
        value.pointee.lockScopeEnds(heap)
        heap.pointee.release(lock, P.self, saved)
        return result
    }
}
