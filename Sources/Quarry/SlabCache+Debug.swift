// SlabCache+Debug: the per-object debug options (poison, red zones, zeroing) and
// `validate`, the walk that counts inconsistencies instead of trapping.
// Neighbours: CacheOptions (the choices), SlabGeometry (red-zone layout, carve order),
// SlabCache (the fast path calls in here when `objectWork` is set), docs/safety.md.
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

/// What `SlabCache.validate` found, by kind. All zero for a healthy cache.
public struct ValidationReport: Sendable, Equatable {
    /// Slabs whose free list has a link that decodes outside the slab, or a cycle.
    public var corruptFreeLists = 0
    /// Free objects (on a free list or in the per-CPU layer) whose poison was overwritten.
    public var poisonDamaged = 0
    /// Carved objects whose red zone was overwritten.
    public var redZoneDamaged = 0
    /// Disagreements between the bitmap, the per-slab `inUse`, the free lists and the
    /// cache's counters (also a cached object whose allocation bit is set).
    public var accountingMismatches = 0

    public init() {}

    public var total: Int { corruptFreeLists + poisonDamaged + redZoneDamaged + accountingMismatches }
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
        if geometry.hasRedZone { Self.fill(object &+ UInt(geometry.redZoneStart), redZoneBytes, CacheOptions.redZoneByte) }
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
    /// nothing to the hook or counters, changes nothing): free lists (bounds and
    /// cycles), poison of every free object (free lists, magazines, reserves, depot),
    /// red zones of every carved object, and the bitmap against each slab's `inUse`
    /// and the cache's counters. O(objects). At quiescence for this cache (as
    /// `checkInvariants`); thread context.
    public func validate() -> ValidationReport {
        heap.pointee.requireNotReentrant(P.self)
        var r = ValidationReport()
        let h = heap
        let depotSaved = h.pointee.acquireBlocking(state.pointee.depotLock, P.self)
        let saved = h.pointee.acquireBlocking(state.pointee.lock, P.self)
        let poison = state.pointee.options.poison
        let bitmap = state.pointee.bitmap
        // Cached objects are free (poisoned) and out of their slabs (bit set). Clearing
        // each bit finds one that is clear (in its slab, or cached twice); the bits
        // this walk cleared are set again at once.
        forEachCachedObject { object in
            if poison && !poisonIntact(object) { r.poisonDamaged += 1 }
            if !bitmap.markFree(object) { r.accountingMismatches += 1 }
        }
        forEachCachedObject { object in _ = bitmap.markAllocated(object) }
        let map = h.pointee.map
        let arena = h.pointee.arena
        var inUse = 0
        slabs.pointee.partial.check(map) { page in inUse += validateSlab(page, map, arena, &r) }
        slabs.pointee.full.check(map) { page in inUse += validateSlab(page, map, arena, &r) }
        slabs.pointee.empty.check(map) { page in inUse += validateSlab(page, map, arena, &r) }
        if inUse != slabs.pointee.counters.inUse { r.accountingMismatches += 1 }
        h.pointee.release(state.pointee.lock, P.self, saved)
        h.pointee.release(state.pointee.depotLock, P.self, depotSaved)
        return r
    }

    /// One slab of `validate`; returns its `inUse`.
    private func validateSlab(_ page: PageNumber, _ map: PageMap, _ arena: Arena, _ r: inout ValidationReport) -> Int {
        let g = geometry
        let secret = state.pointee.secret
        let slab = Slab(page: page, map: map, arena: arena)
        let d = map[page]
        let carved = d.carved
        let start = slab.objectsStart
        let span = g.linkSpan(carved: carved)
        let poison = state.pointee.options.poison
        // The free list, with the bounds checks of `pop`, and at most `carved` steps.
        var free = 0
        var p = d.freeHead
        var broken = false
        while p != 0 {
            guard p &- start < span, (p &- start) % UInt(g.objectSize) == 0, free < Int(carved) else {
                broken = true
                break
            }
            if poison && !poisonIntact(p) { r.poisonDamaged += 1 }
            free += 1
            guard let next = FreeLink.read(from: p, offset: g.linkOffset, secret: secret, low: start, span: span) else {
                broken = true
                break
            }
            p = next
        }
        if broken {
            r.corruptFreeLists += 1
        } else if Int(d.inUse) + free != Int(carved) {
            r.accountingMismatches += 1
        }
        if state.pointee.bitmap.count(from: page, pages: g.slabPages) != Int(d.inUse) { r.accountingMismatches += 1 }
        if g.hasRedZone {
            var k: UInt32 = 0
            while k < carved {
                if !redZoneIntact(slab.object(g.carveIndex(k, slabStart: slab.start, secret: secret), g)) {
                    r.redZoneDamaged += 1
                }
                k += 1
            }
        }
        return Int(d.inUse)
    }
}

extension SlabCache {
    /// The head of the free list of the slab holding `object` (corruption tests: the
    /// link a refill reads first), or nil when the object is not one of this cache's
    /// or the list is empty. At quiescence.
    @_spi(Testing) public func freeListHead(ofSlabHolding object: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
        guard case .success(let page) = locate(UInt(bitPattern: object)) else { return nil }
        return UnsafeMutableRawPointer(bitPattern: heap.pointee.map[page].freeHead)
    }
}
