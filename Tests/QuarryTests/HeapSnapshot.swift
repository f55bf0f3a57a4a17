// HeapSnapshot: what must not change when a call is refused (page figures and every
// cache's objects), compared before and after.
// Neighbours: MallocFrontTests (`expectRefusal`) and MallocModelTests (the users).

@testable import Quarry

/// What must not change when a call is refused: page figures and every cache's objects.
struct HeapSnapshot: Equatable {
    struct Cache: Equatable {
        var name: [UInt8]
        var active: Int
        var total: Int
        var allocations: UInt64
        var frees: UInt64
    }
    var pagesInUse: Int
    var bump: Int
    var freeRunPages: Int
    var liveSpans: Int
    var spanPages: Int
    var caches: [Cache]

    init<P: Platform>(_ q: Quarry<P>) {
        let p = q.pageStatistics
        let m = q.front.statistics
        pagesInUse = p.pagesInUse
        bump = p.bump
        freeRunPages = p.freeRunPages
        liveSpans = m.liveSpans
        spanPages = m.spanPages
        var caches: [Cache] = []
        q.forEachCache { c in
            let s = c.statistics
            var name: [UInt8] = []
            s.name.forEachByte { name.append($0) }
            caches.append(
                Cache(
                    name: name, active: s.activeObjects, total: s.totalObjects,
                    allocations: s.allocations, frees: s.frees))
        }
        self.caches = caches
    }
}
