// SpinBarrier: the host tests' one barrier, for threads that must start or finish a
// phase together (atomics only, no lock: usable between virtual CPUs at any time).
// Neighbours: TestThread (`runOnCPUsWithTimer`), ConcurrencyTests, ReclaimTests and
// LockFreeStackTests (the users).

import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A reusable spinning barrier for `parties` threads.
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
