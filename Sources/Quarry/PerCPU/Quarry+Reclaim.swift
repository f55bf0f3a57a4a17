// Quarry+Reclaim: taking memory back from the per-CPU layer at any time: the heap-wide
// per-CPU budget that bounds what magazines may hold, the reclaim that runs before an
// allocation fails (and in `Quarry.shrink`), and the flush requests other CPUs honour.
// Neighbours: HeapState (holds ReclaimState), CPUState (each CPU's `flushSeen`),
// SlabCache+PerCPU (charges magazines, reclaims before `.outOfMemory`, honours requests
// in `tidy`), SlabCache+Drain (drains one slot), MallocFront (spans and class caches).
//
// ## Concurrency and interrupt contract
//
// - `ReclaimState`'s words are atomics: any CPU, any context.
// - A reclaim runs only on a CPU that holds no Quarry lock (`.spin` mode): from thread
//   context (`Quarry.shrink`), or from an allocation that would fail, also in a
//   maskable interrupt handler or a nested call that holds no lock. Lock order: it
//   takes the registry lock for its walk, then per cache the depot lock, the cache
//   lock, the magazine cache's lock and the page lock, never two at the same level.
//   Anything that finds its CPU holding a Quarry lock (`.tryOnly`) fails as before.
// - It touches only the calling CPU's slots, and only the slots it can claim: a slot
//   claimed by code the call interrupted is skipped. Other CPUs' slots are never read:
//   they get a *flush request* (`requests` grows by one) and each CPU honours it on its
//   next ordinary slow path by draining every slot of its own it can claim.
// - Caches are reached through the registry under its lock, and `destroy` unregisters a
//   cache before it drains it, so a reclaim never touches a cache being destroyed.

import Synchronization

/// The heap's per-CPU budget and reclaim counters (in HeapState, allocator-owned).
///
/// Invariants (checked by `Quarry.checkInvariants` at quiescence):
/// - `charged == Σ over caches of magazines held (CPU slots and depots) × magazine charge`
/// - `charged <= budget`, `charged <= highWater`
struct ReclaimState: ~Copyable {
    /// Bytes the per-CPU layers and depots of all caches may hold:
    /// `data bytes / Tuning.perCPUShare`.
    let budget: Int
    /// Bytes charged for the magazines that exist now (each: `magazineCapacity ×
    /// objectSize` of its cache plus its own size in the magazine cache).
    let charged = Atomic<Int>(0)
    let highWater = Atomic<Int>(0)
    /// Magazines not made because the budget could not pay for them.
    let refused = Atomic<UInt>(0)
    /// Flush requests posted: one per reclaim. CPU i has honoured the ones up to
    /// `CPUState.flushSeen`.
    let requests = Atomic<UInt>(0)
    /// Flush requests honoured on a slow path.
    let honoured = Atomic<UInt>(0)

    init(budget: Int) { self.budget = budget }

    /// Charges `bytes` to the budget; false (nothing charged, counted) when it would
    /// pass it. Any context: a compare-and-swap loop, on slow paths only.
    func charge(_ bytes: Int) -> Bool {
        var current = charged.load(ordering: .relaxed)
        while true {
            guard current + bytes <= budget else {
                refused.wrappingAdd(1, ordering: .relaxed)
                return false
            }
            let (done, seen) = charged.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if done { break }
            current = seen
        }
        var high = highWater.load(ordering: .relaxed)
        while current + bytes > high {
            let (done, seen) = highWater.compareExchange(expected: high, desired: current + bytes, ordering: .relaxed)
            if done { break }
            high = seen
        }
        return true
    }

    func uncharge(_ bytes: Int) {
        charged.wrappingAdd(-bytes, ordering: .relaxed)
    }
}

extension Quarry {
    /// Takes back, on the calling CPU, everything that can be taken without waiting for
    /// another CPU, in this order: posts a flush request to every CPU; then, cache by
    /// cache, drains this CPU's magazines and reserve (slots it can claim) and empties
    /// the depot (full magazines into the slabs, every magazine freed); then releases
    /// every empty slab of every cache (type-stable caches keep theirs). `claimed` is a
    /// cache whose slot on this CPU the caller holds claimed (drained without claiming).
    /// Requires: the CPU holds no Quarry lock.
    func reclaim(cpu index: Int, claimed: UnsafeMutablePointer<CacheState>?) {
        let h = heap
        let request = h.pointee.reclaim.requests.wrappingAdd(1, ordering: .relaxed).newValue
        let saved = P.disableInterrupts()
        h.pointee.cpuState(index).pointee.flushSeen = request
        P.restoreInterrupts(saved)
        forEachCache { cache in
            cache.drainOwnSlot(index, claimed: cache.state == claimed)
            cache.drainDepotUnchecked()
        }
        // Second pass: the internal caches come first in the registry, and their empty
        // slabs appear only once the other caches have freed their magazines.
        forEachCache { cache in _ = cache.shrinkUnchecked() }
    }

    /// For an allocation outside a cache's slow path (spans, cache creation) that
    /// would fail: reclaims if the calling CPU holds no Quarry lock and returns true
    /// (the caller then tries once more), else false.
    func reclaimBeforeFailing() -> Bool {
        let saved = P.disableInterrupts()
        let index = P.cpuIndex
        let mayWait = heap.pointee.lockMode(cpu: index) == .spin
        P.restoreInterrupts(saved)
        guard mayWait else { return false }
        reclaim(cpu: index, claimed: nil)
        return true
    }
}

extension SlabCache {
    /// The cost of one magazine of this cache to the per-CPU budget: the most its
    /// rounds can hold, and the magazine itself.
    var magazineCharge: Int {
        state.pointee.magazineCapacity * geometry.objectSize + heap.pointee.magazineCache.pointee.geometry.objectSize
    }

    /// A flush request is pending for CPU `index` (one load of its record, one atomic
    /// load). Interrupts masked. Out of line: the slow paths that inline `tidy` (the
    /// bulk calls' loops among them) keep their register allocation.
    @inline(never)
    func flushRequested(_ index: Int) -> Bool {
        heap.pointee.cpuState(index).pointee.flushSeen != heap.pointee.reclaim.requests.load(ordering: .relaxed)
    }

    /// Honours the pending flush requests: every slot of CPU `index` it can claim, in
    /// every cache, into the slabs (this cache's slot is claimed by the caller).
    /// End of an ordinary slow path: interrupts masked, no Quarry lock held.
    @inline(never)
    func honourFlushRequest(_ index: Int) {
        let h = heap
        h.pointee.cpuState(index).pointee.flushSeen = h.pointee.reclaim.requests.load(ordering: .relaxed)
        h.pointee.reclaim.honoured.wrappingAdd(1, ordering: .relaxed)
        let me = state
        Quarry<P>(heap: h).forEachCache { cache in cache.drainOwnSlot(index, claimed: cache.state == me) }
    }
}
