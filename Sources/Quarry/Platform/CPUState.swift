// CPUState: what one heap knows about one CPU across all caches: how many Quarry locks
// it holds, which decides whether a slow path may spin (see CPUCache's contract).
// Neighbours: HeapState (the per-CPU array in the heap header, and `acquire`/`release`,
// the only way Quarry takes its locks), SpinLock, SlabCache+PerCPU (reads the mode).

/// How a slow path takes locks. A struct, not an enum: a payload-free enum is
/// implicitly Hashable, and its witness table drags the stdlib's hasher (with
/// `arc4random_buf` and 64-bit shift helpers) into the Embedded image.
struct LockMode: Equatable {
    let raw: UInt8

    /// Spin until the lock is free: the CPU holds no Quarry lock, so nobody it waits
    /// for can be waiting for it.
    static let spin = LockMode(raw: 0)
    /// Only `tryAcquireMasked`: the CPU already holds a Quarry lock (the call re-entered
    /// Quarry from a constructor or a test hook). Spinning could wait for a
    /// lock this CPU holds, or close a cycle with another CPU against the lock order.
    static let tryOnly = LockMode(raw: 1)
}

/// One CPU's record in one heap, one cache line per CPU.
///
/// Concurrency: written only by its CPU, with interrupts masked (inside `acquire`
/// and `release`), and read only by its CPU: a plain word. An NMI handler that runs
/// between the load and the store of an update takes and gives back its own locks,
/// so it leaves the word as it found it.
///
/// Invariant: `locksHeld` is the number of Quarry locks of this heap the CPU holds
/// (0 at quiescence, checked by Quarry.checkInvariants).
struct CPUState {
    var locksHeld: UInt32 = 0
    /// The last flush request (`ReclaimState.requests`) this CPU honoured (Quarry+Reclaim).
    var flushSeen: UInt = 0

    static var stride: Int {
        (MemoryLayout<CPUState>.stride + Geometry.cacheLine - 1) & ~(Geometry.cacheLine - 1)
    }
}

extension HeapState {
    @inline(__always)
    func cpuState(_ cpu: Int) -> UnsafeMutablePointer<CPUState> {
        // Sound: the header reserved `maxCPUs` slots of `CPUState.stride` bytes at
        // `cpuStates`, and `cpu < maxCPUs` by the Platform contract.
        (UnsafeMutableRawPointer(cpuStates) + cpu &* CPUState.stride).assumingMemoryBound(to: CPUState.self)
    }

    /// The mode a slow path starting now on `cpu` must use. Interrupts masked.
    @inline(__always)
    func lockMode(cpu: Int) -> LockMode {
        cpuState(cpu).pointee.locksHeld == 0 ? .spin : .tryOnly
    }

    /// Takes `lock` the way `mode` allows; nil only in `.tryOnly` mode when it is held.
    /// Every Quarry lock is taken through here, so `locksHeld` is exact.
    ///
    /// The count covers the whole time the lock may be held: it goes up (interrupts
    /// masked) before the lock is taken and down after it is released, so an NMI that
    /// lands anywhere in between sees `locksHeld > 0` and only tries locks: it can
    /// never spin on a lock its own CPU holds.
    @inline(__always)
    func acquire<P: Platform>(_ lock: borrowing SpinLock, _: P.Type, _ mode: LockMode) -> InterruptState? {
        let saved = P.disableInterrupts()
        let cpu = cpuState(P.cpuIndex)
        cpu.pointee.locksHeld += 1
        if mode == .spin {
            assert(!lock.isHeldByCurrentCPU(P.self), "Quarry: a CPU waits for a lock it holds")
            lock.acquireMasked(P.self)
        } else if !lock.tryAcquireMasked(P.self) {
            cpu.pointee.locksHeld -= 1
            P.restoreInterrupts(saved)
            return nil
        }
        return saved
    }

    /// Takes `lock` the way this CPU's lock count calls for: spinning if it holds no
    /// Quarry lock, else only trying (nil when the lock is held). For the operations
    /// that take a single lock from any context (spans, the malloc front's slot creation).
    @inline(__always)
    func acquire<P: Platform>(_ lock: borrowing SpinLock, _: P.Type) -> InterruptState? {
        let saved = P.disableInterrupts()
        let mode = lockMode(cpu: P.cpuIndex)
        // The state `acquire` saves is "masked"; releasing with `saved` restores the
        // caller's state directly.
        guard acquire(lock, P.self, mode) != nil else {
            P.restoreInterrupts(saved)
            return nil
        }
        return saved
    }

    /// Takes `lock` for an operation that is not interrupt-safe (create, destroy, drain,
    /// statistics, checks): traps instead of hanging when called re-entrantly.
    @inline(__always)
    func acquireBlocking<P: Platform>(_ lock: borrowing SpinLock, _: P.Type) -> InterruptState {
        guard let saved = acquire(lock, P.self, .spin) else { preconditionFailure("unreachable") }
        return saved
    }

    @inline(__always)
    func release<P: Platform>(_ lock: borrowing SpinLock, _: P.Type, _ saved: InterruptState) {
        lock.releaseMasked(P.self)
        cpuState(P.cpuIndex).pointee.locksHeld -= 1
        P.restoreInterrupts(saved)
    }

    /// Traps when the calling CPU holds a Quarry lock: the operation calling this is not
    /// interrupt-safe (it would take locks by spinning).
    func requireNotReentrant<P: Platform>(_: P.Type) {
        let saved = P.disableInterrupts()
        let held = cpuState(P.cpuIndex).pointee.locksHeld
        P.restoreInterrupts(saved)
        precondition(held == 0, "Quarry: an operation that is not interrupt-safe was called re-entrantly")
    }
}
