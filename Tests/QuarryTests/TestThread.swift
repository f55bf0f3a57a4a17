// TestThread: the host tests' one thread runner: a pthread that runs a closure as a
// registered VirtualCPU (or as no CPU: the timer's controller), joined explicitly;
// `runOnCPUs` and `runOnCPUsWithTimer` run a body on several CPUs at once, and `Shared`
// carries a handle on concurrent state into them.
// Neighbours: VirtualCPU (the CPUs), VirtualCPU+Timer (the timer), SpinBarrier,
// Handoff; ConcurrencyTests, LockFreeStackTests, MultiCPUStressHarness and the other
// threaded suites (the users).

import Quarry

#if canImport(Glibc)
import Glibc
#endif

/// A plain pthread running `body`, as virtual CPU `cpu` when that is not nil.
final class TestThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let cpu: Int?
    private let body: @Sendable () -> Void
    /// Signal interrupt bodies run on the thread's CPU (written before the thread ends).
    private var interrupts: UInt = 0

    init(cpu: Int?, _ body: @escaping @Sendable () -> Void) {
        self.cpu = cpu
        self.body = body
        // Unretained: the creator holds the thread until `join`.
        let rc = pthread_create(
            &thread, nil,
            { raw in
                let me = Unmanaged<TestThread>.fromOpaque(raw!).takeUnretainedValue()
                if let cpu = me.cpu { VirtualCPU.register(cpu: cpu) }
                me.body()
                if me.cpu != nil { me.interrupts = VirtualCPU.unregister() }
                return nil
            }, Unmanaged.passUnretained(self).toOpaque())
        precondition(rc == 0, "pthread_create")
    }

    /// Waits for the thread; returns the number of interrupt bodies its CPU ran.
    @discardableResult
    func join() -> UInt {
        pthread_join(thread, nil)
        return interrupts
    }
}

/// Runs `body(cpu)` on `count` new threads, thread i registered as virtual CPU i,
/// and joins them. Returns the number of interrupt bodies each CPU ran.
@discardableResult
func runOnCPUs(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) -> [UInt] {
    precondition(count <= ThreadPlatform<16>.maxCPUs, "runOnCPUs: more threads than virtual CPUs")
    let threads = (0..<count).map { cpu in TestThread(cpu: cpu) { body(cpu) } }
    return threads.map { $0.join() }
}

/// `runOnCPUs` with the interrupt timer (VirtualCPU.startTimer) firing every
/// `microseconds` while the bodies run: each CPU runs `warmUp(cpu)` first (whatever its
/// interrupt body needs made outside a handler, and the body itself), the timer starts
/// once every CPU is warm, and stops once every `body(cpu)` has returned.
@discardableResult
func runOnCPUsWithTimer(
    _ count: Int, microseconds: Int, warmUp: @escaping @Sendable (Int) -> Void,
    _ body: @escaping @Sendable (Int) -> Void
) -> [UInt] {
    let warmedUp = SpinBarrier(parties: count + 1)
    let done = SpinBarrier(parties: count + 1)
    let timer = TestThread(cpu: nil) {
        warmedUp.wait()
        VirtualCPU.startTimer(microseconds: microseconds)
        done.wait()
        VirtualCPU.stopTimer()
    }
    let interrupts = runOnCPUs(count) { cpu in
        warmUp(cpu)
        warmedUp.wait()
        body(cpu)
        done.wait()
    }
    timer.join()
    return interrupts
}

/// Carries a value that is safe to share (a handle on concurrent state) into threads.
struct Shared<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
