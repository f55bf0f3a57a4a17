// RandomModel: seeded random actions against a simple model, written once for the host
// tests (RandomModelTests) and the test kernel (AllocatorSuite): caches of random sizes and
// alignments created and destroyed, objects allocated and freed at random, misuse whose
// answer the model knows (an interior pointer, a double free); live objects never overlap,
// honour their alignment and keep their contents (a cookie per object, verified on free).
// Neighbours: ScenarioChecks (reporting), TestRandom (generator, cookies). Embedded Swift:
// no Array (the model's table is memory the harness gives), no existentials.

@_spi(Testing) import Quarry

/// One live object of the model.
public struct RandomModelSlot {
    var address: UInt
    var size: Int
    var key: UInt
    var cache: Int
}

/// What a run saw.
public struct RandomModelReport: Sendable {
    public var steps = 0
    public var allocations = 0
    public var outOfMemory = 0
    public var cachesCreated = 0
    public var cachesDestroyed = 0
    public var mismatches = 0
    public var misaligned = 0
    public var overlaps = 0
    /// Refusals the model did not predict, or predicted refusals that did not come.
    public var unexpected = 0
    /// Objects `destroy` reported still allocated.
    public var leaked = 0
}

public struct RandomModel<P: Platform> {
    public static var maxCaches: Int { 16 }

    let quarry: Quarry<P>
    /// The model's table: `live[0 ..< count]`.
    let live: UnsafeMutableBufferPointer<RandomModelSlot>
    var count = 0
    var caches = InlineArray<16, SlabCache<P>?>(repeating: nil)
    var sizes = InlineArray<16, Int>(repeating: 0)
    var alignments = InlineArray<16, Int>(repeating: 0)
    var cacheCount = 0
    var random: SeededGenerator
    var nextKey: UInt
    var report = RandomModelReport()

    /// `live` is the model's table (its count is the most objects live at once), the
    /// caller's until `run` returns.
    public init(quarry: Quarry<P>, live: UnsafeMutableBufferPointer<RandomModelSlot>, seed: UInt64) {
        self.quarry = quarry
        self.live = live
        random = SeededGenerator(seed: seed)
        nextKey = UInt(truncatingIfNeeded: seed &* 0x1000)
    }

    /// Four caches, `steps` random actions (the heap's invariants and the overlaps
    /// checked every `checkEvery`), then everything freed and every cache destroyed;
    /// the checks through `checks`.
    public mutating func run<C: ScenarioChecks>(steps: Int, checkEvery: Int, _ checks: C) -> RandomModelReport {
        for _ in 0..<4 { newCache() }
        var step = 0
        while step < steps {
            let roll = random.below(1000)
            if roll < 5 {
                newCache()
            } else if roll < 8 && cacheCount > 1 {
                destroyCache(random.below(cacheCount))
            } else if (roll < 560 || count == 0) && count < live.count {
                allocate(random.below(cacheCount))
            } else if count > 0 && roll < 990 {
                free(random.below(count), misuse: false)
            } else if count > 0 {
                free(random.below(count), misuse: true)
            }
            step += 1
            if step % checkEvery == 0 {
                quarry.checkInvariants()
                report.overlaps += overlaps()
            }
        }
        report.steps = steps
        report.overlaps += overlaps()
        while count > 0 { free(count - 1, misuse: false) }
        while cacheCount > 0 { destroyCache(cacheCount - 1) }
        quarry.checkInvariants()
        checks.check(
            "random model: ran, caches created and destroyed, objects allocated",
            report.allocations > 0 && report.cachesCreated > 4 && report.cachesDestroyed == report.cachesCreated,
            "nothing ran")
        checks.checkEqual("random model: cookie mismatches", report.mismatches, 0)
        checks.checkEqual("random model: misaligned objects", report.misaligned, 0)
        checks.checkEqual("random model: overlapping live objects", report.overlaps, 0)
        checks.checkEqual("random model: refusals the model did not predict", report.unexpected, 0)
        checks.checkEqual("random model: objects left when a cache was destroyed", report.leaked, 0)
        return report
    }

    /// A cache of a random size (small half the time) and alignment (1 ... 4096).
    mutating func newCache() {
        guard cacheCount < Self.maxCaches else { return }
        let size = random.below(2) == 0 ? 1 + random.below(256) : 1 + random.below(20_000)
        let alignment = 1 << random.below(13)
        do throws(QuarryError) {
            caches[cacheCount] = try quarry.createCache(name: "random", size: size, alignment: alignment)
            sizes[cacheCount] = size
            alignments[cacheCount] = alignment
            cacheCount += 1
            report.cachesCreated += 1
        } catch {
            if error == .outOfMemory { report.outOfMemory += 1 } else { report.unexpected += 1 }
        }
    }

    /// Frees every live object of cache `i` (as the API requires), destroys it, and
    /// renumbers the caches after it.
    mutating func destroyCache(_ i: Int) {
        var j = 0
        while j < count {
            if live[j].cache == i { free(j, misuse: false) } else { j += 1 }
        }
        report.leaked += caches[i].unsafelyUnwrapped.destroy()
        report.cachesDestroyed += 1
        var k = i
        while k + 1 < cacheCount {
            caches[k] = caches[k + 1]
            sizes[k] = sizes[k + 1]
            alignments[k] = alignments[k + 1]
            k += 1
        }
        cacheCount -= 1
        caches[cacheCount] = nil
        j = 0
        while j < count {
            if live[j].cache > i { live[j].cache -= 1 }
            j += 1
        }
    }

    mutating func allocate(_ i: Int) {
        let cache = caches[i].unsafelyUnwrapped
        do throws(QuarryError) {
            let p = try cache.allocate()
            if UInt(bitPattern: p) % UInt(alignments[i]) != 0 { report.misaligned += 1 }
            nextKey &+= 1
            Cookie.fill(p, size: sizes[i], key: nextKey)
            live[count] = RandomModelSlot(address: UInt(bitPattern: p), size: sizes[i], key: nextKey, cache: i)
            count += 1
            report.allocations += 1
        } catch {
            if error == .outOfMemory { report.outOfMemory += 1 } else { report.unexpected += 1 }
        }
    }

    /// Frees live object `k` (the last one takes its place), cookie checked; with
    /// `misuse`, an interior free before (refused, when the object has an interior) and
    /// a double free after (`.doubleFree` while the slab lives, `.freePage` once the free
    /// released the slab's pages).
    mutating func free(_ k: Int, misuse: Bool) {
        let o = live[k]
        count -= 1
        live[k] = live[count]
        let cache = caches[o.cache].unsafelyUnwrapped
        // Sound: an object the model allocated and still holds.
        let p = UnsafeMutableRawPointer(bitPattern: o.address).unsafelyUnwrapped
        if !Cookie.intact(p, size: o.size, key: o.key) { report.mismatches += 1 }
        if misuse && cache.objectSize > Geometry.granule {
            do throws(QuarryError) {
                try cache.free(p + 8)
                report.unexpected += 1
            } catch {
                if error != .interiorPointer { report.unexpected += 1 }
            }
        }
        do throws(QuarryError) { try cache.free(p) } catch { report.unexpected += 1 }
        if misuse {
            do throws(QuarryError) {
                try cache.free(p)
                report.unexpected += 1
            } catch {
                if error != .doubleFree && error != .freePage { report.unexpected += 1 }
            }
        }
    }

    /// Pairs of live objects that overlap: the table sorted by address (a heap sort, in
    /// place), then each object against the next.
    func overlaps() -> Int {
        var n = count
        var start = n / 2
        while start > 0 {
            start -= 1
            siftDown(start, n)
        }
        while n > 1 {
            n -= 1
            let t = live[0]
            live[0] = live[n]
            live[n] = t
            siftDown(0, n)
        }
        var found = 0
        var i = 1
        while i < count {
            if live[i - 1].address + UInt(live[i - 1].size) > live[i].address { found += 1 }
            i += 1
        }
        return found
    }

    private func siftDown(_ start: Int, _ end: Int) {
        var root = start
        while 2 * root + 1 < end {
            var child = 2 * root + 1
            if child + 1 < end && live[child].address < live[child + 1].address { child += 1 }
            if live[root].address >= live[child].address { return }
            let t = live[root]
            live[root] = live[child]
            live[child] = t
            root = child
        }
    }
}
