// CABI: the C functions of include/quarry.h, over one global Quarry instance.
// Neighbours: include/quarry.h (the prototypes; `@c @implementation` makes the compiler
// check every definition against them), CPlatform (the platform, chosen at build time),
// MallocFront and SlabCache (the work), Sources/QuarryLibc (the standard names, in C).
//
// Built two ways: on the host as the SwiftPM target QuarryC (a module importing Quarry,
// for tests), and for bare metal compiled into the Embedded module Quarry itself (with
// Sources/QuarryX86), where `-I include` makes the header importable.

import CQuarryHeader
import Synchronization

#if !hasFeature(Embedded)
#if QUARRY_CHECKED
@_spi(CABI) @_spi(Testing) import Quarry  // the test hooks at the end
#else
@_spi(CABI) import Quarry
#endif
#endif

/// The state behind the C functions.
///
/// Concurrency: `installed` is written only by `quarry_init`, which must run before
/// every other call and never while another call runs; afterwards it is only read.
/// The last error is the caller's (CCaller: a byte per CPU on bare metal, per thread
/// on the host): a diagnosis of its most recent refusal.
enum CABI {
    nonisolated(unsafe) static var installed: Quarry<CPlatform>? = nil
    /// The instance's epoch reclaimer (the quarry_epoch_* functions): written only by
    /// `quarry_epoch_init`, `quarry_epoch_destroy` and `quarry_init` (which abandons it
    /// with the old instance), all at quiescence; afterwards only read.
    nonisolated(unsafe) static var installedReclaimer: EpochReclaimer<CPlatform>? = nil

    /// The instance, for a caller with a CPU index (`CCaller.enter`: on the host, the
    /// calling thread's, claimed on its first call); nil before `quarry_init` or for a
    /// caller that has none (then `fail(.notInitialized)` reports `.tooManyThreads`).
    /// Every C function reaches the heap through here, so no call runs without an index.
    static var instance: Quarry<CPlatform>? {
        @inline(__always) get { CCaller.enter() ? installed : nil }
        set {
            // A new (or no) instance abandons the old one's reclaimer.
            installedReclaimer = nil
            installed = newValue
        }
    }

    /// Records `error` for `quarry_last_error` and returns its C value (out of line:
    /// only error paths call it). A call refused for want of `instance` when the
    /// caller has no CPU index is refused for that reason.
    @inline(never)
    static func fail(_ error: QuarryError) -> quarry_error {
        let error = error == .notInitialized && !CCaller.hasCPU ? QuarryError.tooManyThreads : error
        CCaller.setLastError(error.rawValue)
        return code(error)
    }

    @inline(__always)
    static func code(_ error: QuarryError) -> quarry_error { quarry_error(rawValue: UInt32(error.rawValue)) }

    /// The cache a C handle names (O(1): `Quarry.cache(handle:)`), or nil (then the
    /// caller returns `refuseHandle()`).
    @inline(__always)
    static func cache(_ handle: OpaquePointer?) -> SlabCache<CPlatform>? {
        instance?.cache(handle: UnsafeRawPointer(handle))
    }

    /// Records and returns why a handle was refused: `.notInitialized` before
    /// `quarry_init`, else `.invalidCache`.
    @inline(never)
    static func refuseHandle() -> quarry_error {
        fail(instance == nil ? .notInitialized : .invalidCache)
    }

    /// The cache of a handle on the hit paths: the handle's table entry alone in release
    /// builds (no load of `instance`: a handle exists only after `quarry_init`); the full
    /// check in checked builds. Only for a caller that already has its CPU index
    /// (`CCaller.hasCPU`: always on bare metal; on the host a thread's first call takes
    /// the out-of-line path, whose `instance` claims one). nil: take the out-of-line path.
    @inline(__always)
    static func hitCache(_ handle: OpaquePointer?) -> SlabCache<CPlatform>? {
        guard CCaller.hasCPU else { return nil }
        #if QUARRY_CHECKED
        return cache(handle)
        #else
        return SlabCache<CPlatform>(magicHandle: UnsafeRawPointer(handle))
        #endif
    }

    /// The instance on the hit paths of malloc and free: as `instance`, but a caller
    /// without its CPU index takes the out-of-line path (which claims one) instead of
    /// claiming it here, so that the hit path makes no call.
    static var hitInstance: Quarry<CPlatform>? {
        @inline(__always) get { CCaller.hasCPU ? installed : nil }
    }

    // The out-of-line halves of the hot entry points: each is the whole operation
    // (handle check with its reason, the checked path, the error recorded), entered
    // when the hit path could not serve, so that the hit path itself makes no call
    // (`make budgets` (c) checks the shipped library). The entry points still save a
    // register or two in their prologue, and a miss re-runs the hit before its slow
    // path: both cost the miss and the hit a few instructions.

    // A miss of a hit path whose handle check passed goes on with the cache alone, so
    // the hit path keeps one register for it (the handle is the state plus its generation).

    @inline(never)
    static func cacheAllocMissSlow(_ c: SlabCache<CPlatform>) -> UnsafeMutableRawPointer? {
        do { return try c.allocate() } catch { return pointer(.failure(error)) }
    }

    @inline(never)
    static func cacheFreeMissSlow(_ c: SlabCache<CPlatform>, _ object: UnsafeMutableRawPointer) -> quarry_error {
        do {
            try c.free(object)
            return QUARRY_OK
        } catch {
            return fail(error)
        }
    }

    @inline(never)
    static func cacheAllocSlow(_ handle: OpaquePointer?) -> UnsafeMutableRawPointer? {
        guard let c = cache(handle) else {
            _ = refuseHandle()
            return nil
        }
        return cacheAllocMissSlow(c)
    }

    @inline(never)
    static func cacheFreeSlow(_ handle: OpaquePointer?, _ object: UnsafeMutableRawPointer?) -> quarry_error {
        guard let c = cache(handle) else { return refuseHandle() }
        guard let object else { return QUARRY_OK }
        return cacheFreeMissSlow(c, object)
    }

    @inline(never)
    static func mallocSlow(_ size: Int) -> UnsafeMutableRawPointer? {
        guard let q = instance else { return pointer(.failure(.notInitialized)) }
        do { return try q.front.malloc(size) } catch { return pointer(.failure(error)) }
    }

    @inline(never)
    static func freeSlow(_ block: UnsafeMutableRawPointer) {
        guard let q = instance else {
            _ = fail(.notInitialized)
            return
        }
        do { try q.front.free(block) } catch { _ = fail(error) }
    }

    /// Copies a cache name (at most 31 bytes) into a C `char[32]`, NUL-terminated.
    static func copy(_ name: CacheName, to bytes: UnsafeMutableRawBufferPointer) {
        var i = 0
        name.forEachByte { byte in
            bytes[i] = byte
            i += 1
        }
        bytes[i] = 0
    }

    /// A C `size_t` above `Int.max` arrives as a negative `Int`; the front refuses
    /// negative sizes with `.sizeTooLarge`, so sizes pass through unchanged.
    @inline(never)
    static func pointer(_ result: Result<UnsafeMutableRawPointer, QuarryError>) -> UnsafeMutableRawPointer? {
        switch result {
        case .success(let p): return p
        case .failure(let error):
            _ = fail(error)
            return nil
        }
    }
}

// MARK: Set-up

@c @implementation
public func quarry_init(_ base: UnsafeMutableRawPointer?, _ size: Int) -> quarry_error {
    CABI.initialize(base, size, .success(CacheOptions()))
}

// MARK: Caches

@c @implementation
public func quarry_cache_create(
    _ name: UnsafePointer<CChar>?, _ size: Int, _ align: Int, _ ctor: quarry_ctor?
) -> OpaquePointer? {
    CABI.createCache(name, size, align, ctor, .success(CacheOptions()))
}

// The hot entry points (cache alloc and free, malloc and free) inline their hit path:
// the handle's magic word, then the magazine; misses and errors go out of line.

@c @implementation
public func quarry_cache_alloc(_ cache: OpaquePointer?) -> UnsafeMutableRawPointer? {
    guard let c = CABI.hitCache(cache) else { return CABI.cacheAllocSlow(cache) }
    return c.allocateIfHit(orElse: { CABI.cacheAllocMissSlow(c) })
}

@c @implementation
public func quarry_cache_free(_ cache: OpaquePointer?, _ object: UnsafeMutableRawPointer?) -> quarry_error {
    guard let object else { return CABI.cacheFreeSlow(cache, nil) }
    guard let c = CABI.hitCache(cache) else { return CABI.cacheFreeSlow(cache, object) }
    if c.freeIfHit(object) { return QUARRY_OK }
    return CABI.cacheFreeMissSlow(c, object)
}

@c @implementation
public func quarry_cache_alloc_bulk(
    _ cache: OpaquePointer?, _ n: Int, _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
) -> Int {
    guard let c = CABI.cache(cache) else {
        _ = CABI.refuseHandle()
        return 0
    }
    guard n != 0 else { return 0 }
    // A size_t above Int.max arrives negative: more objects than any arena holds.
    guard n > 0 else {
        _ = CABI.fail(.sizeTooLarge)
        return 0
    }
    guard let out else {
        _ = CABI.fail(.invalidCache)
        return 0
    }
    do {
        return try c.allocate(into: UnsafeMutableBufferPointer(start: out, count: n))
    } catch {
        _ = CABI.fail(error)
        return 0
    }
}

@c @implementation
public func quarry_cache_free_bulk(
    _ cache: OpaquePointer?, _ n: Int, _ ptrs: UnsafePointer<UnsafeMutableRawPointer?>?
) -> quarry_error {
    guard let c = CABI.cache(cache) else { return CABI.refuseHandle() }
    guard n != 0 else { return QUARRY_OK }
    guard n > 0 else { return CABI.fail(.sizeTooLarge) }
    guard let ptrs else { return CABI.fail(.invalidCache) }
    do {
        try c.free(UnsafeBufferPointer(start: ptrs, count: n))
        return QUARRY_OK
    } catch {
        return CABI.fail(error)
    }
}

@c @implementation
public func quarry_cache_shrink(_ cache: OpaquePointer?) -> Int {
    guard let c = CABI.cache(cache) else {
        _ = CABI.refuseHandle()
        return 0
    }
    return c.shrink()
}

@c @implementation
public func quarry_cache_destroy(_ cache: OpaquePointer?) -> quarry_error {
    guard let q = CABI.instance, let c = q.cache(handle: UnsafeRawPointer(cache)) else { return CABI.refuseHandle() }
    return q.destroy(c) == 0 ? QUARRY_OK : CABI.fail(.cacheNotEmpty)
}

// MARK: malloc family

@c @implementation
public func quarry_malloc(_ size: Int) -> UnsafeMutableRawPointer? {
    guard let q = CABI.hitInstance else { return CABI.mallocSlow(size) }
    return q.front.mallocIfHit(size, orElse: { CABI.mallocSlow(size) })
}

@c @implementation
public func quarry_free(_ ptr: UnsafeMutableRawPointer?) {
    guard let ptr else { return }
    if let q = CABI.hitInstance, q.front.freeIfHit(ptr) { return }
    CABI.freeSlow(ptr)
}

@c @implementation
public func quarry_free_sized(_ ptr: UnsafeMutableRawPointer?, _ size: Int) -> quarry_error {
    guard let q = CABI.instance else { return CABI.fail(.notInitialized) }
    do {
        try q.front.free(ptr, size: size)
        return QUARRY_OK
    } catch {
        return CABI.fail(error)
    }
}

@c @implementation
public func quarry_free_aligned_sized(_ ptr: UnsafeMutableRawPointer?, _ alignment: Int, _ size: Int) -> quarry_error {
    guard let q = CABI.instance else { return CABI.fail(.notInitialized) }
    do {
        try q.front.free(ptr, size: size, alignment: alignment)
        return QUARRY_OK
    } catch {
        return CABI.fail(error)
    }
}

@c @implementation
public func quarry_calloc(_ count: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let q = CABI.instance else { return CABI.pointer(.failure(.notInitialized)) }
    do { return try q.front.calloc(count, size) } catch { return CABI.pointer(.failure(error)) }
}

@c @implementation
public func quarry_realloc(_ ptr: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let q = CABI.instance else { return CABI.pointer(.failure(.notInitialized)) }
    do { return try q.front.realloc(ptr, size) } catch { return CABI.pointer(.failure(error)) }
}

@c @implementation
public func quarry_aligned_alloc(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let q = CABI.instance else { return CABI.pointer(.failure(.notInitialized)) }
    do { return try q.front.alignedAlloc(alignment: alignment, size: size) } catch {
        return CABI.pointer(.failure(error))
    }
}

@c @implementation
public func quarry_posix_memalign(
    _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ alignment: Int, _ size: Int
) -> Int32 {
    // POSIX: the alignment must be a power-of-two multiple of sizeof(void *).
    guard let out, alignment >= MemoryLayout<UnsafeRawPointer>.size, alignment & (alignment - 1) == 0 else {
        _ = CABI.fail(.badAlignment)
        return QUARRY_EINVAL
    }
    guard let q = CABI.instance else {
        _ = CABI.fail(.notInitialized)
        return QUARRY_ENOMEM
    }
    do {
        out.pointee = try q.front.alignedAlloc(alignment: alignment, size: size)
        return 0
    } catch {
        _ = CABI.fail(error)
        return error == .badAlignment ? QUARRY_EINVAL : QUARRY_ENOMEM
    }
}

@c @implementation
public func quarry_usable_size(_ ptr: UnsafeMutableRawPointer?) -> Int {
    guard let ptr, let q = CABI.instance else { return 0 }
    do { return try q.front.usableSize(ptr) } catch {
        _ = CABI.fail(error)
        return 0
    }
}

@c @implementation
public func quarry_shrink() -> Int {
    guard let q = CABI.instance else { return 0 }
    return q.shrink()
}

@c @implementation
public func quarry_drain_all() -> Int {
    guard let q = CABI.instance else { return 0 }
    let before = q.pageStatistics.pagesInUse
    q.front.shrink()
    // At quiescence (the documented contract): every CPU's magazines and every depot too.
    q.drainAll()
    return before - q.pageStatistics.pagesInUse
}

// MARK: Statistics and diagnosis

@c @implementation
public func quarry_cache_stats(_ cache: OpaquePointer?, _ out: UnsafeMutablePointer<quarry_cache_statistics>?)
    -> quarry_error
{
    guard let out else { return CABI.fail(CABI.instance == nil ? .notInitialized : .invalidCache) }
    guard let cache = CABI.cache(cache) else { return CABI.refuseHandle() }
    let s = cache.statistics
    var c = quarry_cache_statistics()
    withUnsafeMutableBytes(of: &c.name) { CABI.copy(s.name, to: $0) }
    c.requested_size = s.requestedSize
    c.object_size = s.objectSize
    c.alignment = s.alignment
    c.objects_per_slab = s.objectsPerSlab
    c.pages_per_slab = s.pagesPerSlab
    c.colors = s.colors
    c.active_objects = s.activeObjects
    c.total_objects = s.totalObjects
    c.high_water_objects = s.highWaterObjects
    c.partial_slabs = s.partialSlabs
    c.full_slabs = s.fullSlabs
    c.empty_slabs = s.emptySlabs
    c.pages = s.pages
    c.allocations = s.allocations
    c.frees = s.frees
    c.failures = s.failures
    c.slabs_created = s.slabsCreated
    c.slabs_released = s.slabsReleased
    c.errors = s.errors
    c.cached_objects = s.cachedObjects
    c.magazine_capacity = s.magazineCapacity
    c.allocation_hits = s.allocationHits
    c.allocation_misses = s.allocationMisses
    c.free_hits = s.freeHits
    c.free_misses = s.freeMisses
    c.depot_exchanges = s.depotExchanges
    c.refills = s.refills
    c.flushes = s.flushes
    c.quarantined_slabs = s.quarantinedSlabs
    c.leaked_objects = s.leakedObjects
    withUnsafeMutableBytes(of: &c.errors_by_kind) { kinds in
        // Sound: a C uint64_t[16] imports as a tuple of 16 UInt64, laid out as the array.
        let words = kinds.bindMemory(to: UInt64.self)
        var i = 0
        while i < words.count {
            if let e = QuarryError(rawValue: UInt8(QuarryError.firstCounted + i)) { words[i] = s.count(of: e) }
            i += 1
        }
    }
    out.pointee = c
    return QUARRY_OK
}

@c @implementation
public func quarry_heap_stats(_ out: UnsafeMutablePointer<quarry_heap_statistics>?) -> quarry_error {
    guard let q = CABI.instance else { return CABI.fail(.notInitialized) }
    guard let out else { return CABI.fail(.invalidCache) }
    let p = q.pageStatistics
    let m = q.front.statistics
    var h = quarry_heap_statistics()
    h.page_count = p.pageCount
    h.pages_in_use = p.pagesInUse
    h.free_run_pages = p.freeRunPages
    h.bump = p.bump
    h.high_water = p.highWater
    h.metadata_bytes = p.metadataBytes
    h.caches = q.cacheCount
    h.malloc_class_caches = m.classCaches
    h.live_spans = m.liveSpans
    h.span_pages = m.spanPages
    h.malloc_errors = m.errors
    let r = q.reclaimStatistics
    h.per_cpu_budget_bytes = r.budgetBytes
    h.per_cpu_charged_bytes = r.chargedBytes
    h.per_cpu_high_water_bytes = r.highWaterBytes
    h.reclaims = r.reclaims
    out.pointee = h
    return QUARRY_OK
}

/// Buffers slabinfo text and hands it to a C callback a line (or 127 bytes) at a time.
struct CallbackSink: ByteSink {
    let callback: quarry_write_fn
    let context: UnsafeMutableRawPointer?
    var buffer = InlineArray<128, UInt8>(repeating: 0)
    var count = 0

    mutating func write(_ byte: UInt8) {
        buffer[count] = byte
        count += 1
        if byte == UInt8(ascii: "\n") || count == 127 { flush() }
    }

    mutating func flush() {
        guard count > 0 else { return }
        let n = count
        let callback = self.callback
        let context = self.context
        buffer[n] = 0
        withUnsafePointer(to: &buffer) { storage in
            // Sound: an InlineArray stores its elements contiguously, so its address is
            // that of `count` UInt8s (CChar has the same layout), NUL-terminated above.
            callback(UnsafeRawPointer(storage).assumingMemoryBound(to: CChar.self), n, context)
        }
        count = 0
    }
}

@c @implementation
public func quarry_slabinfo(_ write: quarry_write_fn?, _ context: UnsafeMutableRawPointer?) {
    guard let q = CABI.instance else {
        _ = CABI.fail(.notInitialized)
        return
    }
    guard let write else {
        q.printSlabinfo()
        return
    }
    var sink = CallbackSink(callback: write, context: context)
    q.writeSlabinfo(to: &sink)
    sink.flush()
}

@c @implementation
public func quarry_last_error() -> quarry_error {
    quarry_error(rawValue: UInt32(CCaller.lastError))
}

@c @implementation
public func quarry_error_name(_ error: quarry_error) -> UnsafePointer<CChar>! {
    let name: StaticString
    if error == QUARRY_OK {
        name = "ok"
    } else if error.rawValue <= UInt32(UInt8.max), let e = QuarryError(rawValue: UInt8(error.rawValue)) {
        name = e.name
    } else {
        name = "unknown"
    }
    // Sound: a StaticString literal is stored NUL-terminated for its whole program lifetime.
    return UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)
}

@c @implementation
public func quarry_set_error_hook(_ hook: quarry_error_hook?) {
    // Sound: both are C function pointers of (uint8_t, pointer, uintptr_t); the
    // opaque quarry_cache * is the cache's handle, a raw pointer.
    CABI.instance?.setErrorHook(hook.map { unsafeBitCast($0, to: ErrorHook.self) })
}

@c @implementation
public func quarry_check_invariants() {
    CABI.instance?.checkInvariants()
}

@c @implementation
public func quarry_validate(_ out: UnsafeMutablePointer<quarry_validation>?) -> quarry_error {
    guard let q = CABI.instance else { return CABI.fail(.notInitialized) }
    var v = quarry_validation()
    if let failure = q.validate() {
        v.error = CABI.code(failure.error)
        v.address = failure.address
        withUnsafeMutableBytes(of: &v.cache) { CABI.copy(failure.cache, to: $0) }
    }
    out?.pointee = v
    return v.error
}

// MARK: Cache options, the caller's last error, test hooks (issue 11)

extension CABI {
    /// `quarry_init` and `quarry_init_with`: `mallocOptions` as read from C.
    static func initialize(
        _ base: UnsafeMutableRawPointer?, _ size: Int, _ mallocOptions: Result<CacheOptions, QuarryError>
    ) -> quarry_error {
        guard let base else { return fail(.arenaTooSmall) }
        guard CCaller.enter() else { return fail(.tooManyThreads) }
        do {
            // A size_t above Int.max: the arena ends at the top of the address space.
            instance = try Quarry<CPlatform>.initialize(
                base: base, size: size < 0 ? Int.max : size,
                mallocOptions: mallocOptions.get())
            return QUARRY_OK
        } catch {
            return fail(error)
        }
    }

    /// `quarry_cache_create` and `quarry_cache_create_with`: `options` as read from C.
    static func createCache(
        _ name: UnsafePointer<CChar>?, _ size: Int, _ align: Int, _ ctor: quarry_ctor?,
        _ options: Result<CacheOptions, QuarryError>
    ) -> OpaquePointer? {
        guard let q = instance else {
            _ = fail(.notInitialized)
            return nil
        }
        let cacheOptions: CacheOptions
        switch options {
        case .success(let o): cacheOptions = o
        case .failure(let error):
            _ = fail(error)
            return nil
        }
        guard size >= 0 else {
            _ = fail(.sizeTooLarge)
            return nil
        }
        var length = 0
        if let name { while length < 31 && name[length] != 0 { length += 1 } }
        // Sound: `length` bytes of `name` were just read as CChar; UInt8 has the same layout.
        let bytes = UnsafeRawPointer(name).map {
            UnsafeBufferPointer(start: $0.assumingMemoryBound(to: UInt8.self), count: length)
        }
        let cacheName = CacheName(utf8: bytes ?? UnsafeBufferPointer(start: nil, count: 0))
        // Sound: both are C function pointers taking one pointer; C cannot express the
        // non-null guarantee Swift's ObjectConstructor type carries (Quarry never passes null).
        let constructor = ctor.map { unsafeBitCast($0, to: ObjectConstructor.self) }
        do {
            let cache = try q.createCache(
                name: cacheName, size: size, alignment: align == 0 ? 8 : align,
                constructor: constructor, options: cacheOptions)
            return OpaquePointer(cache.handle)
        } catch {
            _ = fail(error)
            return nil
        }
    }

    /// The options a C `quarry_cache_options` asks for, read by quarry.h's size rule:
    /// the first `struct_size` bytes (missing fields are defaults); refused
    /// (`.badOptions`) when `struct_size` is below one `size_t` or above a page (no
    /// options struct is that long), when `reserved` is not zero, or when a byte past
    /// this library's struct is not zero. NULL is the defaults.
    static func options(_ pointer: UnsafePointer<quarry_cache_options>?) -> Result<CacheOptions, QuarryError> {
        guard let pointer else { return .success(CacheOptions()) }
        let raw = UnsafeRawPointer(pointer)
        let known = MemoryLayout<quarry_cache_options>.size
        // Sound: every version of the struct starts with its size_t struct_size.
        let given = raw.load(as: Int.self)
        guard given >= MemoryLayout<Int>.size && given <= 4096 else { return .failure(.badOptions) }
        var i = known
        while i < given {
            if raw.load(fromByteOffset: i, as: UInt8.self) != 0 { return .failure(.badOptions) }
            i += 1
        }
        var c = quarry_cache_options()
        withUnsafeMutableBytes(of: &c) {
            $0.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: min(given, known)))
        }
        guard c.reserved.0 == 0 && c.reserved.1 == 0 && c.reserved.2 == 0 else { return .failure(.badOptions) }
        // A red zone above Int.max arrives negative: SlabGeometry refuses it (.sizeTooLarge).
        return .success(
            CacheOptions(
                randomizeFreeSlots: c.randomize_slots != 0, poison: c.poison != 0, redZone: c.red_zone,
                zeroOnAllocate: c.zero_on_alloc != 0, zeroOnFree: c.zero_on_free != 0, typeStable: c.type_stable != 0))
    }
}

@c @implementation
public func quarry_init_with(
    _ base: UnsafeMutableRawPointer?, _ size: Int, _ mallocOptions: UnsafePointer<quarry_cache_options>?
) -> quarry_error {
    CABI.initialize(base, size, CABI.options(mallocOptions))
}

@c @implementation
public func quarry_cache_create_with(
    _ name: UnsafePointer<CChar>?, _ size: Int, _ align: Int, _ ctor: quarry_ctor?,
    _ options: UnsafePointer<quarry_cache_options>?
) -> OpaquePointer? {
    CABI.createCache(name, size, align, ctor, CABI.options(options))
}

@c @implementation
public func quarry_clear_error() {
    CCaller.setLastError(0)
}

// MARK: Deferred freeing (EpochReclaimer)

extension CABI {
    /// The reclaimer, for a caller with a CPU index (claimed here on the host, as
    /// `instance` does); nil without one or before `quarry_epoch_init` (then
    /// `fail(.notInitialized)` reports `.tooManyThreads` for a caller without an index).
    static var reclaimer: EpochReclaimer<CPlatform>? {
        @inline(__always) get { CCaller.enter() && installed != nil ? installedReclaimer : nil }
    }
}

@c @implementation
public func quarry_epoch_init(_ retiredPerCPU: Int, _ stallHook: quarry_epoch_stall_hook?) -> quarry_error {
    guard let q = CABI.instance else { return CABI.fail(.notInitialized) }
    guard CABI.installedReclaimer == nil else { return CABI.fail(.busy) }
    // A size_t above Int.max arrives negative: beyond any bound.
    guard retiredPerCPU >= 0 else { return CABI.fail(.sizeTooLarge) }
    // quarry_epoch_stall_hook imports as EpochStallHook's type: @convention(c) (Int, UInt) -> Void.
    do {
        CABI.installedReclaimer = try q.createReclaimer(
            retiredPerCPU: retiredPerCPU == 0 ? 256 : retiredPerCPU,
            stallHook: stallHook)
        return QUARRY_OK
    } catch {
        return CABI.fail(error)
    }
}

// enter and exit inline the reclaimer's own enter and exit (EpochReclaimer: about 20
// instructions, one locked one); only a caller without a reclaimer (or, on the host,
// without its CPU index yet) goes out of line.

@c @implementation
public func quarry_epoch_enter() -> quarry_error {
    guard CCaller.hasCPU, let r = CABI.installedReclaimer else { return CABI.epochEnterSlow() }
    r.enter()
    return QUARRY_OK
}

@c @implementation
public func quarry_epoch_exit() {
    guard CCaller.hasCPU, let r = CABI.installedReclaimer else {
        preconditionFailure("quarry_epoch_exit without quarry_epoch_enter")
    }
    r.exit()
}

extension CABI {
    @inline(never)
    static func epochEnterSlow() -> quarry_error {
        guard let r = reclaimer else { return fail(.notInitialized) }
        r.enter()
        return QUARRY_OK
    }
}

@c @implementation
public func quarry_epoch_retire(_ cache: OpaquePointer?, _ object: UnsafeMutableRawPointer?) -> quarry_error {
    guard let r = CABI.reclaimer else { return CABI.fail(.notInitialized) }
    guard let c = CABI.cache(cache) else { return CABI.refuseHandle() }
    guard let object else { return QUARRY_OK }
    do {
        try r.retire(object, to: c)
        return QUARRY_OK
    } catch {
        return CABI.fail(error)
    }
}

@c @implementation
public func quarry_epoch_retire_block(_ block: UnsafeMutableRawPointer?) -> quarry_error {
    guard let r = CABI.reclaimer, let q = CABI.installed else { return CABI.fail(.notInitialized) }
    guard let block else { return QUARRY_OK }
    do {
        try r.retire(block: block, from: q.front)
        return QUARRY_OK
    } catch {
        return CABI.fail(error)
    }
}

@c @implementation
public func quarry_epoch_poll() -> Int {
    CABI.reclaimer?.poll() ?? 0
}

@c @implementation
public func quarry_epoch_synchronize() {
    CABI.reclaimer?.synchronize()
}

@c @implementation
public func quarry_epoch_stats(_ out: UnsafeMutablePointer<quarry_epoch_statistics>?) -> quarry_error {
    guard let r = CABI.reclaimer else { return CABI.fail(.notInitialized) }
    guard let out else { return CABI.fail(.invalidCache) }
    let s = r.statistics
    // UInt64(word:): the generic conversions of a 32-bit UInt go through `words`, an
    // Array, which the library's -no-allocations build refuses.
    var e = quarry_epoch_statistics()
    e.epoch = UInt64(word: s.epoch)
    e.advances = UInt64(word: s.advances)
    e.retired = UInt64(word: s.retired)
    e.freed = UInt64(word: s.freed)
    e.refused = UInt64(word: s.refused)
    e.blocked_advances = UInt64(word: s.blockedAdvances)
    e.free_errors = UInt64(word: s.freeErrors)
    e.stalls = UInt64(word: s.stalls)
    e.capacity = s.capacity
    e.cpus = s.cpus
    e.pending = s.pending
    e.high_water = s.highWater
    e.last_stalling_cpu = s.lastStallingCPU
    out.pointee = e
    return QUARRY_OK
}

@c @implementation
public func quarry_epoch_destroy() -> quarry_error {
    guard let r = CABI.reclaimer else { return CABI.fail(.notInitialized) }
    let cpus = r.statistics.cpus
    var i = 0
    while i < cpus {
        if r.statistics(cpu: i).inside { return CABI.fail(.busy) }
        i += 1
    }
    r.destroy()
    CABI.installedReclaimer = nil
    return QUARRY_OK
}

#if QUARRY_CHECKED
// Declared in quarry.h under QUARRY_TESTING, which the Swift side does not define, so
// these are plain `@c` (no @implementation): HeaderTests and the C scenario (built with
// QUARRY_TESTING) check them against the prototypes.

@c(quarry_test_fail_page_request)
public func quarry_test_fail_page_request(_ after: Int) -> quarry_error {
    guard let q = CABI.instance else { return CABI.fail(.notInitialized) }
    // A size_t above Int.max arrives negative: a request no program reaches, as 0 (none).
    q.failPageRequest(after: max(after, 0))
    return QUARRY_OK
}

@c(quarry_test_injected_failures)
public func quarry_test_injected_failures() -> Int {
    CABI.instance?.injectedPageFailures.count ?? 0
}
#endif
