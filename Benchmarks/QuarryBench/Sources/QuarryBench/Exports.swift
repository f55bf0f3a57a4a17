// Exports: the C ABI the benchmark runner calls (declared for C in Benchmarks/runner/quarry_bench.h).
// Neighbours: BenchPlatform (the platform), Benchmarks/runner/peer_quarry*.c (the callers).

import CQuarryBench
import Quarry
#if canImport(Glibc)
import Glibc
#endif

typealias BenchQuarry = Quarry<BenchPlatform>
typealias BenchCache = SlabCache<BenchPlatform>

/// The one instance, set by `qb_init`. Never touched on the allocate/free path: the
/// runner passes the cache handle back with every call.
nonisolated(unsafe) var benchQuarry: BenchQuarry? = nil

/// A cache handle travels through C as the raw pointer it wraps. Sound while
/// `SlabCache` is a single pointer-sized stored property (checked in `qb_init`); the
/// cast costs no instruction, where a boxed handle would cost a load per call.
@inline(__always)
func cacheHandle(_ raw: UnsafeMutableRawPointer) -> BenchCache { unsafeBitCast(raw, to: BenchCache.self) }

/// Takes over `[base, base + size)`. Returns 0, or the QuarryError raw value.
@c public func qb_init(_ base: UnsafeMutableRawPointer, _ size: Int) -> Int32 {
    precondition(MemoryLayout<BenchCache>.size == MemoryLayout<UnsafeMutableRawPointer>.size,
                 "QuarryBench: SlabCache is no longer one pointer; change cacheHandle")
    precondition(MemoryLayout<BenchFront>.size == MemoryLayout<UnsafeMutableRawPointer>.size,
                 "QuarryBench: MallocFront is no longer one pointer; change frontHandle")
    do throws(QuarryError) {
        benchQuarry = try BenchQuarry.initialize(base: base, size: size)
        return 0
    } catch {
        return Int32(error.rawValue)
    }
}

/// CacheOptions from QUARRY_BENCH_OPTIONS (comma-separated: poison, redzone, zero,
/// random), to measure each option's cost (docs/safety.md). Unset: all off.
func benchOptions() -> CacheOptions {
    var o = CacheOptions()
    guard let raw = getenv("QUARRY_BENCH_OPTIONS") else { return o }
    let text = String(cString: raw)
    for word in text.split(separator: ",") {
        switch word {
        case "poison": o.poison = true
        case "redzone": o.redZone = 8
        case "zero": o.zeroOnAllocate = true; o.zeroOnFree = true
        case "random": o.randomizeFreeSlots = true
        default: break
        }
    }
    return o
}

/// A new cache of `size`-byte objects, or nil (the error is printed).
@c public func qb_cache_create(_ size: Int) -> UnsafeMutableRawPointer? {
    guard let q = benchQuarry else { return nil }
    do {
        let cache = try q.createCache(name: "bench", size: size, options: benchOptions())
        return unsafeBitCast(cache, to: UnsafeMutableRawPointer.self)
    } catch {
        return nil
    }
}

/// Destroys a cache; returns the number of objects it still had (then it is kept).
@c public func qb_cache_destroy(_ cache: UnsafeMutableRawPointer) -> Int {
    cacheHandle(cache).destroy()
}

/// One object of the cache, or nil when Quarry refuses.
@c public func qb_cache_alloc(_ cache: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
    do { return try cacheHandle(cache).allocate() } catch { return nil }
}

/// Frees an object of the cache. Returns 0, or the QuarryError raw value.
@c public func qb_cache_free(_ cache: UnsafeMutableRawPointer, _ object: UnsafeMutableRawPointer?) -> Int32 {
    do throws(QuarryError) {
        try cacheHandle(cache).free(object)
        return 0
    } catch {
        return Int32(error.rawValue)
    }
}

/// The pair workload written in Swift: `n` allocate+free pairs with one other object kept
/// live. Callgrind counts it to give Quarry's cost as a Swift caller sees it, where the
/// fast path can inline into the caller and no C-ABI glue (typed-throws register protocol,
/// argument shuffles) sits around each call. Returns 0, or the QuarryError raw value.
@c public func qb_cache_pair_loop(_ cache: UnsafeMutableRawPointer, _ n: Int) -> Int32 {
    let c = cacheHandle(cache)
    do throws(QuarryError) {
        let keep = try c.allocate()
        var i = 0
        while i < n {
            let p = try c.allocate()
            try c.free(p)
            i += 1
        }
        try c.free(keep)
        return 0
    } catch {
        return Int32(error.rawValue)
    }
}

@c public func qb_cache_info(_ cache: UnsafeMutableRawPointer, _ out: UnsafeMutablePointer<qb_cache_info>) {
    let s = cacheHandle(cache).statistics
    out.pointee = qb_cache_info(
        object_size: s.objectSize, objects_per_slab: s.objectsPerSlab, pages_per_slab: s.pagesPerSlab,
        colors: s.colors, slabs: s.slabs, active_objects: s.activeObjects)
}

@c public func qb_page_info(_ out: UnsafeMutablePointer<qb_page_info>) {
    guard let q = benchQuarry else { return }
    let p = q.pageStatistics
    out.pointee = qb_page_info(page_count: p.pageCount, pages_in_use: p.pagesInUse, metadata_bytes: p.metadataBytes)
}

// MARK: Malloc front

typealias BenchFront = MallocFront<BenchPlatform>

/// A front handle travels through C as the heap pointer it wraps, like a cache handle
/// (checked in `qb_init`): the runner passes it back with every call, so no call reads
/// the global `benchQuarry` (on the host that read costs a `swift_beginAccess` call).
@inline(__always)
func frontHandle(_ raw: UnsafeMutableRawPointer) -> BenchFront { unsafeBitCast(raw, to: BenchFront.self) }

/// The malloc front of the instance, as an opaque handle for qb_malloc and qb_free.
@c public func qb_malloc_front() -> UnsafeMutableRawPointer? {
    guard let q = benchQuarry else { return nil }
    return unsafeBitCast(q.front, to: UnsafeMutableRawPointer.self)
}

/// `size` bytes from the size-class front, or nil when Quarry refuses.
@c public func qb_malloc(_ front: UnsafeMutableRawPointer, _ size: Int) -> UnsafeMutableRawPointer? {
    do { return try frontHandle(front).malloc(size) } catch { return nil }
}

/// Frees a block of the front. Returns 0, or the QuarryError raw value.
@c public func qb_free(_ front: UnsafeMutableRawPointer, _ object: UnsafeMutableRawPointer?) -> Int32 {
    do throws(QuarryError) {
        try frontHandle(front).free(object)
        return 0
    } catch {
        return Int32(error.rawValue)
    }
}

/// The pair workload through the front, written in Swift (see qb_cache_pair_loop).
@c public func qb_malloc_pair_loop(_ front: UnsafeMutableRawPointer, _ size: Int, _ n: Int) -> Int32 {
    let f = frontHandle(front)
    do throws(QuarryError) {
        let keep = try f.malloc(size)
        var i = 0
        while i < n {
            let p = try f.malloc(size)
            try f.free(p)
            i += 1
        }
        try f.free(keep)
        return 0
    } catch {
        return Int32(error.rawValue)
    }
}

/// Number of size classes, and the object size of class `index`.
@c public func qb_size_class_count() -> Int { SizeClasses.count }
@c public func qb_size_class_size(_ index: Int) -> Int { SizeClasses.size(ofClass: index) }

/// The shape of the class cache that serves `size` (created on first use). Returns 0,
/// or the QuarryError raw value.
@c public func qb_malloc_class_info(
    _ front: UnsafeMutableRawPointer, _ size: Int, _ out: UnsafeMutablePointer<qb_cache_info>
) -> Int32 {
    guard let q = benchQuarry else { return -1 }
    do throws(QuarryError) {
        let p = try frontHandle(front).malloc(size)
        defer { try? frontHandle(front).free(p) }
        guard let cache = q.cache(owning: p) else { return -1 }
        qb_cache_info(unsafeBitCast(cache, to: UnsafeMutableRawPointer.self), out)
        return 0
    } catch {
        return Int32(error.rawValue)
    }
}
