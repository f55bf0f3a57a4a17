// EpochReclaimer+Statistics: snapshots of the reclaimer (whole and per CPU) and its
// invariant walk. Neighbours: EpochReclaimer (the state), Quarry+Statistics (the same for caches).

import Synchronization

/// One CPU's reclaimer figures. Counters are read with relaxed loads while other CPUs
/// may be running: each is exact, the set is not one instant.
public struct ReclaimerCPUStatistics: Sendable {
    /// Objects retired on this CPU, ever.
    public var retired: UInt
    /// Retired objects freed back to their caches, ever.
    public var freed: UInt
    /// Retired objects waiting (`retired - freed`), at most `capacity`.
    public var pending: Int
    /// Most objects ever waiting at once.
    public var highWater: Int
    /// Retires and reservations refused with `.reclaimStalled`.
    public var refused: UInt
    /// `tryAdvance` calls from this CPU that a critical section blocked.
    public var blockedAdvances: UInt
    /// Frees of retired objects the cache refused (an object retired twice).
    public var freeErrors: UInt
    /// Whether the CPU is inside a critical section.
    public var inside: Bool
    /// The epoch the CPU announced when it entered its outermost critical section
    /// (0 when it is not inside one).
    public var announcedEpoch: UInt
}

/// The reclaimer's totals.
public struct ReclaimerStatistics: Sendable {
    /// The global epoch.
    public var epoch: UInt
    /// Times the global epoch advanced since the reclaimer was created.
    public var advances: UInt
    /// Retired objects each CPU may hold; `cpus × capacity` is the bound on all of them.
    public var capacity: Int
    /// CPUs with a backlog (`P.maxCPUs`).
    public var cpus: Int
    /// Objects retired, all CPUs, ever (the sum of ``ReclaimerCPUStatistics/retired``).
    public var retired: UInt
    /// Retired objects freed back to their caches, all CPUs, ever.
    public var freed: UInt
    /// Retired objects waiting now, all CPUs (`retired - freed`).
    public var pending: Int
    /// Largest per-CPU high-water mark.
    public var highWater: Int
    /// Retires and reservations refused with `.reclaimStalled`, all CPUs.
    public var refused: UInt
    /// `tryAdvance` calls that a critical section blocked, all CPUs.
    public var blockedAdvances: UInt
    /// Frees of retired objects the cache refused (an object retired twice), all CPUs.
    public var freeErrors: UInt
    /// Stall reports (each refused retire or reservation is one).
    public var stalls: UInt
    /// The CPU named by the last stall report (-1: none, or it left before the scan).
    public var lastStallingCPU: Int
}

extension EpochReclaimer {
    /// Figures of CPU `index` (`0 ..< P.maxCPUs`).
    public func statistics(cpu index: Int) -> ReclaimerCPUStatistics {
        precondition(index >= 0 && index < state.pointee.cpuCount, "EpochReclaimer: CPU index out of range")
        let c = cpu(index)
        let announced = c.pointee.announced.load(ordering: .relaxed)
        return ReclaimerCPUStatistics(
            retired: c.pointee.retired.load(ordering: .relaxed), freed: c.pointee.freed.load(ordering: .relaxed),
            pending: c.pointee.count.load(ordering: .relaxed), highWater: c.pointee.highWater.load(ordering: .relaxed),
            refused: c.pointee.refused.load(ordering: .relaxed),
            blockedAdvances: c.pointee.blockedAdvances.load(ordering: .relaxed),
            freeErrors: c.pointee.freeErrors.load(ordering: .relaxed),
            inside: announced != 0, announcedEpoch: announced &>> 1)
    }

    /// The totals: the global figures and the sum (or, for `highWater`, the maximum) of
    /// every CPU's ``statistics(cpu:)``. Any context; each counter is exact, the set is
    /// not one instant.
    public var statistics: ReclaimerStatistics {
        var s = ReclaimerStatistics(
            epoch: epoch, advances: state.pointee.advances.load(ordering: .relaxed),
            capacity: state.pointee.capacity, cpus: state.pointee.cpuCount, retired: 0, freed: 0, pending: 0,
            highWater: 0, refused: 0, blockedAdvances: 0, freeErrors: 0,
            stalls: state.pointee.stalls.load(ordering: .relaxed),
            lastStallingCPU: state.pointee.lastStallingCPU.load(ordering: .relaxed))
        var i = 0
        while i < state.pointee.cpuCount {
            let c = statistics(cpu: i)
            s.retired &+= c.retired
            s.freed &+= c.freed
            s.pending += c.pending
            s.highWater = max(s.highWater, c.highWater)
            s.refused &+= c.refused
            s.blockedAdvances &+= c.blockedAdvances
            s.freeErrors &+= c.freeErrors
            i += 1
        }
        return s
    }

    /// Traps on the first broken invariant (see `EpochCPU`), for every CPU:
    /// - `count + reserved <= capacity`; `freed + count == retired`
    /// - `Σ bucketCount == count`; a non-empty bucket `b` holds an epoch `≡ b (mod 3)`,
    ///   not after the global epoch
    /// - `depth == 0` iff the CPU announces nothing
    /// - every waiting object is still allocated in a live cache (a malloc span: live)
    /// Requires quiescence (it reads every CPU's private fields). O(cpus × capacity).
    public func checkInvariants() {
        precondition(state.pointee.magic == ReclaimerState.liveMagic, "EpochReclaimer: dead reclaimer")
        let e = epoch
        let capacity = state.pointee.capacity
        var i = 0
        while i < state.pointee.cpuCount {
            let c = cpu(i)
            let n = c.pointee.count.load(ordering: .relaxed)
            precondition(
                n >= 0 && c.pointee.reserved >= 0 && n + c.pointee.reserved <= capacity,
                "EpochReclaimer: backlog beyond capacity")
            precondition(
                c.pointee.freed.load(ordering: .relaxed) &+ UInt(n) == c.pointee.retired.load(ordering: .relaxed),
                "EpochReclaimer: freed + pending != retired")
            var inBuckets = 0
            for b in 0..<3 where c.pointee.bucketCount[b] > 0 {
                let be = c.pointee.bucketEpoch[b]
                precondition(Int(be % 3) == b, "EpochReclaimer: bucket holds an epoch of another residue")
                precondition(be <= e, "EpochReclaimer: bucket epoch after the global epoch")
                inBuckets += c.pointee.bucketCount[b]
            }
            precondition(inBuckets == n, "EpochReclaimer: bucket counts != pending")
            precondition(
                (c.pointee.depth == 0) == (c.pointee.announced.load(ordering: .relaxed) == 0),
                "EpochReclaimer: depth and announcement disagree")
            var k = 0
            while k < n {
                var slot = c.pointee.head + k
                if slot >= capacity { slot -= capacity }
                let entry = c.pointee.ring[slot]
                if let cache = entry.cache {
                    precondition(
                        cache.pointee.magic.load(ordering: .relaxed) == CacheState.liveMagic,
                        "EpochReclaimer: retired into a dead cache")
                    precondition(
                        cache.pointee.bitmap.isAllocated(entry.object),
                        "EpochReclaimer: a waiting object is not allocated")
                } else {
                    precondition(
                        MallocFront<P>(heap: state.pointee.heap).liveSpan(at: entry.object),
                        "EpochReclaimer: a waiting malloc span is not live")
                }
                k += 1
            }
            i += 1
        }
    }
}
