// VirtualCPU+Timer: the signal interrupts of the virtual CPUs. SIGALRM signals from
// `setitimer(ITIMER_REAL)` are the host's timer interrupts; their handler runs the
// interrupted CPU's interrupt body (`setInterruptBody`), or defers it while the CPU masks.
// The kernel sends the process's SIGALRM to whichever thread it likes (usually the main
// thread); the handler on a thread that is not a registered CPU forwards it, round robin,
// to a registered one with `pthread_kill` (so every CPU is interrupted, like a per-CPU
// timer).
// Neighbours: VirtualCPU (the CPUs and the masking model), TestThread
// (`runOnCPUsWithTimer`), ConcurrencyTests, BulkTests and ReclaimStressTests (the users).

import CTestPlatform
import Quarry
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The threads of every registered virtual CPU (all tests), 0 in a free slot: where
/// the handler forwards a timer signal that landed on another thread.
nonisolated(unsafe) let interruptTargets: UnsafeMutablePointer<Atomic<UInt>> = {
    let table = UnsafeMutablePointer<Atomic<UInt>>.allocate(capacity: interruptTargetSlots)
    for i in 0..<interruptTargetSlots { (table + i).initialize(to: Atomic<UInt>(0)) }
    return table
}()
let interruptTargetSlots = 64
let forwardCursor = Atomic<UInt>(0)
/// Handlers that read `interruptTargets` and may still `pthread_kill` what they read.
let forwardsInFlight = Atomic<Int>(0)

extension VirtualCPU {
    /// Puts a new CPU's thread into `interruptTargets`.
    static func joinInterruptTargets(_ v: UnsafeMutablePointer<VirtualCPU>) {
        let me = UInt(pthread_self())
        for slot in 0..<interruptTargetSlots
        where interruptTargets[slot].compareExchange(expected: 0, desired: me, ordering: .acquiringAndReleasing)
            .exchanged
        {
            v.pointee.targetSlot = slot
            break
        }
    }

    /// Takes a leaving CPU's thread out of `interruptTargets`; returns once no forwarder
    /// may still hold its id (the thread may exit then).
    static func leaveInterruptTargets(_ v: UnsafeMutablePointer<VirtualCPU>) {
        guard v.pointee.targetSlot >= 0 else { return }
        interruptTargets[v.pointee.targetSlot].store(0, ordering: .sequentiallyConsistent)
        while forwardsInFlight.load(ordering: .sequentiallyConsistent) != 0 { sched_yield() }
    }

    /// Installs the SIGALRM handler and arms `ITIMER_REAL` to fire every `microseconds`.
    static func startTimer(microseconds: Int) {
        _ = interruptTargets
        var action = sigaction()
        action.__sigaction_handler.sa_handler = onInterruptSignal
        action.sa_flags = SA_RESTART
        sigemptyset(&action.sa_mask)
        precondition(sigaction(SIGALRM, &action, nil) == 0, "sigaction")
        var timer = itimerval()
        timer.it_interval.tv_sec = 0
        timer.it_interval.tv_usec = microseconds
        timer.it_value = timer.it_interval
        precondition(setitimer(__itimer_which_t(ITIMER_REAL.rawValue), &timer, nil) == 0, "setitimer")
    }

    /// Disarms the timer; the handler stays installed (a late signal finds no body).
    static func stopTimer() {
        var timer = itimerval()
        precondition(setitimer(__itimer_which_t(ITIMER_REAL.rawValue), &timer, nil) == 0, "setitimer")
    }
}

/// The SIGALRM handler: the host's interrupt entry. Like a hardware interrupt it must
/// leave the interrupted code's state as it found it, errno included.
func onInterruptSignal(_ signal: Int32) {
    let savedErrno = errno
    defer { errno = savedErrno }
    guard let v = VirtualCPU.current else {
        forwardsInFlight.wrappingAdd(1, ordering: .sequentiallyConsistent)
        for _ in 0..<interruptTargetSlots {
            let slot = Int(forwardCursor.wrappingAdd(1, ordering: .relaxed).oldValue % UInt(interruptTargetSlots))
            let target = interruptTargets[slot].load(ordering: .sequentiallyConsistent)
            if target != 0 {
                _ = pthread_kill(pthread_t(target), SIGALRM)
                break
            }
        }
        forwardsInFlight.wrappingAdd(-1, ordering: .sequentiallyConsistent)
        return
    }
    v.pointee.pending.store(true, ordering: .sequentiallyConsistent)
    if quarry_test_mask_depth() == 0 { VirtualCPU.runPendingInterrupts(v) }
}
