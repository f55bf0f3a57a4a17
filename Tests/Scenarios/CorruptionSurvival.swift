// CorruptionSurvival: one scenario, driven by the host tests (CorruptionSurvivalTests,
// CABITests through quarry_malloc) and by the kernel (CorruptionSuite): damage the free
// link of a free object on its slab's free list, one way of `FreeLinkDamage`, then run
// many allocations and frees and check every object handed out. Embedded-compatible:
// no Array, no existentials, no allocation; the caller gives the live-set buffer.
// Neighbours: SlabCache+Debug (the @_spi(Testing) hooks used here), SlabLayer
// (quarantine), docs/design.md ("After a corruption").

@_spi(Testing) import Quarry

/// How the free link of a free object `b` is damaged. `a` is the live object just
/// before `b` in its slab; `head` is the head of their slab's free list.
public enum FreeLinkDamage: Sendable {
    /// The link word set to 0.
    case zero
    /// One bit of the stored word flipped (bit 3: off a boundary; bit 6 with 64-byte
    /// objects: onto another object of the slab; a high bit: out of the slab).
    case bitFlip(Int)
    /// The lowest byte of the stored word replaced (by the complement when it already holds it).
    case lowByte(UInt8)
    /// `a`'s raw address written into the link word (a stale pointer stored in freed memory).
    case rawAddress
    /// A link that decodes to `a`, an object that is out of its slab.
    case linkToLiveObject
    /// A link that decodes to the list's head: a cycle (head -> ... -> b -> head, or
    /// b -> b when `b` is the head).
    case cycle
    /// A link that decodes to the end of the list: the objects after `b` are skipped.
    case truncate
    /// Eight bytes written just past the end of `a`: `b`'s link word (an overflow from
    /// a neighbour).
    case neighbourOverflow

    /// The kinds the host tests and the kernel run, with one name each.
    public static let count = 10
    public static func kind(_ i: Int) -> FreeLinkDamage {
        switch i {
        case 0: .zero
        case 1: .bitFlip(3)
        case 2: .bitFlip(6)
        case 3: .bitFlip(MemoryLayout<UInt>.size * 8 - 12)
        case 4: .lowByte(0)
        case 5: .rawAddress
        case 6: .linkToLiveObject
        case 7: .cycle
        case 8: .truncate
        default: .neighbourOverflow
        }
    }

    public var name: StaticString {
        switch self {
        case .zero: "zero"
        case .bitFlip(let bit): bit == 3 ? "bit 3 flipped" : bit == 6 ? "bit 6 flipped" : "a high bit flipped"
        case .lowByte: "low byte replaced"
        case .rawAddress: "another object's raw address"
        case .linkToLiveObject: "link to an object that is out"
        case .cycle: "cycle"
        case .truncate: "list truncated"
        case .neighbourOverflow: "8-byte overflow from a neighbour"
        }
    }
}

/// What one run saw. A run survives when `damaged`, `duplicates == 0`, `strays == 0`,
/// `otherFailures == 0`, `freeErrors == 0`, and the refusals (`.corruptFreeList`) all
/// come from the corruption's detection: at most one per quarantined slab.
public struct SurvivalReport: Sendable {
    /// A target was found and its link damaged.
    public var damaged = false
    /// Allocations attempted after the damage, and how many were refused with
    /// `.corruptFreeList`; the index of the first and last refused one (-1: none).
    public var allocations = 0
    public var refusals = 0
    public var firstRefusal = -1
    public var lastRefusal = -1
    /// Allocations refused with another error (e.g. `.outOfMemory`).
    public var otherFailures = 0
    /// Objects handed out while a copy of them was live (their cookie was intact).
    public var duplicates = 0
    /// Objects handed out that are not an object of a live slab of the cache.
    public var strays = 0
    /// Frees of live objects that were refused.
    public var freeErrors = 0
    /// `.corruptFreeList` reports of the cache during the run, and its quarantined
    /// slabs and leaked objects at the end.
    public var reports: UInt64 = 0
    public var quarantinedSlabs = 0
    public var leakedObjects = 0

    public init() {}

    /// Every object distinct and the cache's own, nothing else refused, and at most one
    /// refusal per quarantined slab.
    public var survived: Bool {
        damaged && duplicates == 0 && strays == 0 && otherFailures == 0 && freeErrors == 0
            && refusals <= quarantinedSlabs
    }
}

/// Runs the scenario on `cache`, allocating and freeing through `allocate` and `free`
/// (the cache's own API, or malloc and free of the size class the cache serves).
public struct CorruptionSurvival<P: Platform> {
    public let cache: SlabCache<P>
    /// Live objects; its count is the most the workload holds at once (give at least
    /// 4 slabs' worth, so the growth phases drain every partial slab).
    public let live: UnsafeMutableBufferPointer<UInt>
    var count = 0
    var random: SeededGenerator

    public init(cache: SlabCache<P>, live: UnsafeMutableBufferPointer<UInt>, seed: UInt32) {
        self.cache = cache
        self.live = live
        random = SeededGenerator(seed: UInt64(seed))
    }

    /// A word no object holds by chance at offset 8 while it is free: the object is
    /// live in this run.
    @inline(__always)
    static func cookie(_ address: UInt) -> UInt { Cookie.value(address, key: 0x5EED_C0DE) }

    /// Takes an object into the live set, checking that it is the cache's and not live already.
    mutating func accept(_ p: UnsafeMutableRawPointer, _ report: inout SurvivalReport) {
        let address = UInt(bitPattern: p)
        if !cache.owns(p) {
            report.strays += 1
            return  // never touched, never freed
        }
        if p.load(fromByteOffset: 8, as: UInt.self) == Self.cookie(address) { report.duplicates += 1 }
        p.storeBytes(of: Self.cookie(address), toByteOffset: 8, as: UInt.self)
        live[count] = address
        count += 1
    }

    /// Frees live object `i` (the last one takes its place).
    mutating func release(_ i: Int, _ free: (UnsafeMutableRawPointer) -> QuarryError?, _ report: inout SurvivalReport) {
        let p = UnsafeMutableRawPointer(bitPattern: live[i]).unsafelyUnwrapped
        p.storeBytes(of: 0, toByteOffset: 8, as: UInt.self)
        count -= 1
        live[i] = live[count]
        if free(p) != nil { report.freeErrors += 1 }
    }

    /// Set-up, damage, `allocations` allocations (with frees in between), then every
    /// live object freed and this CPU's magazines and the depot drained into the slabs.
    public mutating func run(
        _ damage: FreeLinkDamage, allocations: Int,
        allocate: () -> Result<UnsafeMutableRawPointer, QuarryError>,
        free: (UnsafeMutableRawPointer) -> QuarryError?
    ) -> SurvivalReport {
        var report = SurvivalReport()
        let size = cache.objectSize
        precondition(size >= 16 && live.count >= 64, "CorruptionSurvival: objects of 16 bytes or more, a live set")
        let reportsBefore = cache.statistics.count(of: .corruptFreeList)
        // Set-up: two slabs' worth or 64 objects (at most half the live set) live, then
        // every object at an odd index of the arena (address / size) freed, so each
        // freed object's left neighbour is live, and drained onto its slab's free list.
        let setUp = min(max(2 * cache.statistics.objectsPerSlab, 64), live.count / 2)
        var i = 0
        while i < setUp {
            guard case .success(let p) = allocate() else { break }
            accept(p, &report)
            i += 1
        }
        i = 0
        while i < count {
            if (live[i] / UInt(size)) & 1 == 1 { release(i, free, &report) } else { i += 1 }
        }
        cache.drainCPU()
        cache.drainDepot()
        report.damaged = damageOne(damage)
        // The workload: allocate up to the live set's size (draining every partial slab,
        // the damaged one too, before any of their objects comes back: else the damaged
        // slab may empty and be released unread, corruption and all), then shrink to an
        // eighth, grow again, and so on, three steps in four going the phase's way.
        var first = true
        var growing = true
        var n = 0
        while n < allocations {
            if count == live.count { growing = false; first = false }
            if count <= live.count / 8 { growing = true }
            let allocateNow = count < live.count && (first || count == 0 || (random.below(4) != 0) == growing)
            if allocateNow {
                switch allocate() {
                case .success(let p): accept(p, &report)
                case .failure(.corruptFreeList):
                    if report.firstRefusal < 0 { report.firstRefusal = n }
                    report.lastRefusal = n
                    report.refusals += 1
                case .failure: report.otherFailures += 1
                }
                n += 1
            } else {
                release(random.below(count), free, &report)
            }
        }
        report.allocations = n
        while count > 0 { release(count - 1, free, &report) }
        cache.drainCPU()
        cache.drainDepot()
        let s = cache.statistics
        report.reports = s.count(of: .corruptFreeList) - reportsBefore
        report.quarantinedSlabs = s.quarantinedSlabs
        report.leakedObjects = s.leakedObjects
        return report
    }

    /// `run` through the cache's own `allocate` and `free`.
    public mutating func run(_ damage: FreeLinkDamage, allocations: Int) -> SurvivalReport {
        let cache = self.cache
        return run(
            damage, allocations: allocations,
            allocate: { () -> Result<UnsafeMutableRawPointer, QuarryError> in
                do throws(QuarryError) { return .success(try cache.allocate()) } catch { return .failure(error) }
            },
            free: { p in
                do throws(QuarryError) { try cache.free(p) } catch { return error }
                return nil
            })
    }

    /// Finds a free object `b` on a free list whose left neighbour `a` is live (and,
    /// to truncate, with a successor), and damages its link. False if none.
    func damageOne(_ damage: FreeLinkDamage) -> Bool {
        let size = cache.objectSize
        let offset = cache.freeLinkOffset
        var i = 0
        while i < count {
            let a = UnsafeMutableRawPointer(bitPattern: live[i]).unsafelyUnwrapped
            i += 1
            let b = a + size
            guard cache.isInItsSlab(b), let head = cache.freeListHead(ofSlabHolding: b) else { continue }
            if case .truncate = damage, cache.freeLink(of: b) == nil { continue }
            let word = b + offset
            switch damage {
            case .zero: word.storeBytes(of: 0, as: UInt.self)
            case .bitFlip(let bit): word.storeBytes(of: word.load(as: UInt.self) ^ (1 << UInt(bit)), as: UInt.self)
            case .lowByte(let v):
                let old = word.load(as: UInt8.self)
                word.storeBytes(of: old == v ? ~v : v, as: UInt8.self)
            case .rawAddress: word.storeBytes(of: UInt(bitPattern: a), as: UInt.self)
            case .linkToLiveObject: cache.writeFreeLink(into: b, to: a)
            case .cycle: cache.writeFreeLink(into: b, to: head)
            case .truncate: cache.writeFreeLink(into: b, to: nil)
            case .neighbourOverflow:
                // Past the end of `a`: the first word of `b` (the link, in a cache whose
                // link is the first word).
                a.storeBytes(of: UInt.max / 0xFF &* 0x41, toByteOffset: size, as: UInt.self)
            }
            return true
        }
        return false
    }
}
