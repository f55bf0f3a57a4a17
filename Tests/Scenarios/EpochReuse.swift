// EpochReuse: the kfree_rcu contract, round after round, written once for the host test
// (LockFreeStackTests: two threads as virtual CPUs) and the test kernel (EpochSuite, on
// CPUs 0 and 1): a writer publishes an object, waits until a reader holds it inside a
// critical section, unlinks and retires it, then allocates from the same cache; it must
// never get the object back while the reader is inside (the reader stays until the
// writer has allocated 32 objects, then leaves), it must get it back after, and the
// reader must always find the object's cookie intact.
// Neighbours: Quarry/Epochs/EpochReclaimer (under test), EpochStall and EpochStackStress (the
// other epoch scenarios), ScenarioChecks (reporting). Embedded Swift: no allocation.

import Quarry
import Synchronization

/// The shared state of one run (atomics only).
public struct EpochReuseState: ~Copyable {
    let slot = Atomic<UInt>(0)
    let insideRound = Atomic<Int>(0)
    let retiredRound = Atomic<Int>(0)
    let doneRound = Atomic<Int>(0)
    let violations = Atomic<Int>(0)
    let cookieFailures = Atomic<Int>(0)
    let reused = Atomic<Int>(0)
    let unexpected = Atomic<Int>(0)

    public init() {}
}

public struct EpochReuse<P: Platform> {
    public let reclaimer: EpochReclaimer<P>
    public let cache: SlabCache<P>
    let state: UnsafeMutablePointer<EpochReuseState>
    /// The writer's objects of one round (its count bounds the allocations per round).
    let held: UnsafeMutableBufferPointer<UInt>
    public let rounds: Int
    public let writer: Int
    public let reader: Int

    /// `state` (initialised) and `held` (at least 64 words) are the caller's, alive until
    /// after `finish`; `cache` is only this scenario's.
    public init(
        reclaimer: EpochReclaimer<P>, cache: SlabCache<P>, state: UnsafeMutablePointer<EpochReuseState>,
        held: UnsafeMutableBufferPointer<UInt>, rounds: Int, writer: Int, reader: Int
    ) {
        precondition(held.count >= 64 && writer != reader, "EpochReuse: a writer, a reader, room for 64 objects")
        self.reclaimer = reclaimer
        self.cache = cache
        self.state = state
        self.held = held
        self.rounds = rounds
        self.writer = writer
        self.reader = reader
    }

    /// CPU `cpu`'s part: the writer's or the reader's rounds; other CPUs return at once.
    public func run(cpu: Int) {
        if cpu == writer { write() } else if cpu == reader { read() }
    }

    private func write() {
        let s = state
        let r = reclaimer
        var round = 1
        while round <= rounds {
            guard let x = try? cache.allocate() else {
                s.pointee.unexpected.add(1, ordering: .relaxed)
                return
            }
            Cookie.fill(x, size: cache.objectSize, key: UInt(round))
            s.pointee.slot.store(UInt(bitPattern: x), ordering: .releasing)
            while s.pointee.insideRound.load(ordering: .acquiring) != round { P.pause() }
            s.pointee.slot.store(0, ordering: .releasing)  // unlink, then retire
            do throws(QuarryError) { try r.retire(x, to: cache) } catch {
                s.pointee.unexpected.add(1, ordering: .relaxed)
            }
            // Allocate and poll until `x` comes back: it may only come back once the
            // reader has left, which it does after the first 32 allocations. `x` is the
            // newest object of this CPU's backlog, which is freed oldest first: the
            // backlog is empty exactly when `x` was freed.
            var n = 0
            while true {
                _ = r.poll()
                if n == 32 { s.pointee.retiredRound.store(round, ordering: .releasing) }
                if n == held.count { break }  // x never came back: `reused` falls short
                if n < 32 || r.statistics(cpu: writer).pending == 0 {
                    guard let p = try? cache.allocate() else {
                        s.pointee.unexpected.add(1, ordering: .relaxed)
                        break
                    }
                    held[n] = UInt(bitPattern: p)
                    n += 1
                    if p == x {
                        s.pointee.reused.add(1, ordering: .relaxed)
                        if s.pointee.insideRound.load(ordering: .acquiring) == round {
                            s.pointee.violations.add(1, ordering: .relaxed)
                        }
                        break
                    }
                } else {
                    P.pause()
                }
            }
            s.pointee.retiredRound.store(round, ordering: .releasing)
            var i = 0
            while i < n {
                do throws(QuarryError) { try cache.free(UnsafeMutableRawPointer(bitPattern: held[i])) } catch {
                    s.pointee.unexpected.add(1, ordering: .relaxed)
                }
                i += 1
            }
            s.pointee.doneRound.store(round, ordering: .releasing)
            round += 1
        }
    }

    private func read() {
        let s = state
        let r = reclaimer
        var round = 1
        while round <= rounds {
            var x: UInt = 0
            while true {
                r.enter()
                x = s.pointee.slot.load(ordering: .acquiring)
                if x != 0 { break }
                r.exit()
                P.pause()
            }
            s.pointee.insideRound.store(round, ordering: .releasing)
            // Sound: the object was published and is not freed while this CPU is inside.
            let p = UnsafeMutableRawPointer(bitPattern: x).unsafelyUnwrapped
            repeat {
                if !Cookie.intact(p, size: cache.objectSize, key: UInt(round)) {
                    s.pointee.cookieFailures.add(1, ordering: .relaxed)
                }
                P.pause()
            } while s.pointee.retiredRound.load(ordering: .acquiring) < round
            s.pointee.insideRound.store(0, ordering: .releasing)
            r.exit()
            while s.pointee.doneRound.load(ordering: .acquiring) < round { P.pause() }
            round += 1
        }
    }

    /// After both CPUs returned from `run`: the checks; then waits for the last retired
    /// object and checks the cache is empty.
    public func finish<C: ScenarioChecks>(_ checks: C) {
        let s = state
        checks.checkEqual(
            "epoch reuse: no object handed out again while its reader was inside",
            s.pointee.violations.load(ordering: .relaxed), 0)
        checks.checkEqual(
            "epoch reuse: the reader always found its object's cookie intact",
            s.pointee.cookieFailures.load(ordering: .relaxed), 0)
        checks.checkEqual(
            "epoch reuse: every object came back once its reader left",
            s.pointee.reused.load(ordering: .relaxed), rounds)
        checks.checkEqual(
            "epoch reuse: no allocation, retire or free refused", s.pointee.unexpected.load(ordering: .relaxed), 0)
        reclaimer.synchronize()
        checks.checkEqual("epoch reuse: the cache is empty after the last grace period", cache.activeObjects, 0)
    }
}
