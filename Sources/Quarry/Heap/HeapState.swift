// HeapState: the root record of one Quarry instance, at the start of its arena, and the
// layout of the heap header that follows it.
// Neighbours: Quarry (the handle), Arena (layout), PageAllocator (behind `pages`, its lock),
// CacheState (the two internal caches sit in the header), CPUState (per-CPU records and
// the lock helpers), Magazine (the empty sentinel), TestHooks.

import Synchronization

/// Locks, in the only order they may be taken: the malloc front's lock
/// (`front.creation`), then the registry lock (`registry`), then one cache's depot lock
/// (`depot`), then one cache's cache lock (`lock`), then the page lock (`pages`); each is
/// SpinLocked, owning the state it guards. Each saves and restores the interrupt
/// state, and each is taken only through `HeapState.acquire` (CPUState.swift), which
/// counts the locks a CPU holds.
///
/// HeapState itself holds only constants, the locks and atomics; the state each lock
/// guards is a separate record in the header, reached through its own pointer, so
/// that no Swift access to one of them is an access to another:
///
/// - `pages` is the PageAllocator (with the span counters) behind the page lock: reached
///   only inside `pages.withLock` / `tryWithLock`.
/// - `front` is the malloc front's state (atomics, and its lock owning ClassCreation, a
///   record of the header; see FrontState).
/// - `registry` is the Registry behind the registry lock, which also guards every
///   cache's CacheLinks: both reached only inside `registry.withLock`.
/// - `bumpLimit` mirrors the page allocator's `bump` for lock-free readers (the door,
///   `PageMap.lookup`): the page allocator stores it as each page-lock scope ends
///   (`lockScopeEnds`, release ordering), readers load it with acquire ordering.
/// - `usedLimit` mirrors the page allocator's `highWater` the same way (stored with
///   `bumpLimit` as each page-lock scope ends): pages below it were handed out at least
///   once, so a free of an address in one that nothing owns now is a double free, not a
///   pointer into a never-used page.
/// - The per-CPU records (`cpuStates`) belong to their CPU (CPUState).
/// - `map` and `bitmap` are handles (constant pointers) copied out of the page
///   allocator, so lock-free readers never touch `*pages`.
/// - `testHook` (checked builds) is set at quiescence only.
/// - `reclaim` is the per-CPU budget and the flush requests (atomics; Quarry+Reclaim).
///
/// Header layout (each part starts on a cache line, but the empty ClassCreation, which
/// sits right after the Registry):
///
///     | HeapState | CPUState x maxCPUs | empty sentinel magazine | PageAllocator | Registry |
///     | cache of caches: CacheState ... CPU slots | magazine cache: CacheState ... CPU slots |
///
/// Invariants: `bumpLimit == bump` and `usedLimit == highWater` of the page allocator
/// whenever the page lock is free;
/// `registry.count ==` number of caches reachable from `registry.first`; the sentinel
/// has `count == capacity == 0`.
struct HeapState: ~Copyable {
    /// The page allocator and its lock (the page lock).
    let pages: SpinLocked<PageAllocator>
    /// The registry of live caches and its lock (the registry lock).
    let registry: SpinLocked<Registry>
    let bumpLimit = Atomic<UInt32>(0)
    let usedLimit = Atomic<UInt32>(0)
    let arena: Arena
    let map: PageMap
    let bitmap: AllocationBitmap
    let tuning: Tuning
    /// `P.maxCPUs` of the platform the heap was initialised for.
    let maxCPUs: Int
    let cpuStates: UnsafeMutablePointer<CPUState>
    /// Loaded in both slots of every CPU that has no magazines (see Magazine).
    let sentinel: Magazine
    /// The cache whose objects hold every other cache's state (and per-CPU array).
    let cacheOfCaches: UnsafeMutablePointer<CacheState>
    /// The cache whose objects are magazines.
    let magazineCache: UnsafeMutablePointer<CacheState>
    let front: FrontState
    /// The error hook's function pointer bits (0: none); see `Quarry.setErrorHook`.
    let errorHook = Atomic<UInt>(0)
    /// Caches created by the public `createCache` so far; the low bits are the new
    /// cache's handle generation (CacheState, "C handles").
    let cacheGenerations = Atomic<UInt32>(0)
    let reclaim: ReclaimState
    #if QUARRY_CHECKED
    /// Called at numbered points of the allocate and free paths (tests only).
    var testHook: TestHook? = nil
    #endif

    init(arena: Arena, tuning: Tuning, maxCPUs: Int, layout: HeaderLayout, mallocOptions: CacheOptions = CacheOptions())
    {
        self.arena = arena
        self.tuning = tuning
        self.maxCPUs = maxCPUs
        reclaim = ReclaimState(budget: tuning.perCPUBudget(dataBytes: Int(arena.dataBytes)))
        map = PageMap(arena: arena)
        bitmap = AllocationBitmap(arena: arena)
        let base = UnsafeMutableRawPointer(bitPattern: arena.regionStart)!
        // Sound: `layout` reserved each of these regions in the header (see HeaderLayout).
        let allocator = (base + layout.pages).bindMemory(to: PageAllocator.self, capacity: 1)
        allocator.initialize(to: PageAllocator(map: map, bitmap: bitmap))
        // Sound: the caller bound the region start to HeapState; this value is moved there.
        let heap = base.assumingMemoryBound(to: HeapState.self)
        pages = SpinLocked(allocator, heap: heap)
        let caches = (base + layout.registry).bindMemory(to: Registry.self, capacity: 1)
        caches.initialize(to: Registry())
        registry = SpinLocked(caches, heap: heap)
        let creation = (base + layout.classCreation).bindMemory(to: ClassCreation.self, capacity: 1)
        creation.initialize(to: ClassCreation())
        front = FrontState(creation, heap: heap, options: mallocOptions)
        cpuStates = (base + layout.cpuStates).bindMemory(to: CPUState.self, capacity: 1)
        sentinel = Magazine.initialize(base + layout.sentinel, capacity: 0)
        cacheOfCaches = (base + layout.cacheOfCaches).bindMemory(to: CacheState.self, capacity: 1)
        magazineCache = (base + layout.magazineCache).bindMemory(to: CacheState.self, capacity: 1)
        var i = 0
        while i < maxCPUs {
            (base + layout.cpuStates + i * CPUState.stride).bindMemory(to: CPUState.self, capacity: 1)
                .initialize(to: CPUState())
            i += 1
        }
    }
}

/// The registry of live caches, in creation order, linked through each cache's
/// CacheLinks. Reached only under the registry lock (`HeapState.registry`), which
/// guards the links too.
struct Registry: LockedState {
    private(set) var first: UnsafeMutablePointer<CacheState>? = nil
    private(set) var last: UnsafeMutablePointer<CacheState>? = nil
    private(set) var count = 0

    /// Links `state` in last.
    mutating func append(_ state: UnsafeMutablePointer<CacheState>) {
        let links = CacheState.links(of: state)
        links.pointee.previous = last
        links.pointee.next = nil
        if let last {
            CacheState.links(of: last).pointee.next = state
        } else {
            first = state
        }
        last = state
        count += 1
    }

    /// Unlinks `state`, a cache of this registry.
    mutating func remove(_ state: UnsafeMutablePointer<CacheState>) {
        let previous = CacheState.links(of: state).pointee.previous
        let next = CacheState.links(of: state).pointee.next
        if let previous { CacheState.links(of: previous).pointee.next = next } else { first = next }
        if let next { CacheState.links(of: next).pointee.previous = previous } else { last = previous }
        count -= 1
    }

    /// Calls `body` with every cache, in creation order.
    func forEach(_ body: (UnsafeMutablePointer<CacheState>) -> Void) {
        var c = first
        while let state = c {
            body(state)
            c = CacheState.links(of: state).pointee.next
        }
    }
}

/// Offsets of the header's parts from the region start, for `maxCPUs` CPUs.
struct HeaderLayout {
    let cpuStates: Int
    let sentinel: Int
    let pages: Int
    let registry: Int
    let classCreation: Int
    let cacheOfCaches: Int
    let magazineCache: Int
    let bytes: Int

    init(maxCPUs: Int) {
        func line(_ n: Int) -> Int { (n + Geometry.cacheLine - 1) & ~(Geometry.cacheLine - 1) }
        cpuStates = line(MemoryLayout<HeapState>.stride)
        sentinel = line(cpuStates + maxCPUs * CPUState.stride)
        pages = line(sentinel + MemoryLayout<MagazineHeader>.stride)
        registry = line(pages + MemoryLayout<PageAllocator>.stride)
        // ClassCreation is empty (no byte is ever read or written): no line of its own.
        classCreation = registry + MemoryLayout<Registry>.stride
        cacheOfCaches = line(classCreation + MemoryLayout<ClassCreation>.stride)
        magazineCache = line(cacheOfCaches + CacheState.footprint(maxCPUs: maxCPUs))
        bytes = line(magazineCache + CacheState.footprint(maxCPUs: maxCPUs))
    }
}

extension HeapState {
    /// Calls the error hook, if one is set, for `error` in the cache `state` at `address`.
    func callErrorHook(_ error: QuarryError, _ state: UnsafeMutablePointer<CacheState>?, _ address: UInt) {
        let bits = errorHook.load(ordering: .acquiring)
        guard bits != 0 else { return }
        // Sound: `bits` was stored from an `ErrorHook` by `Quarry.setErrorHook`; a C
        // function pointer is one word.
        let hook = unsafeBitCast(bits, to: ErrorHook.self)
        hook(error.rawValue, state.map { CacheState.handle(of: $0) }, address)
    }
}
