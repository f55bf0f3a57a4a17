// EpochReclaimer: deferred freeing (epoch-based reclamation): read-side critical sections,
// retire (the kfree_rcu analog), epoch advance, bounded per-CPU backlogs of retired objects.
// Neighbours: SlabCache (where a retired object is finally freed), Quarry (whose caches hold
// the reclaimer's own state), EpochReclaimer+Statistics (snapshots, invariants),
// EpochReclaimer+Malloc (retiring malloc blocks, spans included), Sources/QuarryC (the C ABI),
// LockFreeStack (its first user), docs/design.md ("Deferred freeing") (the argument and the bound).
//
// Concurrency and interrupt contract (the state lives here):
//
//   field                          | written by                       | read by
//   -------------------------------+----------------------------------+----------------------------
//   ReclaimerState.epoch           | any CPU, CAS in tryAdvance       | any CPU (enter, retire, ...)
//   EpochCPU.announced             | its own CPU, interrupts off      | any CPU (tryAdvance, stalls)
//   EpochCPU.depth, ring, head,    | its own CPU, interrupts off      | its own CPU; any CPU only at
//     reserved, bucket*            |                                  |   quiescence (flush, invariants)
//   EpochCPU.count, counters       | its own CPU, interrupts off      | any CPU (statistics), atomic
//   ReclaimerState stall fields    | any CPU (atomic)                 | any CPU
//
// - Every call may run in interrupt context (an interrupt handler that interrupted any
//   reclaimer call on the same CPU) except `synchronize`, `flush` and `destroy`, which
//   wait or need quiescence. Per-CPU state is touched only with interrupts disabled on
//   that CPU, in regions that never wait; a handler's critical section nests inside the
//   interrupted one through `depth`.
// - Locks: the reclaimer has none. Freeing a retired object takes that cache's lock
//   (interrupts disabled while held, so a handler never finds it held by its own CPU);
//   no reclaimer state is held across that call.
// - Nothing here allocates through the Swift runtime; the state comes from two Quarry
//   caches ("quarry_ebr" for the header and per-CPU records, "quarry_ebr_retired" for
//   the per-CPU arrays of retired pointers).

import Synchronization

/// Called when a retire or reservation is refused because a CPU stays inside a
/// read-side critical section: `cpu` is the CPU that blocks the epoch (-1 when it left
/// just before the scan), `epoch` the global epoch. Runs on the refusing CPU, possibly in
/// interrupt context: it must not allocate, wait or print through a lock.
public typealias EpochStallHook = @convention(c) (_ cpu: Int, _ epoch: UInt) -> Void

/// The outcome of `tryAdvance`.
public enum EpochAdvance: Equatable, Sendable {
    /// The global epoch is now at least this value (this call or another CPU moved it).
    case advanced(to: UInt)
    /// `cpu` is inside a critical section and has not announced the current epoch.
    case blocked(by: Int)
}

/// One retired object: its address and the cache it goes back to, or nil for a malloc
/// span (a block above the largest size class, EpochReclaimer+Malloc), which goes back
/// through the malloc front. Kept in the reclaimer's own arrays: nothing is ever written
/// into a retired object, which readers may still be reading.
struct RetiredObject {
    var object: UInt
    var cache: UnsafeMutablePointer<CacheState>?
}

/// One CPU's reclaimer state. Cache-line aligned and padded (`ReclaimerState.cpuStride`)
/// so that no two CPUs' records share a line.
///
/// The retired objects form a ring `ring[head ..< head + count]` (mod `capacity`),
/// oldest first. Its entries are grouped in at most three **buckets** by the epoch they
/// were retired in; bucket `e % 3` holds the `bucketCount[e % 3]` entries retired in epoch
/// `bucketEpoch[e % 3] == e`. Epochs only grow, so the buckets lie in the ring in epoch
/// order and freeing the oldest bucket pops from `head`.
///
/// Invariants (checked by `EpochReclaimer.checkInvariants`):
/// - `count + reserved <= capacity`
/// - `Σ bucketCount == count`; a non-empty bucket `b` has `bucketEpoch[b] % 3 == b`
///   and `bucketEpoch[b] <= epoch`
/// - `depth == 0` iff `announced == 0`
/// - `freed + count == retired` (mod 2^word)
///
/// Field order matters to ThreadSanitizer: Swift reports every mutation through
/// `pointee` as a write of the record's first byte, so the first field is `depth`,
/// which only the owner touches, never an atomic other CPUs read.
struct EpochCPU: ~Copyable {
    /// Nesting depth of critical sections (a handler's inside the interrupted code's).
    var depth = 0
    /// `epoch << 1 | 1` while this CPU is inside a critical section, 0 outside.
    let announced = Atomic<UInt>(0)
    let ring: UnsafeMutablePointer<RetiredObject>
    var head = 0
    /// Retired objects waiting (atomic: statistics read it from other CPUs).
    let count = Atomic<Int>(0)
    /// Slots promised to `Reservation`s, not yet filled.
    var reserved = 0
    var bucketEpoch = InlineArray<3, UInt>(repeating: 0)
    var bucketCount = InlineArray<3, Int>(repeating: 0)
    // Counters, written by the owner with interrupts off, read by anyone.
    let retired = Atomic<UInt>(0)
    let freed = Atomic<UInt>(0)
    /// Retires and reservations refused because the backlog stayed full.
    let refused = Atomic<UInt>(0)
    let blockedAdvances = Atomic<UInt>(0)
    let highWater = Atomic<Int>(0)
    /// Frees of retired objects that the cache refused (misuse: retired twice).
    let freeErrors = Atomic<UInt>(0)

    init(ring: UnsafeMutablePointer<RetiredObject>) { self.ring = ring }
}

/// The reclaimer's header, followed in the same object by `cpuCount` `EpochCPU` records.
struct ReclaimerState: ~Copyable {
    /// The global epoch. Only grows (by one per successful `tryAdvance`).
    let epoch = Atomic<UInt>(0)
    let magic: UInt32
    /// Retired objects each CPU may hold (the bound).
    let capacity: Int
    let cpuCount: Int
    let heap: UnsafeMutablePointer<HeapState>
    /// The caches of the header and of the retired arrays (destroyed with the reclaimer).
    let stateCache: UnsafeMutablePointer<CacheState>
    let ringCache: UnsafeMutablePointer<CacheState>
    let stallHook: EpochStallHook?
    let advances = Atomic<UInt>(0)
    let stalls = Atomic<UInt>(0)
    /// The CPU named by the last stall report (-1: none yet, or it left before the scan).
    let lastStallingCPU = Atomic<Int>(-1)

    static let liveMagic: UInt32 = 0x4542_5221  // "EBR!"

    init(
        capacity: Int, cpuCount: Int, heap: UnsafeMutablePointer<HeapState>,
        stateCache: UnsafeMutablePointer<CacheState>, ringCache: UnsafeMutablePointer<CacheState>,
        stallHook: EpochStallHook?
    ) {
        magic = ReclaimerState.liveMagic
        self.capacity = capacity
        self.cpuCount = cpuCount
        self.heap = heap
        self.stateCache = stateCache
        self.ringCache = ringCache
        self.stallHook = stallHook
    }

    static var cpuOffset: Int { roundUp(MemoryLayout<ReclaimerState>.stride, Geometry.cacheLine) }
    static var cpuStride: Int { roundUp(MemoryLayout<EpochCPU>.stride, Geometry.cacheLine) }
    static func bytes(cpus: Int) -> Int { cpuOffset + cpus * cpuStride }
    static func roundUp(_ n: Int, _ to: Int) -> Int { (n + to - 1) & ~(to - 1) }
}

/// Epoch-based reclamation over one Quarry (Fraser 2004; crossbeam-epoch; the idea of
/// Linux's `kfree_rcu`). Readers bracket every access to shared objects with
/// `enter()`/`exit()`; a writer that unlinked an object calls `retire(_:to:)` instead of
/// `free`, and the object goes back to its cache once the global epoch has advanced
/// twice, when no CPU can still hold a reference. See docs/design.md ("Deferred freeing") for the argument.
///
/// The handle is one pointer; copies share the reclaimer. Generic over the platform:
/// `P.maxCPUs` per-CPU records, `P.cpuIndex` picks one, `P.disableInterrupts` guards it.
///
/// Bound: each CPU holds at most `capacity` retired objects (`retiredPerCPU` at
/// creation); all CPUs together at most `P.maxCPUs × capacity`. Past the bound a retire
/// tries to advance the epoch and free; if a CPU stays inside a critical section the
/// retire is refused with `QuarryError.reclaimStalled` (the caller keeps the object),
/// the stall is counted, `stallHook` runs, and `stallingCPU` names the CPU.
public struct EpochReclaimer<P: Platform> {
    let state: UnsafeMutablePointer<ReclaimerState>

    init(state: UnsafeMutablePointer<ReclaimerState>) { self.state = state }

    /// The record of CPU `index`.
    @inline(__always)
    func cpu(_ index: Int) -> UnsafeMutablePointer<EpochCPU> {
        // Sound: `create` laid out `cpuCount` records at `cpuOffset` with `cpuStride`,
        // each initialised; `index < cpuCount` by the Platform contract (`cpuIndex <
        // maxCPUs == cpuCount`).
        (UnsafeMutableRawPointer(state) + ReclaimerState.cpuOffset + index &* ReclaimerState.cpuStride)
            .assumingMemoryBound(to: EpochCPU.self)
    }

    /// Retired objects each CPU may hold.
    public var capacity: Int { state.pointee.capacity }

    /// The global epoch (for reports and tests).
    public var epoch: UInt { state.pointee.epoch.load(ordering: .acquiring) }

    // MARK: Read-side critical sections

    /// Enters a read-side critical section on this CPU: objects retired from now on are
    /// not freed before the matching `exit`. Nests (an interrupt handler's section
    /// inside the interrupted code's, or plain nesting): only the outermost `enter`
    /// announces.
    ///
    /// Cost (outermost, inlined; counted in the kernel images' `LockFreeStack.pop`,
    /// `pushf` to `popf`): 21 instructions on i686, 18 on x86_64: interrupt save
    /// (`pushf; pop; cli`), CPU index (`mov %fs:0` / `%gs:0`) and scale, the depth load
    /// and test, the epoch load, one `xchg` that stores the announcement and is the full
    /// store-load fence (a locked instruction, ~20 cycles; it orders the announcement
    /// before every later load of shared pointers), the depth store, interrupt restore
    /// (`push; popf`). Two branches, one locked instruction, no call. Nested: no `xchg`.
    @inline(__always)
    public func enter() {
        let saved = P.disableInterrupts()
        let me = cpu(P.cpuIndex)
        if me.pointee.depth == 0 {
            let e = state.pointee.epoch.load(ordering: .relaxed)
            // Sequentially consistent exchange: the announcement, then a full fence (x86
            // `xchg` with its implicit lock), so no later load of a shared pointer is
            // performed before the announcement is visible to `tryAdvance`.
            _ = me.pointee.announced.exchange(e &<< 1 | 1, ordering: .sequentiallyConsistent)
        }
        me.pointee.depth &+= 1
        P.restoreInterrupts(saved)
    }

    /// Leaves the critical section `enter` opened. The outermost exit withdraws the
    /// announcement with one releasing store (a plain `mov` on x86: every load of the
    /// section happens before it).
    ///
    /// Cost (counted as for `enter`): 14 instructions on i686, 13 on x86_64, plus the
    /// CPU index load and scale when the compiler cannot share them with `enter`:
    /// interrupt save, depth load, test (the misuse check), decrement and store, one
    /// `mov` of 0, interrupt restore. No locked instruction, no call.
    @inline(__always)
    public func exit() {
        let saved = P.disableInterrupts()
        let me = cpu(P.cpuIndex)
        precondition(me.pointee.depth > 0, "EpochReclaimer: exit without enter")
        me.pointee.depth &-= 1
        if me.pointee.depth == 0 {
            me.pointee.announced.store(0, ordering: .releasing)
        }
        P.restoreInterrupts(saved)
    }

    /// Runs `body` inside a critical section.
    @inline(__always)
    public func withCriticalSection<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        enter()
        defer { exit() }
        return try body()
    }

    /// True when this CPU is inside a critical section.
    public var isInsideCriticalSection: Bool {
        let saved = P.disableInterrupts()
        let inside = cpu(P.cpuIndex).pointee.depth > 0
        P.restoreInterrupts(saved)
        return inside
    }

    // MARK: Advancing the epoch

    /// Advances the global epoch by one if every CPU inside a critical section has
    /// announced the current epoch. Never waits. O(maxCPUs) loads.
    @discardableResult
    public func tryAdvance() -> EpochAdvance {
        let s = state
        let current = s.pointee.epoch.load(ordering: .acquiring)
        // Pairs with the fence in `enter`: an announcement made before this point is seen
        // by the scan, and a reader that announces after it reads pointers unlinked
        // before it no more (docs/design.md, "Deferred freeing").
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let wanted = current &<< 1 | 1
        var i = 0
        while i < s.pointee.cpuCount {
            let a = cpu(i).pointee.announced.load(ordering: .acquiring)
            if a != 0 && a != wanted {
                countBlockedAdvance()
                return .blocked(by: i)
            }
            i += 1
        }
        let (exchanged, found) = s.pointee.epoch.compareExchange(
            expected: current, desired: current &+ 1, ordering: .acquiringAndReleasing)
        if exchanged {
            s.pointee.advances.wrappingAdd(1, ordering: .relaxed)
            return .advanced(to: current &+ 1)
        }
        return .advanced(to: found)
    }

    private func countBlockedAdvance() {
        let saved = P.disableInterrupts()
        let me = cpu(P.cpuIndex)
        me.pointee.blockedAdvances.store(me.pointee.blockedAdvances.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        P.restoreInterrupts(saved)
    }

    /// The CPU that keeps the epoch from advancing right now (inside a critical
    /// section that announced an older epoch), or nil.
    public var stallingCPU: Int? {
        let wanted = state.pointee.epoch.load(ordering: .acquiring) &<< 1 | 1
        var i = 0
        while i < state.pointee.cpuCount {
            let a = cpu(i).pointee.announced.load(ordering: .acquiring)
            if a != 0 && a != wanted { return i }
            i += 1
        }
        return nil
    }

    // MARK: Retire

    /// A slot in this CPU's backlog, promised to one later `retire(_:to:using:)`, which
    /// then cannot be refused for lack of room. Take it before unlinking an object that
    /// must not be kept (a lock-free structure's node); dropping it gives the slot back.
    /// Must be used or dropped on the CPU that took it (no migration in between).
    @frozen public struct Reservation: ~Copyable {
        /// The reclaimer's state (raw: a @frozen type may only store public types).
        let reclaimer: UnsafeMutableRawPointer
        let cpuIndex: Int

        init(reclaimer: UnsafeMutablePointer<ReclaimerState>, cpuIndex: Int) {
            self.reclaimer = UnsafeMutableRawPointer(reclaimer)
            self.cpuIndex = cpuIndex
        }

        /// Turns the reservation into its CPU index without giving the slot back.
        consuming func take() -> Int {
            let index = cpuIndex
            discard self
            return index
        }

        deinit {
            // Sound: `reclaimer` is the ReclaimerState the reservation was taken from.
            EpochReclaimer(state: reclaimer.assumingMemoryBound(to: ReclaimerState.self)).unreserve(cpuIndex)
        }
    }

    /// Reserves one slot in this CPU's backlog. When it is full, frees what it can and
    /// tries to advance the epoch (three rounds); if a CPU stays inside a critical
    /// section, reports the stall and throws `.reclaimStalled`. Interrupt-safe, never waits.
    public func reserve() throws(QuarryError) -> Reservation {
        var round = 0
        while true {
            let saved = P.disableInterrupts()
            let index = P.cpuIndex
            let me = cpu(index)
            if me.pointee.count.load(ordering: .relaxed) + me.pointee.reserved < state.pointee.capacity {
                me.pointee.reserved += 1
                P.restoreInterrupts(saved)
                return Reservation(reclaimer: state, cpuIndex: index)
            }
            P.restoreInterrupts(saved)
            // Full. The oldest entries need at most two advances to become freeable.
            if round == 3 { break }
            _ = tryAdvance()
            _ = reclaimReady()
            round += 1
        }
        reportStall()
        throw .reclaimStalled
    }

    func unreserve(_ index: Int) {
        let saved = P.disableInterrupts()
        precondition(P.cpuIndex == index, "EpochReclaimer: reservation used on another CPU")
        cpu(index).pointee.reserved -= 1
        P.restoreInterrupts(saved)
    }

    /// `retire(_:to:using:)` with a reservation taken now: throws `.reclaimStalled`
    /// (the caller keeps `object`) when this CPU's backlog is full and cannot be freed
    /// because a CPU stays inside a critical section.
    public func retire(_ object: UnsafeMutableRawPointer, to cache: SlabCache<P>) throws(QuarryError) {
        let reservation = try reserve()
        try retire(object, to: cache, using: reservation)
    }

    /// Hands `object`, already unlinked from every shared structure, to the reclaimer:
    /// it goes back to `cache` once the global epoch has advanced twice past now, when
    /// no CPU can be inside a critical section that saw it. Until then the object stays
    /// allocated (its bitmap bit set, counted in `activeObjects`) and untouched.
    ///
    /// Throws, keeping the reservation's slot free, only when `object` is not an object
    /// `cache` handed out (`.wrongCache`, `.interiorPointer`, `.doubleFree`, ...).
    /// Retiring the same object twice is misuse like a double free; the second free is
    /// refused by the cache (counted in `freeErrors`) unless the object was handed out
    /// again in between. Interrupt-safe; frees ready objects of this CPU on the way.
    public func retire(
        _ object: UnsafeMutableRawPointer, to cache: SlabCache<P>,
        using reservation: consuming Reservation
    ) throws(QuarryError) {
        let address = UInt(bitPattern: object)
        if let error = cache.allocatedObjectError(address) { throw error }
        enqueue(address, cache: cache.state, cpu: reservation.take())
    }

    /// Puts a checked object into CPU `index`'s backlog, in the slot reserved for it,
    /// then frees what is ready. `cache` nil: a malloc span (EpochReclaimer+Malloc).
    func enqueue(_ address: UInt, cache: UnsafeMutablePointer<CacheState>?, cpu index: Int) {
        // The caller unlinked `object` before this call; the tag must be an epoch read
        // after the unlink (on x86 a later load may pass an earlier plain store).
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        while true {
            let saved = P.disableInterrupts()
            precondition(P.cpuIndex == index, "EpochReclaimer: reservation used on another CPU")
            let me = cpu(index)
            // Read with interrupts off: a handler's retire on this CPU comes entirely
            // before or after, so the ring stays in epoch order.
            let e = state.pointee.epoch.load(ordering: .acquiring)
            let b = Int(e % 3)
            if me.pointee.bucketCount[b] > 0 && me.pointee.bucketEpoch[b] != e {
                // Bucket b still holds epoch e - 3 or older: freeable, and oldest in the
                // ring. Free it first (reclaimReady pops from the head).
                P.restoreInterrupts(saved)
                _ = reclaimReady()
                continue
            }
            let n = me.pointee.count.load(ordering: .relaxed)
            let capacity = state.pointee.capacity
            var slot = me.pointee.head + n
            if slot >= capacity { slot -= capacity }
            me.pointee.ring.advanced(by: slot).initialize(to: RetiredObject(object: address, cache: cache))
            me.pointee.count.store(n + 1, ordering: .relaxed)
            me.pointee.reserved -= 1
            me.pointee.bucketEpoch[b] = e
            me.pointee.bucketCount[b] += 1
            me.pointee.retired.store(me.pointee.retired.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            if n + 1 > me.pointee.highWater.load(ordering: .relaxed) {
                me.pointee.highWater.store(n + 1, ordering: .relaxed)
            }
            P.restoreInterrupts(saved)
            if 2 * (n + 1) >= capacity { _ = tryAdvance() }
            break
        }
        _ = reclaimReady()
    }

    // MARK: Freeing

    /// Frees this CPU's retired objects whose epoch the global epoch has passed by two,
    /// oldest first, one per interrupt-disabled step. Returns how many it freed.
    @discardableResult
    func reclaimReady() -> Int {
        var freed = 0
        while true {
            let saved = P.disableInterrupts()
            let me = cpu(P.cpuIndex)
            let e = state.pointee.epoch.load(ordering: .acquiring)
            guard let entry = popReady(me, epoch: e) else {
                P.restoreInterrupts(saved)
                return freed
            }
            P.restoreInterrupts(saved)
            freeRetired(entry)
            freed += 1
        }
    }

    /// Removes the oldest entry of `me` if its bucket's epoch is at least two behind `e`.
    /// Interrupts are off.
    @inline(__always)
    private func popReady(_ me: UnsafeMutablePointer<EpochCPU>, epoch e: UInt) -> RetiredObject? {
        let n = me.pointee.count.load(ordering: .relaxed)
        guard n > 0 else { return nil }
        // The oldest non-empty bucket: the one furthest behind `e`.
        var oldest = -1
        var age: UInt = 0
        for b in 0..<3 where me.pointee.bucketCount[b] > 0 {
            let a = e &- me.pointee.bucketEpoch[b]
            if oldest < 0 || a > age {
                oldest = b
                age = a
            }
        }
        guard age >= 2 else { return nil }
        let entry = me.pointee.ring[me.pointee.head]
        var head = me.pointee.head + 1
        if head == state.pointee.capacity { head = 0 }
        me.pointee.head = head
        me.pointee.count.store(n - 1, ordering: .relaxed)
        me.pointee.bucketCount[oldest] -= 1
        me.pointee.freed.store(me.pointee.freed.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        return entry
    }

    private func freeRetired(_ entry: RetiredObject) {
        do throws(QuarryError) {
            if let cache = entry.cache {
                try SlabCache<P>(state: cache).free(UnsafeMutableRawPointer(bitPattern: entry.object))
            } else {
                try MallocFront<P>(heap: state.pointee.heap).free(UnsafeMutableRawPointer(bitPattern: entry.object))
            }
        } catch {
            let saved = P.disableInterrupts()
            let me = cpu(P.cpuIndex)
            me.pointee.freeErrors.store(me.pointee.freeErrors.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            P.restoreInterrupts(saved)
        }
    }

    /// The periodic poll (a timer tick, an idle loop): tries to advance the epoch once and
    /// frees this CPU's ready objects. Interrupt-safe, never waits. Returns how many it freed.
    @discardableResult
    public func poll() -> Int {
        _ = tryAdvance()
        return reclaimReady()
    }

    /// Waits until every object this CPU retired before the call has been freed
    /// (`synchronize_rcu` followed by the callbacks). Spins while another CPU stays inside
    /// a critical section. Not inside a critical section, not in interrupt context.
    public func synchronize() {
        precondition(!isInsideCriticalSection, "EpochReclaimer: synchronize inside a critical section")
        let start = state.pointee.epoch.load(ordering: .acquiring)
        while state.pointee.epoch.load(ordering: .acquiring) &- start < 2 {
            if case .blocked = tryAdvance() { P.pause() }
        }
        _ = reclaimReady()
    }

    /// Frees every retired object of every CPU at once. Requires quiescence: no CPU is
    /// inside a critical section (checked) and none calls the reclaimer meanwhile (the
    /// caller's promise: this touches every CPU's backlog). Then no reader can hold a
    /// reference to any retired object, whatever its epoch. Returns how many it freed.
    @discardableResult
    public func flush() -> Int {
        precondition(!anyCPUInside, "EpochReclaimer: flush while a CPU is inside a critical section")
        var freed = 0
        var i = 0
        while i < state.pointee.cpuCount {
            let c = cpu(i)
            var n = c.pointee.count.load(ordering: .acquiring)
            while n > 0 {
                let entry = c.pointee.ring[c.pointee.head]
                c.pointee.head = c.pointee.head + 1 == state.pointee.capacity ? 0 : c.pointee.head + 1
                n -= 1
                c.pointee.count.store(n, ordering: .relaxed)
                c.pointee.freed.store(c.pointee.freed.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
                freeRetired(entry)
                freed += 1
            }
            for b in 0..<3 { c.pointee.bucketCount[b] = 0 }
            i += 1
        }
        return freed
    }

    private var anyCPUInside: Bool {
        var i = 0
        while i < state.pointee.cpuCount {
            if cpu(i).pointee.announced.load(ordering: .acquiring) != 0 { return true }
            i += 1
        }
        return false
    }

    // MARK: Stalls

    /// Counts a refused retire on this CPU and a stall, records the blocking CPU, runs the hook.
    private func reportStall() {
        let blocker = stallingCPU ?? -1
        let saved = P.disableInterrupts()
        let me = cpu(P.cpuIndex)
        me.pointee.refused.store(me.pointee.refused.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        P.restoreInterrupts(saved)
        state.pointee.stalls.wrappingAdd(1, ordering: .relaxed)
        state.pointee.lastStallingCPU.store(blocker, ordering: .relaxed)
        if let hook = state.pointee.stallHook { hook(blocker, epoch) }
    }

    // MARK: Life cycle

    /// Frees every retired object (`flush`, so quiescence is required), then the
    /// reclaimer's own memory and its two caches. The handle becomes invalid.
    public func destroy() {
        precondition(
            state.pointee.magic == ReclaimerState.liveMagic, "EpochReclaimer: destroy of a destroyed reclaimer")
        flush()
        let stateCache = SlabCache<P>(state: state.pointee.stateCache)
        let ringCache = SlabCache<P>(state: state.pointee.ringCache)
        let cpus = state.pointee.cpuCount
        do throws(QuarryError) {
            var i = 0
            while i < cpus {
                precondition(cpu(i).pointee.reserved == 0, "EpochReclaimer: destroy with a reservation outstanding")
                try ringCache.free(UnsafeMutableRawPointer(cpu(i).pointee.ring))
                cpu(i).deinitialize(count: 1)
                i += 1
            }
            state.deinitialize(count: 1)
            try stateCache.free(UnsafeMutableRawPointer(state))
        } catch {
            preconditionFailure("EpochReclaimer: its own memory was not its caches'")
        }
        stateCache.destroy()
        ringCache.destroy()
    }
}

extension Quarry {
    /// Creates an epoch reclaimer whose retired objects go back to caches of this Quarry.
    /// Each CPU may hold `retiredPerCPU` retired objects (the bound; at least 4); the
    /// reclaimer takes `P.maxCPUs × retiredPerCPU` pointer pairs plus one record per CPU
    /// from two new caches. `stallHook` runs on every stall report.
    /// Throws `.zeroSize` / `.sizeTooLarge` for a bound out of range, `.outOfMemory`.
    public func createReclaimer(
        retiredPerCPU: Int = 256, stallHook: EpochStallHook? = nil
    ) throws(QuarryError) -> EpochReclaimer<P> {
        guard retiredPerCPU >= 4 else { throw .zeroSize }
        let cpus = P.maxCPUs
        let ringBytes = retiredPerCPU * MemoryLayout<RetiredObject>.stride
        guard ringBytes <= Geometry.maxObjectSize,
            ReclaimerState.bytes(cpus: cpus) <= Geometry.maxObjectSize
        else { throw .sizeTooLarge }
        let stateCache = try createCache(
            name: "quarry_ebr", size: ReclaimerState.bytes(cpus: cpus), alignment: Geometry.cacheLine)
        let ringCache: SlabCache<P>
        do throws(QuarryError) {
            ringCache = try createCache(name: "quarry_ebr_retired", size: ringBytes)
        } catch {
            stateCache.destroy()
            throw error
        }
        var rings = 0
        do throws(QuarryError) {
            let memory = try stateCache.allocate()
            // Sound: the object is `bytes(cpus:)` long and cache-line aligned: the header,
            // then `cpus` records at `cpuOffset + i × cpuStride`.
            let state = memory.bindMemory(to: ReclaimerState.self, capacity: 1)
            state.initialize(
                to: ReclaimerState(
                    capacity: retiredPerCPU, cpuCount: cpus, heap: heap, stateCache: stateCache.state,
                    ringCache: ringCache.state, stallHook: stallHook))
            let reclaimer = EpochReclaimer<P>(state: state)
            while rings < cpus {
                let ring: UnsafeMutableRawPointer
                do throws(QuarryError) {
                    ring = try ringCache.allocate()
                } catch {
                    // Undo: the rings so far, the header, the caches.
                    var i = 0
                    while i < rings {
                        _ = try? ringCache.free(UnsafeMutableRawPointer(reclaimer.cpu(i).pointee.ring))
                        reclaimer.cpu(i).deinitialize(count: 1)
                        i += 1
                    }
                    state.deinitialize(count: 1)
                    _ = try? stateCache.free(memory)
                    throw error
                }
                // Sound: a ring object holds `retiredPerCPU` RetiredObjects (trivial type);
                // entries are initialised one by one before they are read.
                let record = (memory + ReclaimerState.cpuOffset + rings * ReclaimerState.cpuStride)
                    .bindMemory(to: EpochCPU.self, capacity: 1)
                record.initialize(to: EpochCPU(ring: ring.bindMemory(to: RetiredObject.self, capacity: retiredPerCPU)))
                rings += 1
            }
            return reclaimer
        } catch {
            stateCache.destroy()
            ringCache.destroy()
            throw error
        }
    }
}

extension SlabCache {
    /// Why `address` is not an object this cache handed out and has not taken back, or
    /// nil. Lock-free: `locate` reads only atomic descriptor words (PageMap), and the
    /// allocation bit is an atomic word.
    func allocatedObjectError(_ address: UInt) -> QuarryError? {
        switch locate(address) {
        case .failure(let error): return error
        case .success: return isUserHeld(address) ? nil : .doubleFree
        }
    }
}
