// MallocFront: malloc, free, calloc, realloc and aligned allocation of any size, over one
// slab cache per size class and spans of pages above the largest class.
// Neighbours: SizeClasses (the class formula), SlabCache (one per class, created on first
// use), Span (large and over-page-aligned blocks), HeapState (holds FrontState),
// Sources/QuarryC (the C names of these operations).

import Synchronization

/// The front's state, inside HeapState (allocator-owned memory; nothing is allocated
/// through the Swift runtime).
///
/// Concurrency and interrupt contract:
/// - `classes[i]` is the address of class i's CacheState, or 0 before its first use. It
///   is written only inside a scope of `creation` (the front lock) with a releasing
///   store, and read with an acquiring load and no lock (the fast path). Only
///   `MallocFront.shrink`, at quiescence, clears it.
/// - `creation` (the front lock) owns `ClassCreation`: creating class caches and
///   `shrink` run inside its scope. A re-entrant first allocation of a class (from a
///   constructor) only tries it, and gets `.outOfMemory` instead of waiting.
/// - `errors` are atomic counters (any context, no lock).
/// - Lock order: the front lock first, then the registry lock, one depot lock, one
///   cache lock, the page lock.
/// - `malloc`, `free` and the rest may run wherever `SlabCache.allocate` and `free` may
///   (see SlabCache); the first allocation of a class also takes the front lock and the
///   cache-of-caches lock.
///
/// Invariants (checked by `MallocFront.checkInvariants`):
/// - `classes[i] != 0` ⇒ it names a live cache with
///   `objectSize == SizeClasses.size(ofClass: i)` and `alignment == SizeClasses.alignment(ofClass: i)`
/// - no two slots name the same cache
struct FrontState: ~Copyable {
    /// The front lock and what it guards.
    let creation: SpinLocked<ClassCreation>
    /// One slot per size class; `InlineArray`'s count must equal `SizeClasses.count`.
    let classes: InlineArray<73, Atomic<UInt>>
    /// Refused operations the front detected itself, by kind (`QuarryError.tableIndex`);
    /// errors on a pointer into a class cache's slab are counted by that cache.
    let errors: ErrorTable<Atomic<UInt>>
    /// The options every class cache is created with (`Quarry.initialize`'s
    /// `mallocOptions`): no red zone (a class's stride is its size) and not type-stable.
    let options: CacheOptions

    init(_ creation: UnsafeMutablePointer<ClassCreation>, heap: UnsafeMutablePointer<HeapState>, options: CacheOptions)
    {
        self.creation = SpinLocked(creation, heap: heap)
        classes = InlineArray { _ in Atomic<UInt>(0) }
        errors = InlineArray { _ in Atomic<UInt>(0) }
        self.options = options
    }
}

/// What the front lock guards (`FrontState.creation`): the writes of the class slots,
/// which only its scope makes (its mutating methods). It holds no data of its own (the
/// slots are atomics, read without the lock); its record in the heap header is empty.
struct ClassCreation: LockedState {
    /// The cache of class `index`: the one another CPU just created, else a new one,
    /// listed in its slot.
    mutating func create<P>(_ index: Int, for quarry: Quarry<P>) -> Result<SlabCache<P>, QuarryError> {
        let existing = quarry.heap.pointee.front.classes[index].load(ordering: .acquiring)
        if let state = UnsafeMutablePointer<CacheState>(bitPattern: existing) {
            return .success(SlabCache(state: state))
        }
        var name = CacheName("malloc-")
        name.write(UInt64(word: UInt(SizeClasses.size(ofClass: index))))
        let cache: SlabCache<P>
        do {
            cache = try quarry.createCacheUnchecked(
                name: name, size: SizeClasses.size(ofClass: index), alignment: SizeClasses.alignment(ofClass: index),
                constructor: nil, options: quarry.heap.pointee.front.options)
        } catch {
            return .failure(error)
        }
        cache.state.pointee.handleMagic.store(CacheState.classMagic, ordering: .releasing)
        quarry.heap.pointee.front.classes[index].store(UInt(bitPattern: cache.state), ordering: .releasing)
        return .success(cache)
    }

    /// Drains and shrinks every class cache and removes those that hold no object
    /// (`MallocFront.shrink`, at quiescence).
    mutating func shrink<P>(_ quarry: Quarry<P>) {
        var i = 0
        while i < SizeClasses.count {
            let address = quarry.heap.pointee.front.classes[i].load(ordering: .acquiring)
            if let state = UnsafeMutablePointer<CacheState>(bitPattern: address) {
                let cache = SlabCache<P>(state: state)
                cache.drainAllSlots()
                _ = cache.shrinkUnchecked()
                if cache.activeObjects == 0 {
                    quarry.heap.pointee.front.classes[i].store(0, ordering: .releasing)
                    _ = quarry.destroyUnchecked(cache)
                }
            }
            i += 1
        }
    }
}

/// A snapshot of the malloc front. Class caches have their own `CacheStatistics`
/// (they are ordinary caches named `malloc-<size>`).
public struct MallocStatistics: Sendable {
    /// Class caches created so far (and not removed by `shrink`).
    public var classCaches: Int
    /// Spans (blocks above `SizeClasses.largest`, or aligned beyond a page) allocated and not freed.
    public var liveSpans: Int
    /// Pages the live spans hold.
    public var spanPages: Int
    /// Spans allocated, ever.
    public var spanAllocations: UInt64
    /// Spans freed, ever.
    public var spanFrees: UInt64
    /// Span allocations refused for lack of memory.
    public var spanFailures: UInt64
    /// Refused operations counted by the front, all kinds.
    public var errors: UInt64
    let errorCounts: ErrorTable<UInt64>

    /// How many times the front itself reported `error`.
    public func count(of error: QuarryError) -> UInt64 {
        guard let i = error.tableIndex else { return 0 }
        return errorCounts[i]
    }
}

/// The malloc-style interface of one Quarry instance (`quarry.front`).
///
/// - Sizes up to `SizeClasses.largest` come from the class caches, larger ones from spans.
/// - Size 0 is a unique object of the smallest class (never nil): `malloc(0)` twice gives
///   two distinct pointers, each to be freed.
/// - A negative size (a C `size_t` above `Int.max`) and a size no arena could hold are
///   `.sizeTooLarge`; nothing overflows.
/// - `free` needs no size; `free(_:size:alignment:)` checks a hint (C23 `free_sized`).
/// - Alignment: every object is aligned to the largest power of two dividing its class
///   size: 16 or more for every request above 8 bytes, 8 for the rest; `alignedAlloc`
///   serves any power of two, up to the page size from classes, beyond from spans.
/// - A refused call changes nothing but an error counter (the front's or the cache's).
public struct MallocFront<P: Platform> {
    let heap: UnsafeMutablePointer<HeapState>

    init(heap: UnsafeMutablePointer<HeapState>) { self.heap = heap }

    // MARK: Allocate

    /// `size` bytes, aligned to the largest power of two dividing its class size
    /// (16 or more when `size > 8`).
    ///
    /// Fast path (class cache exists): one compare, a branch, a leading-zero count, one
    /// acquiring load of the class slot, then `SlabCache.allocate`.
    @inline(__always)
    public func malloc(_ size: Int) throws(QuarryError) -> UnsafeMutableRawPointer {
        // The unsigned compare also sends negative sizes to the span path, which refuses them.
        if UInt(bitPattern: size) <= UInt(SizeClasses.largest) {
            return try classCache(SizeClasses.index(forSize: size)).allocate()
        }
        return try allocateSpan(size, alignment: Geometry.pageSize)
    }

    /// `size` bytes aligned to `alignment` (any power of two; below 8 means 8). Up to
    /// the page size the object comes from the smallest class whose size is a multiple
    /// of `alignment`; beyond, from a span whose first page is aligned.
    public func alignedAlloc(alignment: Int, size: Int) throws(QuarryError) -> UnsafeMutableRawPointer {
        guard alignment > 0, alignment & (alignment - 1) == 0 else { throw .badAlignment }
        let a = max(alignment, Geometry.granule)
        if a <= Geometry.pageSize, UInt(bitPattern: size) <= UInt(SizeClasses.largest) {
            return try classCache(SizeClasses.index(forSize: size, alignment: a)).allocate()
        }
        return try allocateSpan(size, alignment: max(a, Geometry.pageSize))
    }

    /// `count * size` zeroed bytes; `.sizeTooLarge` if the product overflows. Always
    /// zero-fills: a page fresh from the bump pointer may hold anything. A zero factor
    /// gives a smallest block (as `malloc(0)`) whatever the other one is, also a
    /// negative one (from C, a `size_t` above `Int.max`): the product is 0, nothing
    /// overflows. Otherwise a negative factor is `.sizeTooLarge` (from C, the product
    /// overflows or exceeds `Int.max`).
    public func calloc(_ count: Int, _ size: Int) throws(QuarryError) -> UnsafeMutableRawPointer {
        if count == 0 || size == 0 { return try malloc(0) }
        guard count > 0, size > 0 else { throw .sizeTooLarge }
        let (total, overflow) = count.multipliedReportingOverflow(by: size)
        guard !overflow else { throw .sizeTooLarge }
        let pointer = try malloc(total)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: total)
        return pointer
    }

    /// Resizes the block at `pointer` to `size` bytes, keeping its first
    /// `min(old usable size, size)` bytes.
    /// - `nil` is `malloc(size)`.
    /// - In place when `size` maps to the block's own class, or for a span when the
    ///   new page count is the same or smaller (the trailing pages are given back).
    /// - Otherwise a new block (class or span) is allocated, the bytes copied and the
    ///   old block freed. On any error the old block is untouched and still owned.
    /// - Size 0 is the smallest class, as for `malloc(0)`: never frees without
    ///   returning a block, so a thrown error always means "nothing changed".
    /// - The alignment of an `alignedAlloc` block is not kept by a move.
    public func realloc(_ pointer: UnsafeMutableRawPointer?, _ size: Int) throws(QuarryError) -> UnsafeMutableRawPointer
    {
        guard let pointer else { return try malloc(size) }
        guard size >= 0 else { throw .sizeTooLarge }
        let oldBytes: Int
        switch try resolve(UInt(bitPattern: pointer), live: true) {
        case .object(let cache, let index):
            if size <= SizeClasses.largest && SizeClasses.index(forSize: size) == index { return pointer }
            oldBytes = cache.objectSize
        case .span(let span):
            let oldPages = span.pages
            if size > SizeClasses.largest {
                guard let newPages = Span<P>.pages(for: size, heap: heap) else { throw .sizeTooLarge }
                if newPages == oldPages { return pointer }
                if newPages < oldPages {
                    span.shrink(to: newPages)
                    return pointer
                }
            }
            oldBytes = span.byteCount
        }
        let moved = try malloc(size)
        moved.copyMemory(from: pointer, byteCount: min(oldBytes, size))
        do {
            try free(pointer)
        } catch {
            preconditionFailure("MallocFront: a block validated by realloc could not be freed")
        }
        return moved
    }

    // MARK: Free

    /// Frees the block at `pointer` (from `malloc`, `calloc`, `realloc` or
    /// `alignedAlloc`); `nil` is a no-op. O(1): the page map names the class cache or
    /// span. A pointer the front did not hand out is refused with the reason (outside
    /// the arena, metadata, free page, interior, misaligned, another cache's object,
    /// double free) and nothing changes but an error counter.
    @inline(__always)
    public func free(_ pointer: UnsafeMutableRawPointer?) throws(QuarryError) {
        guard let pointer else { return }
        let address = UInt(bitPattern: pointer)
        if freeHit(address) { return }
        try freeChecked(address)
    }

    /// The hit path of `free`: true when the block was an object on a class cache's
    /// slab head page (resolved once, `classCacheOfSlabHead`) and went into this CPU's
    /// magazine; false for anything else (then `freeChecked` decides and reports).
    @inline(__always)
    func freeHit(_ address: UInt) -> Bool {
        guard let cache = classCacheOfSlabHead(address) else { return false }
        return cache.freeLocatedHit(address)
    }

    /// `free` when the hit path did not take the block: the same first step, then the
    /// cache's checked path; else the whole door (`PageMap.lookup`: tail pages, spans,
    /// errors), whose owner `resolve` and the cache's checked path are handed.
    @inline(never)
    func freeChecked(_ address: UInt) throws(QuarryError) {
        if let cache = classCacheOfSlabHead(address) {
            try cache.freeLocated(address)
            return
        }
        let owner = try lookup(address)
        switch try resolve(address, owner, live: false) {
        case .object(let cache, _):
            try cache.freeChecked(address, in: owner)
        case .span(let span):
            if let error = span.free() {
                record(error)
                throw error
            }
        }
    }

    /// `free` with a hint (C23 `free_sized`, `free_aligned_sized`): `size` and
    /// `alignment` as given to the call that allocated the block (or the last
    /// `realloc`, with alignment 1). A hint that maps to another class or span length
    /// than the block's is `.sizeMismatch`, and the block is not freed.
    public func free(_ pointer: UnsafeMutableRawPointer?, size: Int, alignment: Int = 1) throws(QuarryError) {
        guard let pointer else { return }
        guard alignment > 0, alignment & (alignment - 1) == 0 else { throw .badAlignment }
        let block = try resolve(UInt(bitPattern: pointer), live: true)
        let a = max(alignment, Geometry.granule)
        let matches: Bool
        switch block {
        case .object(_, let index):
            matches =
                a <= Geometry.pageSize && UInt(bitPattern: size) <= UInt(SizeClasses.largest)
                && SizeClasses.index(forSize: size, alignment: a) == index
        case .span(let span):
            let small = a <= Geometry.pageSize && UInt(bitPattern: size) <= UInt(SizeClasses.largest)
            matches = !small && size >= 0 && Span<P>.pages(for: size, heap: heap) == span.pages
        }
        guard matches else {
            record(.sizeMismatch)
            throw .sizeMismatch
        }
        try free(pointer)
    }

    /// Bytes usable at `pointer`: its class size, or its span's pages.
    public func usableSize(_ pointer: UnsafeRawPointer) throws(QuarryError) -> Int {
        switch try resolve(UInt(bitPattern: pointer), live: true) {
        case .object(let cache, _): return cache.objectSize
        case .span(let span): return span.byteCount
        }
    }

    // MARK: Page-map lookup

    /// What the page map says lives at an address.
    enum Block {
        case object(SlabCache<P>, classIndex: Int)
        case span(Span<P>)
    }

    /// The class cache of `address` when it is an object boundary in the first page of
    /// a live slab of a class cache, else nil (then `resolve` decides, and names any
    /// error). The free hit path's door: the cache then checks only the object's
    /// state (`SlabCache.freeLocated`). No error is recorded here.
    @inline(__always)
    func classCacheOfSlabHead(_ address: UInt) -> SlabCache<P>? {
        guard let head = PageMap.slabHead(of: address, in: heap),
            let state = UnsafeMutablePointer<CacheState>(bitPattern: head.entry.cache)
        else { return nil }
        // Sound: a live slab's descriptor names its live cache's state.
        guard state.pointee.handleMagic.load(ordering: .relaxed) == CacheState.classMagic,
            state.pointee.geometry.objectIndex(offset: address &- head.first, carved: head.entry.carved) != nil
        else { return nil }
        return SlabCache<P>(state: state)
    }

    /// The class-cache object or span that starts at `address`. With `live`, an object
    /// must also be allocated and start on an object boundary (without it,
    /// `SlabCache.free` checks that). Every refusal is counted: by the class cache when
    /// the address lies in one of its slabs, else by the front. O(1).
    func resolve(_ address: UInt, live: Bool) throws(QuarryError) -> Block {
        try resolve(address, lookup(address), live: live)
    }

    /// The owner of `address` by the door (`PageMap.lookup`); a refusal is counted by the front.
    @inline(__always)
    func lookup(_ address: UInt) throws(QuarryError) -> PageOwner {
        switch PageMap.lookup(address, in: heap) {
        case .success(let owner): return owner
        case .failure(var error):
            // Nothing owns the page. Below the high-water mark it held a block once, whose
            // pages were given back when it was freed (a span, or a slab emptied by its last
            // free): freed twice, whatever the block's size. Above it: never used.
            if error == .freePage, case .page(let page) = heap.pointee.arena.classify(address),
                page.raw < heap.pointee.usedLimit.load(ordering: .acquiring)
            {
                error = .doubleFree
            }
            record(error)
            throw error
        }
    }

    /// `resolve` for an address whose owner the door already named.
    func resolve(_ address: UInt, _ owner: PageOwner, live: Bool) throws(QuarryError) -> Block {
        let h = heap
        let head: SlabHead
        switch owner {
        case .span(let page):
            guard address == h.pointee.arena.address(of: page) else { return try refuse(.interiorPointer) }
            return .span(Span(heap: h, page: page))
        case .slab(let slab):
            head = slab
        }
        // A slab: it must be one of the class caches' (its object size names the slot).
        // Sound: a live slab's descriptor names its live cache's state.
        let word = head.entry.cache
        guard let state = UnsafeMutablePointer<CacheState>(bitPattern: word) else { return try refuse(.wrongCache) }
        let size = state.pointee.geometry.objectSize
        guard size <= SizeClasses.largest else { return try refuse(.wrongCache) }
        let index = SizeClasses.index(forSize: size)
        guard h.pointee.front.classes[index].load(ordering: .acquiring) == word else { return try refuse(.wrongCache) }
        let cache = SlabCache<P>(state: state)
        if live {
            if case .failure(let error) = cache.locate(address, in: owner) {
                cache.record(error)
                throw error
            }
            guard cache.isUserHeld(address) else {
                cache.record(.doubleFree)
                throw .doubleFree
            }
        }
        return .object(cache, classIndex: index)
    }

    private func refuse(_ error: QuarryError) throws(QuarryError) -> Block {
        record(error)
        throw error
    }

    /// Counts an error the front detected itself (lock-free: any context).
    func record(_ error: QuarryError) {
        heap.pointee.callErrorHook(error, nil, 0)
        guard let i = error.tableIndex else { return }
        heap.pointee.front.errors[i].wrappingAdd(1, ordering: .relaxed)
    }

    // MARK: Class caches and spans

    /// The cache of class `index`, created on first use.
    @inline(__always)
    func classCache(_ index: Int) throws(QuarryError) -> SlabCache<P> {
        let address = heap.pointee.front.classes[index].load(ordering: .acquiring)
        // Sound: a non-zero slot names a live CacheState (see FrontState).
        if let state = UnsafeMutablePointer<CacheState>(bitPattern: address) { return SlabCache(state: state) }
        return try createClassCache(index)
    }

    /// Creates the cache of class `index` (`malloc-<size>`) unless another CPU just did.
    /// A re-entrant call (its CPU holds a Quarry lock) cannot wait for the front's lock
    /// and gets `.outOfMemory` when it is taken. Out of memory on a CPU that holds no
    /// Quarry lock, it reclaims (Quarry+Reclaim) and tries once more.
    @inline(never)
    func createClassCache(_ index: Int) throws(QuarryError) -> SlabCache<P> {
        do {
            return try createClassCacheOnce(index)
        } catch {
            guard error == .outOfMemory, Quarry<P>(heap: heap).reclaimBeforeFailing() else { throw error }
            return try createClassCacheOnce(index)
        }
    }

    private func createClassCacheOnce(_ index: Int) throws(QuarryError) -> SlabCache<P> {
        let h = heap
        let result = h.pointee.front.creation.tryWithLock(P.self) { creation -> Result<SlabCache<P>, QuarryError> in
            creation.create(index, for: Quarry<P>(heap: h))
        }
        guard let result else { throw .outOfMemory }
        return try result.get()
    }

    /// A span of at least `size` bytes aligned to `alignment` (at least the page size).
    /// Out of memory on a CPU that holds no Quarry lock, it reclaims (Quarry+Reclaim)
    /// and tries once more.
    @inline(never)
    func allocateSpan(_ size: Int, alignment: Int) throws(QuarryError) -> UnsafeMutableRawPointer {
        guard size >= 0, let pages = Span<P>.pages(for: size, heap: heap) else { throw .sizeTooLarge }
        var result = Span<P>.allocate(pages: pages, alignment: alignment, heap: heap)
        if case .failure(.outOfMemory) = result, Quarry<P>(heap: heap).reclaimBeforeFailing() {
            result = Span<P>.allocate(pages: pages, alignment: alignment, heap: heap)
        }
        switch result {
        case .success(let span):
            // Sound: the span's pages lie in the arena and were just handed to this caller.
            return UnsafeMutableRawPointer(bitPattern: span.address)!
        case .failure(let error):
            throw error
        }
    }

    /// True when `state` is one of the class caches (they must not be destroyed while listed).
    func isClassCache(_ state: UnsafeMutablePointer<CacheState>) -> Bool {
        state.pointee.handleMagic.load(ordering: .relaxed) == CacheState.classMagic
    }

    // MARK: Shrink, statistics, invariants

    /// Empties every class cache's per-CPU magazines and depot into its slabs, releases
    /// every empty slab of the class caches, removes the class caches that hold no
    /// object (they are created again on demand), then shrinks the cache of caches.
    /// Returns the number of pages given back. Call it at quiescence only: no other
    /// CPU or interrupt handler may be inside the front. Not interrupt-safe.
    @discardableResult
    public func shrink() -> Int {
        heap.pointee.requireNotReentrant(P.self)
        let quarry = Quarry<P>(heap: heap)
        let before = quarry.pageStatistics.pagesInUse
        heap.pointee.front.creation.withLock(P.self) { creation in creation.shrink(quarry) }
        quarry.cacheOfCaches.shrink()
        quarry.magazineCache.shrink()
        return before - quarry.pageStatistics.pagesInUse
    }

    /// A snapshot of the front (see ``MallocStatistics``); the span counters are read under
    /// the page lock. Thread context only, not interrupt-safe.
    public var statistics: MallocStatistics {
        var classCaches = 0
        var i = 0
        while i < SizeClasses.count {
            if heap.pointee.front.classes[i].load(ordering: .acquiring) != 0 { classCaches += 1 }
            i += 1
        }
        var errors = ErrorTable<UInt64>(repeating: 0)
        var total: UInt64 = 0
        for k in 0..<QuarryError.countedKinds {
            errors[k] = UInt64(word: heap.pointee.front.errors[k].load(ordering: .relaxed))
            total += errors[k]
        }
        let s = heap.pointee.pages.withLock(P.self) { pages in pages.spans }
        return MallocStatistics(
            classCaches: classCaches, liveSpans: s.live, spanPages: s.pages,
            spanAllocations: s.allocations, spanFrees: s.frees, spanFailures: s.failures,
            errors: total, errorCounts: errors)
    }

    /// Traps on the first broken invariant of FrontState (see there). Quiescent only.
    public func checkInvariants() {
        precondition(SizeClasses.count == 73, "MallocFront: slot count differs from SizeClasses.count")
        var i = 0
        while i < SizeClasses.count {
            let address = heap.pointee.front.classes[i].load(ordering: .acquiring)
            if let state = UnsafeMutablePointer<CacheState>(bitPattern: address) {
                precondition(
                    state.pointee.magic.load(ordering: .relaxed) == CacheState.liveMagic,
                    "MallocFront: slot names a dead cache")
                precondition(
                    state.pointee.geometry.objectSize == SizeClasses.size(ofClass: i),
                    "MallocFront: class cache object size")
                precondition(
                    state.pointee.geometry.alignment == SizeClasses.alignment(ofClass: i),
                    "MallocFront: class cache alignment")
                var j = i + 1
                while j < SizeClasses.count {
                    precondition(
                        heap.pointee.front.classes[j].load(ordering: .acquiring) != address,
                        "MallocFront: one cache in two slots")
                    j += 1
                }
            }
            i += 1
        }
    }
}

extension Quarry {
    /// The malloc-style interface of this instance. Its class caches are created on
    /// first use of each class, so an unused front costs nothing but its slots.
    public var front: MallocFront<P> { MallocFront(heap: heap) }
}

extension SlabCache {
    /// Counts an error found on this cache's object by another layer (the front).
    /// Lock-free: any context.
    func record(_ error: QuarryError) {
        report(error, 0)
    }
}
