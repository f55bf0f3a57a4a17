// VirtualCPU: the host tests' model of a CPU: every thread is one, CPU 0 until it
// registers as another (`register(cpu:)`, `withCPU`, the threads of `runOnCPUs`), and
// masking interrupts is a per-thread nesting count, as IF on x86. A registered CPU takes
// interrupts from two sources: SIGALRM from a timer (VirtualCPU+Timer), and interrupts
// injected where interrupts come back on (`injectInterrupt(atWindow:_:)`, deterministic, or
// `injectInterrupts(period:seed:_:)`, at random); the single-step test's SIGTRAP handler
// plays a third on an unregistered thread, reading the same mask count (SingleStepTests).
// Neighbours: ThreadPlatform (Quarry's Platform over it); Tests/CTestPlatform (the
// per-thread words); VirtualCPU+Timer (the signal interrupts); TestThread (the threads).
//
// Threads that do not register all share CPU 0, which is right only for a heap each:
// threads that share a heap must register distinct CPUs.
//
// Masking model (defer, like the hardware's IF flag). The count lives in C thread-local
// storage (Tests/CTestPlatform), so a signal handler on the same thread reads it:
// `disableInterrupts` increments it and returns the old value, `restoreInterrupts` stores
// the saved value back. A signal that arrives while the count is above 0 only sets
// `pending`; the body runs when `restoreInterrupts` brings the count back to 0 (as a CPU
// takes a pending interrupt right after `popf`). A signal that arrives with the count at 0
// runs the body at once, with the count at 1 for its duration (an interrupt gate clears
// IF). So an interrupt body never runs inside a masked section: the fast path and every
// Quarry lock section are atomic with respect to it, exactly as on bare metal. (The nolock
// path, which masking cannot reach, is tested by the deterministic hook tests.)
//
// Injected interrupts. Each moment `restoreInterrupts` brings the count back to 0 on a
// registered CPU is a numbered **window**; a test arms one window (`injectInterrupt`: every
// window of a scenario in turn) or every `period`-th window at random, drawn from a seeded
// generator (stress). The handler runs on the same thread (the same CPU) with the count at
// 1, behind the interrupt gate, so it does not nest. Unlike a signal body it runs in thread
// context and may be any Swift closure.
//
// Signal-safety: the signal handler and the bodies use only Quarry, atomics and the C
// thread-local words, never the Swift runtime's allocator or a lock. Generic metadata
// they need is instantiated by the thread before the timer is armed (`warmUp`).

import CTestPlatform
import Quarry
import QuarryScenarios
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One registered virtual CPU, in C heap memory so the signal handler reaches it through
/// the thread's pointer (no class: a handler that interrupts an access to a class's
/// property would trip the exclusivity check).
struct VirtualCPU: ~Copyable {
    var index: Int
    /// This CPU's slot in `interruptTargets`.
    var targetSlot = -1
    /// The thread's signal mask before it became a CPU.
    var savedSignalMask = sigset_t()
    /// A signal arrived while masked.
    let pending = Atomic<Bool>(false)
    /// Signal interrupt bodies run (what `unregister` returns).
    let bodiesRun = Atomic<UInt>(0)
    /// What a signal interrupt does on this CPU (nil: nothing), with its context.
    var body: (@convention(c) (UnsafeMutableRawPointer?) -> Void)? = nil
    var context: UnsafeMutableRawPointer? = nil
    /// What an injected interrupt does (nil: no window is counted). Thread context only.
    var injected: (() -> Void)? = nil
    /// Fire at exactly this window (deterministic), or -1.
    var injectAt = -1
    /// Fire with probability 1/period at each window (0: never), drawn from `random`.
    var period: UInt64 = 0
    var random = SeededGenerator(seed: 1)
    /// Windows passed since the injected interrupt was armed.
    var windows = 0
    /// Injected interrupts taken since the CPU registered.
    var injectedTaken = 0

    init(index: Int) { self.index = index }
}

extension VirtualCPU {
    /// The calling thread's virtual CPU, nil while it is not registered (then it is CPU 0).
    @inline(__always)
    static var current: UnsafeMutablePointer<VirtualCPU>? {
        quarry_test_current_cpu()?.assumingMemoryBound(to: VirtualCPU.self)
    }

    /// The calling thread's CPU index: 0 while it is not registered.
    static var index: Int { current?.pointee.index ?? 0 }

    /// Masks interrupts on the calling thread's CPU (ThreadPlatform.disableInterrupts).
    static func disableInterrupts() -> InterruptState {
        // A sequentially consistent RMW: no memory access of the masked section moves
        // before it (nor after the matching restore), also for the signal handler.
        InterruptState(raw: UInt(quarry_test_mask_raise()))
    }

    /// Puts back what `disableInterrupts` returned; at 0, runs what is pending and opens a
    /// window (ThreadPlatform.restoreInterrupts).
    static func restoreInterrupts(_ state: InterruptState) {
        quarry_test_mask_restore(CUnsignedLong(state.raw))
        guard state.raw == 0, let v = current else { return }
        if v.pointee.pending.load(ordering: .sequentiallyConsistent) { runPendingInterrupts(v) }
        if v.pointee.injected != nil { windowOpened(v) }
    }

    // MARK: Virtual CPUs

    /// The calling thread's virtual CPU, which it must have registered.
    static func registered() -> UnsafeMutablePointer<VirtualCPU> {
        guard let v = current else { preconditionFailure("VirtualCPU: this thread is not a registered CPU") }
        return v
    }

    /// Makes the calling thread virtual CPU `index` until `unregister`.
    static func register(cpu index: Int) {
        precondition(index >= 0, "VirtualCPU: bad CPU index")
        precondition(current == nil, "VirtualCPU: thread registered twice")
        let v = UnsafeMutablePointer<VirtualCPU>.allocate(capacity: 1)
        v.initialize(to: VirtualCPU(index: index))
        quarry_test_set_current_cpu(v)
        // Threads inherit their creator's signal mask, and the test runner's threads
        // may block SIGALRM: a CPU must take its timer interrupts.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGALRM)
        pthread_sigmask(SIG_UNBLOCK, &unblock, &v.pointee.savedSignalMask)
        joinInterruptTargets(v)
    }

    /// Ends the calling thread's virtual CPU (it is CPU 0 again). Returns how many signal
    /// interrupt bodies ran on it.
    @discardableResult
    static func unregister() -> UInt {
        guard let v = current else { return 0 }
        // From here on the handler finds no CPU; one already running is on this very
        // thread, so it has returned before we get here.
        quarry_test_set_current_cpu(nil)
        leaveInterruptTargets(v)
        precondition(quarry_test_mask_depth() == 0, "VirtualCPU: CPU left with interrupts masked")
        pthread_sigmask(SIG_SETMASK, &v.pointee.savedSignalMask, nil)
        let n = v.pointee.bodiesRun.load(ordering: .relaxed)
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

    /// Lets one registered thread play several CPUs in turn (deterministic multi-CPU
    /// scenarios).
    static func become(cpu index: Int) {
        precondition(index >= 0, "VirtualCPU: bad CPU index")
        registered().pointee.index = index
    }

    // MARK: Signal interrupts

    /// Sets what a signal interrupt does on the calling CPU.
    static func setInterruptBody(
        _ body: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?,
        context: UnsafeMutableRawPointer?
    ) {
        let v = registered()
        let saved = disableInterrupts()
        v.pointee.body = body
        v.pointee.context = context
        restoreInterrupts(saved)
    }

    /// Runs interrupt bodies while one is pending; the mask count is 0 on entry.
    static func runPendingInterrupts(_ v: UnsafeMutablePointer<VirtualCPU>) {
        while v.pointee.pending.exchange(false, ordering: .sequentiallyConsistent) {
            quarry_test_mask_restore(1)
            if let body = v.pointee.body {
                body(v.pointee.context)
                v.pointee.bodiesRun.wrappingAdd(1, ordering: .relaxed)
            }
            quarry_test_mask_restore(0)
        }
    }

    // MARK: Injected interrupts

    /// Arms an injected interrupt on the calling CPU at window `window` (counted from now)
    /// and no other.
    static func injectInterrupt(atWindow window: Int, _ handler: @escaping () -> Void) {
        let v = registered()
        v.pointee.injected = handler
        v.pointee.injectAt = window
        v.pointee.period = 0
        v.pointee.windows = 0
    }

    /// Arms an injected interrupt on the calling CPU at each window with probability
    /// 1/`period`, drawn from a generator seeded with `seed`.
    static func injectInterrupts(period: UInt64, seed: UInt64, _ handler: @escaping () -> Void) {
        let v = registered()
        v.pointee.injected = handler
        v.pointee.injectAt = -1
        v.pointee.period = period
        v.pointee.random = SeededGenerator(seed: seed)
        v.pointee.windows = 0
    }

    /// Disarms the calling CPU's injected interrupt.
    static func stopInjecting() {
        let v = registered()
        v.pointee.injected = nil
        v.pointee.injectAt = -1
        v.pointee.period = 0
    }

    /// Injected interrupts the calling CPU took since it registered.
    static var injectedInterrupts: Int { registered().pointee.injectedTaken }

    /// A window: interrupts just came back on (the count is 0).
    static func windowOpened(_ v: UnsafeMutablePointer<VirtualCPU>) {
        guard let handler = v.pointee.injected else { return }
        let window = v.pointee.windows
        v.pointee.windows += 1
        let fire =
            window == v.pointee.injectAt
            || (v.pointee.period > 0 && v.pointee.random.next() % v.pointee.period == 0)
        guard fire else { return }
        quarry_test_mask_restore(1)
        v.pointee.injectedTaken += 1
        handler()
        quarry_test_mask_restore(0)
        if v.pointee.pending.load(ordering: .sequentiallyConsistent) { runPendingInterrupts(v) }
    }
}
