// ThreadTestSupport: threads as virtual CPUs, a mutex-protected handoff between them, a
// spinning barrier (the cookies and the generator are Tests/Scenarios/TestRandom.swift).
// Neighbours: ThreadPlatform (the CPUs), ConcurrencyTests and PerCPUTests (the users).

import Quarry
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body(cpu)` on `count` new threads, thread i registered as virtual CPU i,
/// and joins them. Returns the number of interrupt bodies each CPU ran.
@discardableResult
func runOnCPUs(_ count: Int, firstCPU: Int = 0, _ body: @escaping @Sendable (Int) -> Void) -> [UInt] {
    final class Start: @unchecked Sendable {
        let cpu: Int
        let body: @Sendable (Int) -> Void
        var interrupts: UInt = 0
        init(cpu: Int, body: @escaping @Sendable (Int) -> Void) { self.cpu = cpu; self.body = body }
    }
    var threads: [pthread_t] = []
    var starts: [Start] = []
    for i in 0..<count {
        let start = Start(cpu: firstCPU + i, body: body)
        starts.append(start)
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                let start = Unmanaged<Start>.fromOpaque(raw!).takeUnretainedValue()
                ThreadPlatform.register(cpu: start.cpu)
                start.body(start.cpu)
                start.interrupts = ThreadPlatform.unregister()
                return nil
            }, Unmanaged.passUnretained(start).toOpaque())
        precondition(rc == 0, "pthread_create")
        threads.append(thread)
    }
    for t in threads { pthread_join(t, nil) }
    return starts.map(\.interrupts)
}

/// `runOnCPUs` with the interrupt timer (ThreadPlatform.startTimer) firing every
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
    let timer = Thread(cpu: nil) {
        warmedUp.wait()
        ThreadPlatform.startTimer(microseconds: microseconds)
        done.wait()
        ThreadPlatform.stopTimer()
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

/// A bounded FIFO of objects handed from one CPU to another, behind a pthread mutex
/// (the test harness's own synchronisation; Quarry is not used for it).
final class Handoff: @unchecked Sendable {
    struct Item { var address: UInt; var cache: Int }
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var items: [Item]
    private var head = 0
    private var count = 0

    init(capacity: Int) {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        items = Array(repeating: Item(address: 0, cache: 0), count: capacity)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func push(_ item: Item) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard count < items.count else { return false }
        items[(head + count) % items.count] = item
        count += 1
        return true
    }

    func pop() -> Item? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard count > 0 else { return nil }
        let item = items[head]
        head = (head + 1) % items.count
        count -= 1
        return item
    }
}

/// A reusable spinning barrier for `parties` threads (atomics only).
final class SpinBarrier: @unchecked Sendable {
    private let parties: Int
    private let arrived = Atomic<Int>(0)
    private let generation = Atomic<Int>(0)

    init(parties: Int) { self.parties = parties }

    func wait() {
        let g = generation.load(ordering: .acquiring)
        if arrived.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue == parties {
            arrived.store(0, ordering: .relaxed)
            generation.store(g + 1, ordering: .releasing)
        } else {
            while generation.load(ordering: .acquiring) == g { sched_yield() }
        }
    }
}
