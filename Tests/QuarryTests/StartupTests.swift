import Testing

@testable import Quarry

#if canImport(Glibc)
import Glibc
#endif

/// Start-up is O(1) in the arena's size: initialize touches only the header page.
@Suite struct StartupTests {
    /// A 64 GiB arena reserved with no access except its first page: `initialize`
    /// would fault if it touched anything else. Then the first allocation touches
    /// only what it needs.
    @Test func initializeTouchesOnlyTheHeader() throws {
        let size = 64 << 30
        guard let raw = mmap(nil, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
            raw != MAP_FAILED
        else {
            Issue.record("mmap failed")
            return
        }
        defer { munmap(raw, size) }
        let base = raw
        #expect(mprotect(base, 4096, PROT_READ | PROT_WRITE) == 0)
        let q = try Quarry<ThreadPlatform<1>>.initialize(base: base, size: size)
        let stats = q.pageStatistics
        #expect(stats.pageCount > 15_000_000)
        #expect(stats.bump == 0)
        // Open the metadata and the first data pages, then allocate: still no other touch.
        let meta = stats.metadataBytes
        #expect(mprotect(base, meta + 64 * 4096, PROT_READ | PROT_WRITE) == 0)
        let c = try q.createCache(name: "startup", size: 64)
        let p = try c.allocate()
        try c.free(p)
        // The slabs of the cache of caches and of the magazine cache, and the cache's first slab.
        let internalPages = q.cacheOfCaches.statistics.pages + q.magazineCache.statistics.pages
        #expect(internalPages <= 3)
        #expect(q.pageStatistics.bump <= internalPages + 1)
    }
}
