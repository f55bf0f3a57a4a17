// HandlerWork: what the NMI and #DB handlers do where they land: allocate and free an
// object of a cache and a block of the malloc front, each with a cookie, and count it.
// Neighbours: NMIStorm.swift and SingleStep.swift (the two handlers that use it),
// Interrupts.swift (HandlerPolicy: where they may call Quarry at all).

import Quarry
import Synchronization

/// Objects a handler keeps from one invocation to a later one (a `.busy` free leaves the
/// object with its caller; most shapes keep some on purpose). A LIFO stack, so that a
/// free right after an allocation frees the object just allocated.
struct HeldObjects {
    static let capacity = 8
    var items = InlineArray<8, UInt>(repeating: 0)
    var count = 0

    var isFull: Bool { count == HeldObjects.capacity }

    mutating func push(_ address: UInt) {
        precondition(count < HeldObjects.capacity, "HeldObjects: full")
        items[count] = address
        count += 1
    }

    mutating func pop() -> UInt? {
        guard count > 0 else { return nil }
        count -= 1
        return items[count]
    }
}

/// One CPU's handler-side objects and counts, in memory of the heap under test.
///
/// Concurrency: `objects` and `blocks` are touched by that CPU's handler only (NMIs do
/// not nest; #DB handlers run on the stepping CPU, whose thread code reads them only
/// with TF clear) and by the boot CPU after the run. The counters are atomic words:
/// written by that CPU, read by the boot CPU after the run.
struct HandlerLedger: ~Copyable {
    /// Handler invocations.
    let taken = Atomic<Int>(0)
    /// Invocations that landed in masked code.
    let landedMasked = Atomic<Int>(0)
    /// Successful allocations and frees (objects and blocks together).
    let allocations = Atomic<Int>(0)
    let frees = Atomic<Int>(0)
    /// Clean refusals: allocate `.outOfMemory`, free `.busy` (the object stays held).
    let refusals = Atomic<Int>(0)
    /// Any other error, or a cookie mismatch.
    let failures = Atomic<Int>(0)
    /// Allocations not tried because `.busy` frees left `HeldObjects.capacity` held.
    let skipped = Atomic<Int>(0)
    var objects = HeldObjects()
    var blocks = HeldObjects()

    init() {}
}

/// One handler invocation's work on one cache and one malloc size class.
struct HandlerWork {
    let cache: KernelCache
    let front: MallocFront<X86Platform>
    /// The size of the malloc blocks (its class cache is the one the front uses).
    let blockSize: Int

    /// What one invocation does with one kind (objects or blocks).
    enum Shape {
        /// Allocate one, then free it: a magazine it hits ends as it was (a full one
        /// stays full).
        case allocateThenFree
        /// Free the most recently kept one, then allocate one and keep it: a magazine
        /// it hits ends as it was (an empty one stays empty).
        case freeThenAllocate
        /// Allocate two, free the second: the handler keeps one more than before.
        case grow
        /// Allocate one, free it and the one kept before it: the handler keeps one fewer.
        case shrink

        /// `.grow` while fewer than half of `HeldObjects.capacity` are kept, else
        /// `.shrink`: every invocation allocates and frees, and changes by one the number
        /// of objects the cache's magazines hold, which a hit path that was
        /// interrupted between reading and writing its magazine would get wrong.
        static func unbalanced(keeping count: Int) -> Shape {
            count < HeldObjects.capacity / 2 ? .grow : .shrink
        }
    }

    /// Allocates and frees objects and blocks as the shapes say, counting into `ledger`.
    /// Any context where HandlerPolicy allows Quarry.
    func run(_ ledger: UnsafeMutablePointer<HandlerLedger>, objects: Shape, blocks: Shape) {
        perform(ledger, isBlock: false, objects)
        perform(ledger, isBlock: true, blocks)
    }

    private func perform(_ ledger: UnsafeMutablePointer<HandlerLedger>, isBlock: Bool, _ shape: Shape) {
        switch shape {
        case .allocateThenFree:
            take(ledger, isBlock: isBlock)
            give(ledger, isBlock: isBlock)
        case .freeThenAllocate:
            give(ledger, isBlock: isBlock)
            take(ledger, isBlock: isBlock)
        case .grow:
            take(ledger, isBlock: isBlock)
            take(ledger, isBlock: isBlock)
            give(ledger, isBlock: isBlock)
        case .shrink:
            take(ledger, isBlock: isBlock)
            give(ledger, isBlock: isBlock)
            give(ledger, isBlock: isBlock)
        }
    }

    private func size(isBlock: Bool) -> Int { isBlock ? blockSize : cache.objectSize }

    /// Allocates one object or block, writes its cookie and keeps it.
    private func take(_ ledger: UnsafeMutablePointer<HandlerLedger>, isBlock: Bool) {
        guard !(isBlock ? ledger.pointee.blocks.isFull : ledger.pointee.objects.isFull) else {
            // Only frees refused with `.busy` pile objects up this far: hold no more.
            ledger.pointee.skipped.add(1, ordering: .relaxed)
            return
        }
        do throws(QuarryError) {
            let p = isBlock ? try front.malloc(blockSize) : try cache.allocate()
            let address = UInt(bitPattern: p)
            Cookie.fill(at: address, size: size(isBlock: isBlock))
            if isBlock { ledger.pointee.blocks.push(address) } else { ledger.pointee.objects.push(address) }
            ledger.pointee.allocations.add(1, ordering: .relaxed)
        } catch {
            if error == .outOfMemory {
                ledger.pointee.refusals.add(1, ordering: .relaxed)
            } else {
                ledger.pointee.failures.add(1, ordering: .relaxed)
            }
        }
    }

    /// Frees the most recently kept object or block, if any, after checking its cookie.
    /// A `.busy` refusal keeps it.
    private func give(_ ledger: UnsafeMutablePointer<HandlerLedger>, isBlock: Bool) {
        guard let address = isBlock ? ledger.pointee.blocks.pop() : ledger.pointee.objects.pop() else { return }
        guard Cookie.intact(at: address, size: size(isBlock: isBlock)) else {
            // Another owner wrote it, or it was handed out twice: do not free it again.
            ledger.pointee.failures.add(1, ordering: .relaxed)
            return
        }
        do throws(QuarryError) {
            let p = UnsafeMutableRawPointer(bitPattern: address)
            if isBlock { try front.free(p) } else { try cache.free(p) }
            ledger.pointee.frees.add(1, ordering: .relaxed)
        } catch {
            if error == .busy {
                ledger.pointee.refusals.add(1, ordering: .relaxed)
                if isBlock { ledger.pointee.blocks.push(address) } else { ledger.pointee.objects.push(address) }
            } else {
                ledger.pointee.failures.add(1, ordering: .relaxed)
            }
        }
    }

    /// Frees everything `ledger` still holds, checking cookies (thread context, after
    /// the run). Returns the number of cookie mismatches and failed frees.
    func release(_ ledger: UnsafeMutablePointer<HandlerLedger>) -> Int {
        var bad = 0
        while let address = ledger.pointee.objects.pop() {
            if !Cookie.intact(at: address, size: cache.objectSize) { bad += 1 }
            do throws(QuarryError) { try cache.free(UnsafeMutableRawPointer(bitPattern: address)) } catch { bad += 1 }
        }
        while let address = ledger.pointee.blocks.pop() {
            if !Cookie.intact(at: address, size: blockSize) { bad += 1 }
            do throws(QuarryError) { try front.free(UnsafeMutableRawPointer(bitPattern: address)) } catch { bad += 1 }
        }
        return bad
    }
}
