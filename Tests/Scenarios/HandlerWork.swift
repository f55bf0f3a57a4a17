// HandlerWork: what an interrupt handler does where it lands: allocate and free objects of
// a cache and blocks of the malloc front, each checked (a cookie over every byte; with a
// LiveMap, inside the arena, aligned and not held by anyone else), counting the refusals
// the re-entrancy contract allows (allocate `.outOfMemory`, free `.busy`) and failures.
// Written once for the kernel's NMI and #DB handlers (Sources/QuarryKernel/NMIStorm.swift,
// SingleStep.swift) and the host's SIGTRAP handler (Tests/QuarryTests/SingleStepTests.swift).
// Neighbours: TestRandom (the cookies), Sources/QuarryKernel/Interrupts.swift
// (HandlerPolicy: where the kernel's handlers may call Quarry at all).
//
// Usable from a signal handler and an interrupt handler: no Swift allocation, no lock, no
// global; its state lives in memory the harness gives (a HandlerLedger, a LiveMap's
// bytes), reached through pointers and plain values, so no access is
// exclusivity-checked; its counters are atomic words. What stays with each harness: when
// the handler may run at all (the kernel's HandlerPolicy, the host's mask count), what
// it counts about where it landed (boundaries, masked landings), the host's epoch
// section around the work and its statistics checks. The kernel passes no LiveMap: its
// main loops and companion CPUs do not mark their objects, so the cookies are its check.

import Quarry
import Synchronization

/// What a handler (or the harness, for its own objects) found wrong.
public enum HandlerFailure: UInt8 {
    case none = 0
    /// A block outside the arena, or not 8-byte aligned.
    case outside
    /// A block that is already live (handed out twice).
    case duplicate
    /// A cookie that did not read back, or changed while the block was held.
    case cookie
    /// An allocation refused with another error than `.outOfMemory`.
    case allocateError
    /// A free refused with another error than `.busy`.
    case freeError
    /// A harness's own check: not inside the epoch section its handler entered.
    case notInside
}

/// One byte per 8-byte granule of an arena: 1 while someone (a harness or its handler)
/// holds a block starting there. Shared by both, so no block is ever held twice unseen.
public struct LiveMap {
    public let start: UInt
    public let end: UInt
    let bytes: UnsafeMutablePointer<UInt8>

    /// `bytes`: `size / 8` bytes, zeroed, owned by the caller while the map is in use.
    public init(start: UnsafeMutableRawPointer, size: Int, bytes: UnsafeMutablePointer<UInt8>) {
        self.start = UInt(bitPattern: start)
        end = self.start + UInt(size)
        self.bytes = bytes
    }

    func contains(_ address: UInt, size: Int) -> Bool {
        address >= start && address &+ UInt(size) <= end
    }

    /// Marks a new block live: `.outside`, `.duplicate` (marked anyway) or `.none`.
    func mark(_ address: UInt, size: Int) -> HandlerFailure {
        guard contains(address, size: size), address & 7 == 0 else { return .outside }
        let i = Int((address - start) >> 3)
        let found: HandlerFailure = bytes[i] != 0 ? .duplicate : .none
        bytes[i] = 1
        return found
    }

    func unmark(_ address: UInt) { bytes[Int((address - start) >> 3)] = 0 }
}

/// Addresses a handler keeps from one invocation to a later one: a LIFO, so that a free
/// right after an allocation frees the block just allocated.
public struct HeldObjects {
    public static var capacity: Int { 16 }
    var items = InlineArray<16, UInt>(repeating: 0)
    public private(set) var count = 0

    init() {}

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

/// A handler's kept objects and blocks and its counts, in memory the harness gives.
///
/// Concurrency: `objects` and `blocks` are touched by one CPU's handler (handlers of one
/// CPU do not nest, or run with the harness's thread code held off) and by the harness
/// at quiescence. The counters are atomic words: written by that CPU, read by any.
public struct HandlerLedger: ~Copyable {
    /// Handler invocations (the harness counts them).
    public let taken = Atomic<Int>(0)
    /// Invocations that landed in masked code (the harness counts them).
    public let landedMasked = Atomic<Int>(0)
    /// Successful allocations and frees, objects and blocks apart.
    public let objectAllocations = Atomic<Int>(0)
    public let objectFrees = Atomic<Int>(0)
    public let blockAllocations = Atomic<Int>(0)
    public let blockFrees = Atomic<Int>(0)
    /// Clean refusals: allocate `.outOfMemory`, free `.busy` (the block stays held).
    public let refusals = Atomic<Int>(0)
    /// Everything `HandlerFailure` names; the first is kept with its address (for a
    /// refused call, the error's raw value).
    public let failures = Atomic<Int>(0)
    let firstFailureRaw = Atomic<UInt8>(0)
    public let failureAddress = Atomic<UInt>(0)
    /// Allocations not tried because `HeldObjects.capacity` were held already (only
    /// `.busy` refusals pile them up that far).
    public let skipped = Atomic<Int>(0)
    public internal(set) var objects = HeldObjects()
    public internal(set) var blocks = HeldObjects()

    public init() {}

    public var allocations: Int {
        objectAllocations.load(ordering: .relaxed) + blockAllocations.load(ordering: .relaxed)
    }
    public var frees: Int { objectFrees.load(ordering: .relaxed) + blockFrees.load(ordering: .relaxed) }
    public var firstFailure: HandlerFailure {
        HandlerFailure(rawValue: firstFailureRaw.load(ordering: .relaxed)) ?? .none
    }

    /// Counts a failure; the first one since `resetCounts` is kept with `address`.
    public func fail(_ what: HandlerFailure, _ address: UInt) {
        if failures.wrappingAdd(1, ordering: .relaxed).oldValue == 0 {
            firstFailureRaw.store(what.rawValue, ordering: .relaxed)
            failureAddress.store(address, ordering: .relaxed)
        }
    }

    /// Zeroes every counter; the held objects and blocks stay.
    public func resetCounts() {
        taken.store(0, ordering: .relaxed)
        landedMasked.store(0, ordering: .relaxed)
        objectAllocations.store(0, ordering: .relaxed)
        objectFrees.store(0, ordering: .relaxed)
        blockAllocations.store(0, ordering: .relaxed)
        blockFrees.store(0, ordering: .relaxed)
        refusals.store(0, ordering: .relaxed)
        failures.store(0, ordering: .relaxed)
        firstFailureRaw.store(0, ordering: .relaxed)
        failureAddress.store(0, ordering: .relaxed)
        skipped.store(0, ordering: .relaxed)
    }

    /// Hands the handler a block its harness allocated (and accepted) for it to keep.
    public mutating func hold(_ address: UInt, isBlock: Bool) {
        if isBlock { blocks.push(address) } else { objects.push(address) }
    }
}

/// What one invocation does with one kind (objects or blocks): `allocate` allocations
/// and `free` frees of the most recently kept, frees first or allocations first.
public struct HandlerShape: Sendable {
    public var allocate: Int
    /// `Int.max`: every block held when the invocation starts.
    public var free: Int
    public var freeFirst: Bool

    public init(allocate: Int, free: Int, freeFirst: Bool) {
        self.allocate = allocate
        self.free = free
        self.freeFirst = freeFirst
    }

    /// Allocate `n`, then free as many as were allocated: a magazine it hits ends as it
    /// was (a full one stays full).
    public static func allocateThenFree(_ n: Int) -> HandlerShape {
        HandlerShape(allocate: n, free: n, freeFirst: false)
    }
    /// Free the `n` most recently kept, then allocate `n` and keep them: a magazine it
    /// hits ends as it was (an empty one stays empty).
    public static func freeThenAllocate(_ n: Int) -> HandlerShape {
        HandlerShape(allocate: n, free: n, freeFirst: true)
    }
    public static var allocateThenFree: HandlerShape { .allocateThenFree(1) }
    public static var freeThenAllocate: HandlerShape { .freeThenAllocate(1) }
    /// Allocate two, free the second: the handler keeps one more than before.
    public static var grow: HandlerShape { HandlerShape(allocate: 2, free: 1, freeFirst: false) }
    /// Allocate one, free it and the one kept before it: the handler keeps one fewer.
    public static var shrink: HandlerShape { HandlerShape(allocate: 1, free: 2, freeFirst: false) }
    /// Allocate one and keep it.
    public static var keepOne: HandlerShape { HandlerShape(allocate: 1, free: 0, freeFirst: false) }
    /// Free everything kept.
    public static var freeAll: HandlerShape { HandlerShape(allocate: 0, free: Int.max, freeFirst: true) }

    /// `.grow` while fewer than 4 are kept, else `.shrink`: every invocation allocates
    /// and frees, and changes by one the number of objects the cache's magazines hold,
    /// which a hit path that was interrupted between reading and writing its magazine
    /// would get wrong.
    public static func unbalanced(keeping count: Int) -> HandlerShape { count < 4 ? .grow : .shrink }
}

/// One handler's work on one cache (objects) and one malloc size (blocks).
public struct HandlerWork<P: Platform> {
    public let cache: SlabCache<P>
    public let front: MallocFront<P>
    /// The size of the malloc blocks (its class cache is the one the front uses).
    public let blockSize: Int
    /// Checked on every allocation and free, when given.
    public let live: LiveMap?

    public init(cache: SlabCache<P>, front: MallocFront<P>, blockSize: Int, live: LiveMap? = nil) {
        self.cache = cache
        self.front = front
        self.blockSize = blockSize
        self.live = live
    }

    /// Allocates and frees objects and blocks as the shapes say, counting into `ledger`.
    /// Any context where the harness allows Quarry. True if it got an object or a block.
    @discardableResult
    public func run(_ ledger: UnsafeMutablePointer<HandlerLedger>, objects: HandlerShape, blocks: HandlerShape) -> Bool
    {
        let gotObjects = perform(ledger, isBlock: false, objects)
        let gotBlocks = perform(ledger, isBlock: true, blocks)
        return gotObjects + gotBlocks > 0
    }

    /// One kind's share of `run`; returns the allocations made.
    @discardableResult
    public func perform(_ ledger: UnsafeMutablePointer<HandlerLedger>, isBlock: Bool, _ shape: HandlerShape) -> Int {
        var frees = shape.free
        if frees == Int.max { frees = isBlock ? ledger.pointee.blocks.count : ledger.pointee.objects.count }
        var taken = 0
        if shape.freeFirst {
            var i = 0
            while i < frees {
                give(ledger, isBlock: isBlock)
                i += 1
            }
        }
        var i = 0
        while i < shape.allocate {
            if take(ledger, isBlock: isBlock) { taken += 1 }
            i += 1
        }
        if !shape.freeFirst {
            // Balanced shapes free what they got; the others their count.
            var n = shape.free == shape.allocate ? taken : frees
            while n > 0 {
                give(ledger, isBlock: isBlock)
                n -= 1
            }
        }
        return taken
    }

    private func size(isBlock: Bool) -> Int { isBlock ? blockSize : cache.objectSize }

    /// A new block of `size` bytes: marked live in `live` (if given), its cookie written
    /// and read back. The harness calls it for its own blocks too.
    public static func accept(_ address: UInt, size: Int, live: LiveMap?) -> HandlerFailure {
        var found = HandlerFailure.none
        if let live {
            found = live.mark(address, size: size)
            if found == .outside { return found }
        }
        Cookie.fill(at: address, size: size)
        if !Cookie.intact(at: address, size: size) && found == .none { found = .cookie }
        return found
    }

    /// A block about to be freed: its cookie checked, no longer marked live.
    public static func release(_ address: UInt, size: Int, live: LiveMap?) -> HandlerFailure {
        if let live, !live.contains(address, size: size) { return .outside }
        let intact = Cookie.intact(at: address, size: size)
        live?.unmark(address)
        return intact ? .none : .cookie
    }

    /// Allocates one object or block, checks it and keeps it. True if it got one.
    private func take(_ ledger: UnsafeMutablePointer<HandlerLedger>, isBlock: Bool) -> Bool {
        guard !(isBlock ? ledger.pointee.blocks.isFull : ledger.pointee.objects.isFull) else {
            ledger.pointee.skipped.wrappingAdd(1, ordering: .relaxed)
            return false
        }
        do throws(QuarryError) {
            let p = isBlock ? try front.malloc(blockSize) : try cache.allocate()
            let address = UInt(bitPattern: p)
            let found = Self.accept(address, size: size(isBlock: isBlock), live: live)
            if found != .none { ledger.pointee.fail(found, address) }
            if found == .outside { return true }  // not ours to touch again
            ledger.pointee.hold(address, isBlock: isBlock)
            if isBlock {
                ledger.pointee.blockAllocations.wrappingAdd(1, ordering: .relaxed)
            } else {
                ledger.pointee.objectAllocations.wrappingAdd(1, ordering: .relaxed)
            }
            return true
        } catch {
            if error == .outOfMemory {
                ledger.pointee.refusals.wrappingAdd(1, ordering: .relaxed)
            } else {
                ledger.pointee.fail(.allocateError, UInt(error.rawValue))
            }
            return false
        }
    }

    /// Frees the most recently kept object or block, if any, after checking it. A
    /// `.busy` refusal keeps it.
    private func give(_ ledger: UnsafeMutablePointer<HandlerLedger>, isBlock: Bool) {
        guard let address = isBlock ? ledger.pointee.blocks.pop() : ledger.pointee.objects.pop() else { return }
        let found = Self.release(address, size: size(isBlock: isBlock), live: live)
        guard found == .none else {
            // Another owner wrote it, or it was handed out twice: do not free it again.
            ledger.pointee.fail(found, address)
            return
        }
        do throws(QuarryError) {
            let p = UnsafeMutableRawPointer(bitPattern: address)
            if isBlock { try front.free(p) } else { try cache.free(p) }
            if isBlock {
                ledger.pointee.blockFrees.wrappingAdd(1, ordering: .relaxed)
            } else {
                ledger.pointee.objectFrees.wrappingAdd(1, ordering: .relaxed)
            }
        } catch {
            _ = live?.mark(address, size: size(isBlock: isBlock))  // still ours
            if error == .busy {
                ledger.pointee.refusals.wrappingAdd(1, ordering: .relaxed)
                ledger.pointee.hold(address, isBlock: isBlock)
            } else {
                ledger.pointee.fail(.freeError, UInt(error.rawValue))
            }
        }
    }

    /// Frees everything `ledger` still holds, checking each (thread context, at
    /// quiescence). Returns the number of failed checks and frees.
    public func release(_ ledger: UnsafeMutablePointer<HandlerLedger>) -> Int {
        var bad = 0
        while let address = ledger.pointee.objects.pop() {
            if Self.release(address, size: cache.objectSize, live: live) != .none { bad += 1 }
            do throws(QuarryError) { try cache.free(UnsafeMutableRawPointer(bitPattern: address)) } catch { bad += 1 }
        }
        while let address = ledger.pointee.blocks.pop() {
            if Self.release(address, size: blockSize, live: live) != .none { bad += 1 }
            do throws(QuarryError) { try front.free(UnsafeMutableRawPointer(bitPattern: address)) } catch { bad += 1 }
        }
        return bad
    }
}
