// EpochTestPlatform: a host Platform where each registered thread is a virtual CPU, with
// simulated interrupts that fire where interrupts are re-enabled. Neighbours: the epoch
// tests (EpochReclaimerTests, LockFreeStackTests, TypeStableCacheTests), runThreads.

import Quarry
import QuarryScenarios
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One thread's virtual CPU: its index and its simulated interrupt state.
///
/// "Interrupts disabled" is a per-thread flag that `disableInterrupts` clears and
/// `restoreInterrupts` puts back. A simulated interrupt is delivered where a real one
/// would be taken: at the moment `restoreInterrupts` turns interrupts back on (`popf`
/// with IF set, with a pending interrupt). Its handler then runs on the same thread
/// (the same CPU) with interrupts disabled, as behind an interrupt gate, and does not
/// nest. Each such moment is a numbered **window**; a test arms either one window
/// (`injectAt`, deterministic: every window of a scenario in turn) or every
/// `period`-th window at random (stress).
final class VirtualCPU {
    var index: Int
    var interruptsEnabled = true
    var inHandler = false
    /// Windows passed since the handler was armed.
    var windows = 0
    var handler: (() -> Void)? = nil
    /// Fire at exactly this window (deterministic), or -1.
    var injectAt = -1
    /// Fire with probability 1/period at each window (0: never), drawn from `random`.
    var period: UInt64 = 0
    var random = SeededGenerator(seed: 1)
    var interruptsTaken = 0

    init(index: Int) { self.index = index }

    func arm(at window: Int, _ handler: @escaping () -> Void) {
        self.handler = handler
        injectAt = window
        period = 0
        windows = 0
    }

    func arm(period: UInt64, seed: UInt64, _ handler: @escaping () -> Void) {
        self.handler = handler
        injectAt = -1
        self.period = period
        random = SeededGenerator(seed: seed)
        windows = 0
    }

    func disarm() {
        handler = nil
        injectAt = -1
        period = 0
    }

    func windowOpened() {
        guard let handler, !inHandler else { return }
        let window = windows
        windows += 1
        let fire = window == injectAt || (period > 0 && random.next() % period == 0)
        guard fire else { return }
        inHandler = true
        interruptsEnabled = false
        interruptsTaken += 1
        handler()
        interruptsEnabled = true
        inHandler = false
    }
}

enum EpochTestPlatform: Platform {
    static var maxCPUs: Int { 8 }

    /// The thread's VirtualCPU, stored under a pthread key.
    static let key: pthread_key_t = {
        var k = pthread_key_t()
        precondition(pthread_key_create(&k, nil) == 0, "pthread_key_create")
        return k
    }()

    /// The calling thread's virtual CPU (it must be registered).
    static var current: VirtualCPU {
        guard let raw = pthread_getspecific(key) else {
            preconditionFailure("EpochTestPlatform: thread not registered as a virtual CPU")
        }
        return Unmanaged<VirtualCPU>.fromOpaque(raw).takeUnretainedValue()
    }

    /// Makes the calling thread virtual CPU `index` until `unregister()`.
    @discardableResult
    static func register(cpu index: Int) -> VirtualCPU {
        precondition(index >= 0 && index < maxCPUs, "EpochTestPlatform: CPU index out of range")
        unregister()
        let cpu = VirtualCPU(index: index)
        pthread_setspecific(key, Unmanaged.passRetained(cpu).toOpaque())
        return cpu
    }

    static func unregister() {
        guard let raw = pthread_getspecific(key) else { return }
        Unmanaged<VirtualCPU>.fromOpaque(raw).release()
        pthread_setspecific(key, nil)
    }

    /// Lets one thread play several CPUs in turn (deterministic multi-CPU scenarios).
    static func become(cpu index: Int) {
        precondition(index >= 0 && index < maxCPUs, "EpochTestPlatform: CPU index out of range")
        current.index = index
    }

    static var cpuIndex: Int { current.index }

    static func disableInterrupts() -> InterruptState {
        let cpu = current
        let was = cpu.interruptsEnabled
        cpu.interruptsEnabled = false
        return InterruptState(raw: was ? 1 : 0)
    }

    static func restoreInterrupts(_ state: InterruptState) {
        let cpu = current
        cpu.interruptsEnabled = state.raw == 1
        if cpu.interruptsEnabled { cpu.windowOpened() }
    }

    static func pause() { sched_yield() }
    static func write(_ byte: UInt8) { var b = byte; _ = Glibc.write(2, &b, 1) }
    static func entropy() -> UInt { UInt.random(in: 1...UInt.max) }
}

/// Carries a value that is safe to share (a handle on concurrent state) into threads.
struct Shared<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Runs `body(i)` on `count` new threads, thread `i` registered as virtual CPU `i`,
/// and waits for all of them.
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    precondition(count <= EpochTestPlatform.maxCPUs, "runThreads: more threads than virtual CPUs")
    var threads: [pthread_t] = []
    for i in 0..<count {
        let box = Unmanaged.passRetained(
            ThreadBody {
                EpochTestPlatform.register(cpu: i)
                body(i)
                EpochTestPlatform.unregister()
            })
        var thread = pthread_t()
        let created = pthread_create(
            &thread, nil,
            { arg in
                let body = Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue()
                body.run()
                return nil
            }, box.toOpaque())
        precondition(created == 0, "pthread_create")
        threads.append(thread)
    }
    for t in threads { pthread_join(t, nil) }
}

/// Operations per thread in the threaded tests (QUARRY_STRESS_OPS overrides).
func stressOperations(_ standard: Int) -> Int {
    if let s = ProcessInfoLite.environment("QUARRY_STRESS_OPS"), let v = Int(s) { return v }
    return standard
}
