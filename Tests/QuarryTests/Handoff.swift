// Handoff: a bounded FIFO of objects handed from one virtual CPU to another, behind a
// pthread mutex (the test harness's own synchronisation; Quarry is not used for it).
// Neighbours: BulkTests (StressShared, its user), TestThread (the threads).

#if canImport(Glibc)
import Glibc
#endif

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
