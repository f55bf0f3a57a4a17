// SlabCache+Debug: the per-object debug options (poison, red zones, zeroing) and
// `validate`, the walk that counts inconsistencies instead of trapping.
// Neighbours: CacheOptions (the choices), SlabGeometry (red-zone layout, carve order),
// SlabCache (the fast path calls in here when `objectWork` is set), docs/design.md ("Safety").
//
// Object layout with options (objectSize bytes):
//
//     | caller's bytes [0, requestedSize) | (type-stable: link) | red zone [redZoneStart, objectSize) |
//
// Poison covers the caller's bytes except the free-link word (`geometry.linkOffset`),
// which the slab layer writes when the object goes back to its slab. Objects held by
// the per-CPU layer are free too: they are poisoned by `free` before they enter a
// magazine and checked by `allocate` after they leave it.

import Synchronization

/// One finding of `validate`: the error it stands for, and where (the object, the
/// slab's first byte, or the cache's handle for the cache's own counters).
public struct ValidationFinding: Sendable, Equatable {
    /// The kind of damage.
    public var error: QuarryError
    /// The object, the slab's first byte, or the cache's handle.
    public var address: UInt

    /// A finding of `error` at `address` (tests build the findings they expect).
    public init(error: QuarryError, address: UInt) {
        self.error = error
        self.address = address
    }
}

/// What `SlabCache.validate` found, by kind, and the first finding. All zero (and
/// `first` nil) for a healthy cache. A quarantined slab is not a finding: it is the
/// cache's answer to one (CacheStatistics.quarantinedSlabs, leakedObjects).
public struct ValidationReport: Sendable, Equatable {
    /// Slabs whose free list has a link that is not an object boundary of the slab,
    /// names an object that is out of its slab, closes a cycle, or skips objects
    /// (`.corruptFreeList`).
    public var corruptFreeLists = 0
    /// Free objects (on a free list or in the per-CPU layer) whose poison was
    /// overwritten (`.useAfterFree`).
    public var poisonDamaged = 0
    /// Carved objects whose red zone was overwritten (`.redZoneOverwritten`).
    public var redZoneDamaged = 0
    /// Disagreements between the bitmap, the per-slab `inUse`, the slab lists and the
    /// cache's counters (also a cached object whose allocation bit is clear, or that
    /// is not an object of the cache) (`.accountingMismatch`).
    public var accountingMismatches = 0
    /// The first finding in the walk's order (cached objects; the partial, full,
    /// empty and quarantined slabs; the cache's counters).
    public var first: ValidationFinding? = nil

    /// An empty report: nothing found.
    public init() {}

    /// Findings of every kind together (0 for a healthy cache).
    public var total: Int { corruptFreeLists + poisonDamaged + redZoneDamaged + accountingMismatches }

    mutating func note(_ error: QuarryError, _ address: UInt) {
        switch error {
        case .corruptFreeList: corruptFreeLists += 1
        case .useAfterFree: poisonDamaged += 1
        case .redZoneOverwritten: redZoneDamaged += 1
        default: accountingMismatches += 1
        }
        if first == nil { first = ValidationFinding(error: error, address: address) }
    }
}

extension SlabCache {
    // MARK: Byte patterns (a word at a time; no call to memset)

    /// `byte` repeated in every byte of a word.
    @inline(__always)
    static func pattern(_ byte: UInt8) -> UInt { UInt.max / 0xFF &* UInt(byte) }

    /// Fills `[start, start + count)` with `byte`. `start` is granule-aligned. The
    /// stores are relaxed atomic stores (plain `mov`s) so that the optimiser does not
    /// turn the loop into a call to `memset`: the fast path stays call-free.
    @inline(__always)
    static func fill(_ start: UInt, _ count: Int, _ byte: UInt8) {
        let word = MemoryLayout<UInt>.size
        let w = pattern(byte)
        var i = 0
        while i + word <= count {
            // Sound: the callers pass a range inside one object of a live slab of this
            // cache, word-aligned at `start` (objects are granule-aligned).
            UnsafeMutableRawPointer(bitPattern: start &+ UInt(i)).unsafelyUnwrapped
                .assumingMemoryBound(to: Atomic<UInt>.self).pointee.store(w, ordering: .relaxed)
            i += word
        }
        while i < count {
            UnsafeMutableRawPointer(bitPattern: start &+ UInt(i)).unsafelyUnwrapped
                .assumingMemoryBound(to: Atomic<UInt8>.self).pointee.store(byte, ordering: .relaxed)
            i += 1
        }
    }

    /// True if `[start, start + count)` holds `byte`, skipping the word at offset `skip`.
    @inline(__always)
    static func holds(_ start: UInt, _ count: Int, _ byte: UInt8, skip: Int = -1) -> Bool {
        // Sound: as in `fill`.
        let p = UnsafeRawPointer(bitPattern: start).unsafelyUnwrapped
        let word = MemoryLayout<UInt>.size
        let w = pattern(byte)
        var i = 0
        while i + word <= count {
            if i != skip && p.load(fromByteOffset: i, as: UInt.self) != w { return false }
            i += word
        }
        while i < count {
            if (i < skip || i >= skip + word) && p.load(fromByteOffset: i, as: UInt8.self) != byte { return false }
            i += 1
        }
        return true
    }

    var poisonBytes: Int { state.pointee.requestedSize }
    var redZoneBytes: Int { geometry.objectSize - geometry.redZoneStart }

    func poisonIntact(_ object: UInt) -> Bool {
        Self.holds(object, poisonBytes, CacheOptions.poisonByte, skip: geometry.linkOffset)
    }

    func redZoneIntact(_ object: UInt) -> Bool {
        Self.holds(object &+ UInt(geometry.redZoneStart), redZoneBytes, CacheOptions.redZoneByte)
    }

    // MARK: Hooks of the allocate and free paths (only when `objectWork`)

    /// A never-used object just carved: fill its red zone, poison it. Cache lock held.
    @inline(never)
    func prepareFresh(_ object: UInt) {
        let o = state.pointee.options
        if geometry.hasRedZone {
            Self.fill(object &+ UInt(geometry.redZoneStart), redZoneBytes, CacheOptions.redZoneByte)
        }
        if o.poison { Self.fill(object, poisonBytes, CacheOptions.poisonByte) }
    }

    /// An object about to be handed out (its bit just set): check its poison, zero it.
    @inline(never)
    func checkOnAllocate(_ object: UInt) {
        let o = state.pointee.options
        if o.poison && !poisonIntact(object) { report(.useAfterFree, object) }
        if o.zeroOnAllocate { Self.fill(object, poisonBytes, 0) }
    }

    /// An object just freed (its bit just cleared), before it enters a magazine: check
    /// and restore its red zone, then poison or zero it.
    @inline(never)
    func checkOnFree(_ object: UInt) {
        let o = state.pointee.options
        if geometry.hasRedZone && !redZoneIntact(object) {
            report(.redZoneOverwritten, object)
            Self.fill(object &+ UInt(geometry.redZoneStart), redZoneBytes, CacheOptions.redZoneByte)
        }
        if o.poison {
            Self.fill(object, poisonBytes, CacheOptions.poisonByte)
        } else if o.zeroOnFree {
            Self.fill(object, poisonBytes, 0)
        }
    }

    // MARK: validate

    /// Walks the whole cache and counts every inconsistency (never traps, reports
    /// nothing to the hook or counters, changes nothing): free lists (bounds, object
    /// boundaries, objects out of their slab, cycles, skipped objects), poison of
    /// every free object (free lists, magazines, reserves, depot), red zones of every
    /// carved object, the slab lists, and the bitmap against each slab's `inUse` and
    /// the cache's counters (the equations of `checkInvariants`). O(objects). At
    /// quiescence for this cache (as `checkInvariants`); thread context.
    public func validate() -> ValidationReport {
        heap.pointee.requireNotReentrant(P.self)
        return validateUnchecked()
    }

    /// `validate` for `Quarry.validate`, which holds the registry lock.
    func validateUnchecked() -> ValidationReport {
        state.pointee.depot.withLock(P.self) { depot in
            state.pointee.lock.withLock(P.self) { slabs in validateUnchecked(depot, slabs) }
        }
    }

    /// `validateUnchecked` inside the depot's and the cache lock's scopes.
    private func validateUnchecked(_ depot: Depot, _ slabs: SlabLayer) -> ValidationReport {
        var r = ValidationReport()
        let poison = state.pointee.options.poison
        let bitmap = state.pointee.bitmap
        // Cached objects are free (poisoned) and out of their slabs (bit set). Clearing
        // each bit finds one that is clear (in its slab, or cached twice); the bits
        // this walk cleared are set again at once.
        var cached = 0
        forEachCachedObject(depot) { object in
            guard case .success = locate(object) else {
                r.note(.accountingMismatch, object)
                return
            }
            cached += 1
            if poison && !poisonIntact(object) { r.note(.useAfterFree, object) }
            if !bitmap.markFree(object) { r.note(.accountingMismatch, object) }
        }
        forEachCachedObject(depot) { object in
            if case .success = locate(object) { _ = bitmap.markAllocated(object) }
        }
        let capacity = UInt32(geometry.objectsPerSlab)
        var inUse = 0
        var leaked = 0
        validateList(slabs.partial, &r, &inUse, &leaked) { $0 > 0 && $0 < capacity }
        validateList(slabs.full, &r, &inUse, &leaked) { $0 == capacity }
        validateList(slabs.empty, &r, &inUse, &leaked) { $0 == 0 }
        validateList(slabs.quarantined, &r, &inUse, &leaked) { _ in true }
        let c = slabs.counters
        let me = UInt(bitPattern: state)
        if inUse != c.inUse || activeObjects + cached != c.inUse || leaked != c.leakedObjects {
            r.note(.accountingMismatch, me)
        }
        return r
    }

    /// One list of `validate`: its links, each slab, and whether each slab's `inUse`
    /// `fits` the list; adds to the sums of `inUse` and of leaked objects.
    private func validateList(
        _ list: SlabList, _ r: inout ValidationReport, _ inUse: inout Int, _ leaked: inout Int,
        _ fits: (UInt32) -> Bool
    ) {
        let map = heap.pointee.map
        let arena = heap.pointee.arena
        let broken = list.walk(map) { page in
            let n = validateSlab(page, map, arena, &r)
            if !fits(map[page].inUse) { r.note(.accountingMismatch, arena.address(of: page)) }
            inUse += n
            if list.kind == .quarantined { leaked += Int(map[page].carved) - n }
        }
        if let broken {
            r.note(.accountingMismatch, broken != .none && broken.int < map.pageCount ? arena.address(of: broken) : 0)
        }
    }

    /// One slab of `validate`; returns its `inUse`.
    private func validateSlab(_ page: PageNumber, _ map: PageMap, _ arena: Arena, _ r: inout ValidationReport) -> Int {
        let g = geometry
        let secret = state.pointee.secret
        let slab = Slab(page: page, map: map, arena: arena)
        let d = map[page]
        guard d.cache == UInt(bitPattern: state), Int(d.pages) == g.slabPages, Int(d.carved) <= g.objectsPerSlab else {
            r.note(.accountingMismatch, slab.start)
            return Int(d.inUse)
        }
        let carved = d.carved
        let poison = state.pointee.options.poison
        let walk = slab.walkFreeList(g, secret: secret, bitmap: bitmap) { p in
            if poison && !poisonIntact(p) { r.note(.useAfterFree, p) }
        }
        // A quarantined slab has no free list: its free objects are leaked.
        let leaked = d.list == .quarantined ? Int(carved) - Int(d.inUse) : 0
        switch walk {
        case .broken(let at):
            r.note(.corruptFreeList, at)
        case .length(let free):
            if leaked < 0 || (d.list == .quarantined && free != 0) {
                r.note(.accountingMismatch, slab.start)
            } else if Int(d.inUse) + free + leaked != Int(carved) {
                // Well-formed, but it lost objects (a link skipped them) or has too many.
                r.note(.corruptFreeList, slab.start)
            }
        }
        if bitmap.count(slab: page, pages: g.slabPages) != Int(d.inUse) {
            r.note(.accountingMismatch, slab.start)
        }
        if g.hasRedZone {
            var k: UInt32 = 0
            while k < carved {
                let object = slab.object(g.carveIndex(k, slabStart: slab.start, secret: secret), g)
                if !redZoneIntact(object) { r.note(.redZoneOverwritten, object) }
                k += 1
            }
        }
        return Int(d.inUse)
    }
}

// Corruption tests (SafetyTests, CorruptionSurvivalTests, the kernel's CorruptionSuite,
// Tests/Scenarios): find a free object on a slab's free list and damage its link. All at
// quiescence for this cache, thread context.
extension SlabCache {
    /// The head of the free list of the slab holding `object` (corruption tests: the
    /// link a refill reads first), or nil when the object is not one of this cache's
    /// or the list is empty. At quiescence.
    @_spi(Testing) public func freeListHead(ofSlabHolding object: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
        guard case .success(let page) = locate(UInt(bitPattern: object)) else { return nil }
        return UnsafeMutableRawPointer(bitPattern: map[page].freeHead)
    }

    /// True when `pointer` is the start of a carved object of a live slab of this cache.
    @_spi(Testing) public func owns(_ pointer: UnsafeRawPointer) -> Bool {
        if case .success = locate(UInt(bitPattern: pointer)) { return true }
        return false
    }

    /// True when `pointer` is an object of this cache that is in its slab (its bit is
    /// clear: on its slab's free list, or leaked in a quarantined slab).
    @_spi(Testing) public func isInItsSlab(_ pointer: UnsafeRawPointer) -> Bool {
        owns(pointer) && !bitmap.isAllocated(UInt(bitPattern: pointer))
    }

    /// The next object after `object` on its slab's free list as the slab layer would
    /// read it, or nil at the end of the list or when the link is corrupt. `object`
    /// must be on a free list (`isInItsSlab`).
    @_spi(Testing) public func freeLink(of object: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
        let address = UInt(bitPattern: object)
        guard case .success(let page) = locate(address) else { return nil }
        let slab = Slab(page: page, map: map, arena: arena)
        let next = FreeLink.read(
            from: address, geometry, secret: secret,
            objects: slab.objectsStart, carved: map[page].carved)
        return next.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
    }

    /// Writes into `object`, a free object on its slab's free list, a link to `next`
    /// (nil: end of list) encoded as the slab layer writes it: a corruption that still
    /// decodes to an object of the slab (a cycle, a skip, an object that is out).
    @_spi(Testing) public func writeFreeLink(into object: UnsafeMutableRawPointer, to next: UnsafeMutableRawPointer?) {
        FreeLink.write(
            UInt(bitPattern: next), into: UInt(bitPattern: object), offset: geometry.linkOffset,
            secret: secret)
    }

    /// Byte offset of the free link inside an object (0, or past the caller's bytes in
    /// a type-stable cache).
    @_spi(Testing) public var freeLinkOffset: Int { geometry.linkOffset }
}
