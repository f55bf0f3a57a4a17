// ThreadPlatform: the host's SMP-with-interrupts analog. Each test thread registers as a
// virtual CPU; "interrupts" are SIGALRM signals from `setitimer(ITIMER_REAL)` whose
// handler runs an interrupt body that allocates and frees on the interrupted thread's CPU.
// The kernel sends the process's SIGALRM to whichever thread it likes (usually the main
// thread); the handler on a thread that is not a virtual CPU forwards it, round robin, to
// a registered one with `pthread_kill` (so every CPU is interrupted, like a per-CPU timer).
// Neighbours: Quarry's Platform protocol; ConcurrencyTests (stress, signals),
// ThreadTestSupport (the threads).
//
// Masking model (chosen: defer, like the hardware's IF flag). Each virtual CPU has a
// nesting count `mask`: `disableInterrupts` increments it and returns the old value,
// `restoreInterrupts` stores the saved value back. A signal that arrives while
// `mask > 0` only sets `pending`; the body runs when `restoreInterrupts` brings the count
// back to 0 (as a CPU takes a pending interrupt right after `popf`). A signal that
// arrives with `mask == 0` runs the body at once, with `mask = 1` for its duration (an
// interrupt gate clears IF). So an interrupt body never runs inside a masked section:
// the fast path and every Quarry lock section are atomic with respect to it, exactly
// as on bare metal. (The nolock path, which masking cannot reach, is tested by the
// deterministic hook tests.)
//
// Signal-safety: the handler and the body use only Quarry, atomics and
// `pthread_getspecific` (a plain load of the thread descriptor on glibc), never the
// Swift runtime's allocator or a lock. Generic metadata they need is instantiated by
// the thread before the timer is armed (`warmUp`).

import Quarry
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One virtual CPU, in C heap memory so the signal handler can reach it through a
/// thread-specific pointer.
struct ThreadCPU: ~Copyable {
    let index: Int
    /// This CPU's slot in `interruptTargets`.
    var targetSlot = -1
    /// The thread's signal mask before it became a CPU.
    var savedSignalMask = sigset_t()
    /// Interrupt-disable nesting count (0: interrupts enabled).
    let mask = Atomic<UInt>(0)
    /// A signal arrived while masked.
    let pending = Atomic<Bool>(false)
    let signals = Atomic<UInt>(0)
    let deferred = Atomic<UInt>(0)
    let bodiesRun = Atomic<UInt>(0)
    /// What an interrupt does on this CPU (nil: nothing), with its context.
    var body: (@convention(c) (UnsafeMutableRawPointer?) -> Void)? = nil
    var context: UnsafeMutableRawPointer? = nil

    init(index: Int) { self.index = index }
}

/// Set once, before any thread registers; read by the signal handler.
nonisolated(unsafe) var virtualCPUKey = pthread_key_t()
/// Signals that hit a thread that is not a virtual CPU (then forwarded to one).
let straySignals = Atomic<UInt>(0)

/// The threads of every registered virtual CPU (all tests), 0 in a free slot: where
/// the handler forwards a timer signal that landed on another thread.
nonisolated(unsafe) let interruptTargets: UnsafeMutablePointer<Atomic<UInt>> = {
    let table = UnsafeMutablePointer<Atomic<UInt>>.allocate(capacity: interruptTargetSlots)
    for i in 0..<interruptTargetSlots { (table + i).initialize(to: Atomic<UInt>(0)) }
    return table
}()
let interruptTargetSlots = 64
let forwardCursor = Atomic<UInt>(0)
let forwarded = Atomic<UInt>(0)
/// Handlers that read `interruptTargets` and may still `pthread_kill` what they read.
let forwardsInFlight = Atomic<Int>(0)

enum ThreadPlatform: Platform {
    static var maxCPUs: Int { 16 }

    static let keyCreated: Bool = {
        precondition(pthread_key_create(&virtualCPUKey, nil) == 0, "pthread_key_create")
        return true
    }()

    @inline(__always)
    static var current: UnsafeMutablePointer<ThreadCPU>? {
        pthread_getspecific(virtualCPUKey)?.assumingMemoryBound(to: ThreadCPU.self)
    }

    static var cpuIndex: Int {
        guard let v = current else { preconditionFailure("ThreadPlatform: this thread is not a virtual CPU") }
        return v.pointee.index
    }

    static func disableInterrupts() -> InterruptState {
        guard let v = current else { preconditionFailure("ThreadPlatform: this thread is not a virtual CPU") }
        // An RMW with acquire-release ordering: no memory access of the masked section
        // moves before it (nor after the matching restore), also for the signal handler.
        return InterruptState(raw: v.pointee.mask.wrappingAdd(1, ordering: .acquiringAndReleasing).oldValue)
    }

    static func restoreInterrupts(_ state: InterruptState) {
        guard let v = current else { preconditionFailure("ThreadPlatform: this thread is not a virtual CPU") }
        v.pointee.mask.store(state.raw, ordering: .sequentiallyConsistent)
        if state.raw == 0 && v.pointee.pending.load(ordering: .sequentiallyConsistent) {
            runPendingInterrupts(v)
        }
    }

    static func pause() { sched_yield() }

    static func write(_ byte: UInt8) {
        var b = byte
        _ = Glibc.write(2, &b, 1)
    }

    static func entropy() -> UInt { UInt.random(in: 1...UInt.max) }

    // MARK: Virtual CPUs

    /// Makes the calling thread virtual CPU `index` until `unregister`.
    static func register(cpu index: Int) {
        precondition(keyCreated && index >= 0 && index < maxCPUs, "ThreadPlatform: bad CPU index")
        precondition(current == nil, "ThreadPlatform: thread registered twice")
        let v = UnsafeMutablePointer<ThreadCPU>.allocate(capacity: 1)
        v.initialize(to: ThreadCPU(index: index))
        precondition(pthread_setspecific(virtualCPUKey, v) == 0, "pthread_setspecific")
        // Threads inherit their creator's signal mask, and the test runner's threads
        // may block SIGALRM: a CPU must take its timer interrupts.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGALRM)
        pthread_sigmask(SIG_UNBLOCK, &unblock, &v.pointee.savedSignalMask)
        let me = UInt(pthread_self())
        for slot in 0..<interruptTargetSlots
        where interruptTargets[slot].compareExchange(expected: 0, desired: me, ordering: .acquiringAndReleasing)
            .exchanged
        {
            v.pointee.targetSlot = slot
            break
        }
    }

    /// Signals, deferred signals and interrupt bodies run, summed over every CPU that unregistered.
    static let totalSignals = Atomic<UInt>(0)
    static let totalDeferred = Atomic<UInt>(0)

    /// Ends the calling thread's virtual CPU. Returns how many interrupt bodies ran on it.
    @discardableResult
    static func unregister() -> UInt {
        guard let v = current else { return 0 }
        // From here on the handler finds no CPU; one already running is on this very
        // thread, so it has returned before we get here.
        pthread_setspecific(virtualCPUKey, nil)
        if v.pointee.targetSlot >= 0 {
            // No forwarder may still hold this thread's id once it can exit.
            interruptTargets[v.pointee.targetSlot].store(0, ordering: .sequentiallyConsistent)
            while forwardsInFlight.load(ordering: .sequentiallyConsistent) != 0 { sched_yield() }
        }
        precondition(v.pointee.mask.load(ordering: .relaxed) == 0, "ThreadPlatform: CPU left with interrupts masked")
        pthread_sigmask(SIG_SETMASK, &v.pointee.savedSignalMask, nil)
        let n = v.pointee.bodiesRun.load(ordering: .relaxed)
        totalSignals.wrappingAdd(v.pointee.signals.load(ordering: .relaxed), ordering: .relaxed)
        totalDeferred.wrappingAdd(v.pointee.deferred.load(ordering: .relaxed), ordering: .relaxed)
        v.deinitialize(count: 1)
        v.deallocate()
        return n
    }

    /// Runs `body` on the calling thread as virtual CPU `index`.
    static func withCPU<R>(_ index: Int, _ body: () throws -> R) rethrows -> R {
        register(cpu: index)
        defer { unregister() }
        return try body()
    }

    /// Sets what an interrupt does on the calling CPU.
    static func setInterruptBody(
        _ body: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?,
        context: UnsafeMutableRawPointer?
    ) {
        guard let v = current else { preconditionFailure("ThreadPlatform: this thread is not a virtual CPU") }
        let saved = disableInterrupts()
        v.pointee.body = body
        v.pointee.context = context
        restoreInterrupts(saved)
    }

    /// Runs interrupt bodies while one is pending; `mask` is 0 on entry.
    static func runPendingInterrupts(_ v: UnsafeMutablePointer<ThreadCPU>) {
        while v.pointee.pending.exchange(false, ordering: .sequentiallyConsistent) {
            v.pointee.mask.store(1, ordering: .sequentiallyConsistent)
            if let body = v.pointee.body {
                body(v.pointee.context)
                v.pointee.bodiesRun.wrappingAdd(1, ordering: .relaxed)
            }
            v.pointee.mask.store(0, ordering: .sequentiallyConsistent)
        }
    }

    // MARK: The timer

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
    guard let v = ThreadPlatform.current else {
        straySignals.wrappingAdd(1, ordering: .relaxed)

        forwardsInFlight.wrappingAdd(1, ordering: .sequentiallyConsistent)
        for _ in 0..<interruptTargetSlots {
            let slot = Int(forwardCursor.wrappingAdd(1, ordering: .relaxed).oldValue % UInt(interruptTargetSlots))
            let target = interruptTargets[slot].load(ordering: .sequentiallyConsistent)
            if target != 0 {
                if pthread_kill(pthread_t(target), SIGALRM) == 0 { forwarded.wrappingAdd(1, ordering: .relaxed) }
                break
            }
        }
        forwardsInFlight.wrappingAdd(-1, ordering: .sequentiallyConsistent)
        return
    }
    v.pointee.signals.wrappingAdd(1, ordering: .relaxed)
    v.pointee.pending.store(true, ordering: .sequentiallyConsistent)
    if v.pointee.mask.load(ordering: .sequentiallyConsistent) == 0 {
        ThreadPlatform.runPendingInterrupts(v)
    } else {
        v.pointee.deferred.wrappingAdd(1, ordering: .relaxed)
    }
}
