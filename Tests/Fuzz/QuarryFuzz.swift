// QuarryFuzz: a libFuzzer target. Each input is a program of allocator operations (create
// cache, allocate, free, bad frees of every kind, malloc/realloc/free through the front,
// drain, shrink, injected page failures, writes into a freed object's link once it is
// back in its slab) run against one fresh heap and checked against a model; any
// disagreement aborts, which libFuzzer reports with the input.
// Built with Sources/Quarry into one module (internal access, checked build):
//   swiftc -sanitize=fuzzer,address -parse-as-library -D QUARRY_CHECKED \
//     $(find Sources/Quarry -name "*.swift") Tests/Fuzz/*.swift -o build/fuzz/quarry-fuzz     (make fuzz)
// Neighbours: Tests/Fuzz/corpus (seed inputs), docs/testing.md (the format).

#if canImport(Glibc)
import Glibc
#endif

typealias FuzzPlatform = SingleCPUPlatform

/// One arena for every input (8 MiB), re-initialised by each run.
let fuzzArenaBytes = 8 << 20
nonisolated(unsafe) let fuzzArena = UnsafeMutableRawPointer.allocate(byteCount: fuzzArenaBytes, alignment: 4096)

/// Input bytes, read front to back; nil at the end.
struct FuzzInput {
    let data: UnsafePointer<UInt8>
    let count: Int
    var at = 0
    mutating func byte() -> UInt8? {
        guard at < count else { return nil }
        defer { at += 1 }
        return data[at]
    }
    mutating func u16() -> Int? {
        guard let a = byte(), let b = byte() else { return nil }
        return Int(a) | Int(b) << 8
    }
}

/// A block the model knows to be live: where, how many bytes are the caller's, whose
/// (a cache index, or -1 for the malloc front) and the cookie its bytes hold.
struct FuzzBlock {
    var address: UInt
    var size: Int
    var owner: Int
    var cookie: UInt8
    var pointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: address)! }
}

func fuzzFail(_ message: StaticString) -> Never {
    message.withUTF8Buffer { b in _ = write(2, b.baseAddress, b.count) }
    _ = write(2, "\n", 1)
    abort()
}

/// Byte i of a block with `cookie`: prefix-stable, so realloc can compare prefixes.
@inline(__always) func fuzzByte(_ cookie: UInt8, _ i: Int) -> UInt8 { cookie &+ UInt8(truncatingIfNeeded: i &* 7) }

func fuzzFill(_ b: FuzzBlock) {
    for i in 0..<b.size { b.pointer.storeBytes(of: fuzzByte(b.cookie, i), toByteOffset: i, as: UInt8.self) }
}

func fuzzVerify(_ p: UnsafeMutableRawPointer, _ count: Int, _ cookie: UInt8) {
    for i in 0..<count where p.load(fromByteOffset: i, as: UInt8.self) != fuzzByte(cookie, i) {
        fuzzFail("quarry-fuzz: a live block's bytes changed")
    }
}

/// Runs one program. The model: the caches created (and their object sizes), the live
/// blocks with cookies, the blocks freed last. Refusals must be exactly the error the
/// model predicts; `.outOfMemory` is accepted from any operation that may need pages,
/// and `.corruptFreeList` from any allocation once a freed object's link was written
/// (`corrupted`): a damaged cache may refuse, but never traps, never hands out a block
/// that overlaps a live one, and never changes a live block.
struct FuzzRun {
    let q: Quarry<FuzzPlatform>
    var caches: [SlabCache<FuzzPlatform>?] = []
    var live: [FuzzBlock] = []
    /// Blocks freed most recently (address and owner), for writes after free.
    var freed: [FuzzBlock] = []
    /// A freed object's link was written: the heap may hold an undetected corrupt
    /// list, on which `checkInvariants` would trap; `validate` stands in for it.
    var corrupted = false
    var cookie: UInt8 = 1
    let maxLive = 256
    let maxCaches = 8
    let maxFreed = 16

    init(_ q: Quarry<FuzzPlatform>) { self.q = q }

    var liveCaches: [Int] { caches.indices.filter { caches[$0] != nil } }

    mutating func add(_ p: UnsafeMutableRawPointer, size: Int, owner: Int, alignment: Int) {
        let a = UInt(bitPattern: p)
        if a % UInt(max(alignment, Geometry.granule)) != 0 { fuzzFail("quarry-fuzz: misaligned block") }
        for b in live where a < b.address + UInt(max(b.size, 1)) && b.address < a + UInt(max(size, 1)) {
            fuzzFail("quarry-fuzz: two live blocks overlap")
        }
        let block = FuzzBlock(address: a, size: size, owner: owner, cookie: cookie)
        cookie &+= 1
        fuzzFill(block)
        live.append(block)
    }

    func expect(_ got: QuarryError?, _ want: QuarryError) {
        if got != want { fuzzFail("quarry-fuzz: a bad free got another error than the model's") }
    }

    /// The malloc front: always `.doubleFree` (the page held a block once). A cache:
    /// `.doubleFree` while a slab still holds the address, `.freePage` once its page is free.
    func doubleFreeError(_ owner: Int, _ p: UnsafeMutableRawPointer) -> QuarryError {
        owner < 0 || q.cache(owning: p) != nil ? .doubleFree : .freePage
    }

    func freeInto(_ owner: Int, _ p: UnsafeMutableRawPointer) -> QuarryError? {
        do {
            if owner < 0 { try q.front.free(p) } else { try caches[owner]!.free(p) }
            return nil
        } catch { return error }
    }

    /// Frees live block `b` (removed from `live` by the caller) and remembers it.
    mutating func freeLive(_ b: FuzzBlock) {
        fuzzVerify(b.pointer, b.size, b.cookie)
        if freeInto(b.owner, b.pointer) != nil { fuzzFail("quarry-fuzz: free of a live block refused") }
        if freed.count == maxFreed { freed.removeFirst() }
        freed.append(b)
    }

    /// An allocation refused with `error`: acceptable only for lack of memory, or for a
    /// corrupt free list once the program wrote into a freed object.
    func expectRefusal(_ error: QuarryError, _ message: StaticString) {
        if error != .outOfMemory && !(corrupted && error == .corruptFreeList) { fuzzFail(message) }
    }

    /// `checkInvariants`, or after a write into a freed object `validate`, which must
    /// not trap (its findings are expected: the damage may not have been met yet).
    func check() {
        if corrupted { _ = q.validate() } else { q.checkInvariants() }
    }

    /// Writes into the link word of a recently freed object, once it is back in its
    /// slab (its cache's CPU magazines and depot drained first), one of: 0, a bit
    /// flipped, the low byte replaced, a live block's raw address, the encoded link to
    /// another object of the slab (a cycle, a skip, an object that is out) or to its end.
    /// Skipped when the object is not a free object on a slab list any more.
    mutating func writeAfterFree(_ i: UInt8, _ how: UInt8, _ value: UInt8) {
        guard !freed.isEmpty else { return }
        let b = freed[Int(i) % freed.count]
        let cache: SlabCache<FuzzPlatform>
        if b.owner >= 0 {
            guard let c = caches[b.owner] else { return }
            cache = c
        } else {
            guard let c = q.cache(owning: b.pointer) else { return }  // a span's page, or freed
            cache = c
        }
        cache.drainCPU()
        cache.drainDepot()
        guard cache.isInItsSlab(b.pointer), !live.contains(where: { $0.address == b.address }) else { return }
        let word = b.pointer + cache.freeLinkOffset
        switch how % 6 {
        case 0: word.storeBytes(of: 0, as: UInt.self)
        case 1: word.storeBytes(of: word.load(as: UInt.self) ^ (1 << UInt(value % UInt8(UInt.bitWidth))), as: UInt.self)
        case 2: word.storeBytes(of: value, as: UInt8.self)
        case 3: word.storeBytes(of: live.isEmpty ? 0 : live[Int(value) % live.count].address, as: UInt.self)
        case 4:
            // The encoded link to the object `value` objects away (itself when 0): a
            // cycle, a skip, an object that is out, or one never carved.
            let other = b.pointer + (Int(value) - 128) * cache.objectSize
            cache.writeFreeLink(into: b.pointer, to: cache.owns(other) ? other : b.pointer)
        default: cache.writeFreeLink(into: b.pointer, to: nil)
        }
        corrupted = true
    }

    mutating func step(_ input: inout FuzzInput) -> Bool {
        guard let op = input.byte() else { return false }
        switch op % 16 {
        case 0:  // create a cache
            guard let s = input.u16(), let a = input.byte() else { return false }
            let size = s % 5000  // 0 and > maxObjectSize included
            let alignment = a % 16 == 15 ? Int(a) : 1 << Int(a % 14)  // non-powers of two and > page
            let expected: QuarryError? =
                size == 0
                ? .zeroSize
                : alignment & (alignment - 1) != 0 || alignment > Geometry.pageSize
                    ? .badAlignment
                    : nil
            do {
                let c = try q.createCache(name: "fuzz", size: size, alignment: alignment)
                if expected != nil { fuzzFail("quarry-fuzz: createCache accepted a bad size or alignment") }
                if c.objectSize < size { fuzzFail("quarry-fuzz: objects smaller than asked") }
                if caches.count < maxCaches {
                    caches.append(c)
                } else {
                    if c.destroy() != 0 { fuzzFail("quarry-fuzz: destroy of an empty cache refused") }
                }
            } catch {
                if let expected, error != expected { fuzzFail("quarry-fuzz: createCache: wrong error") }
                if expected == nil && error != .outOfMemory && error != .sizeTooLarge {
                    fuzzFail("quarry-fuzz: createCache refused a good shape")
                }
            }
        case 1, 2:  // allocate from a cache
            guard let i = input.byte() else { return false }
            let ids = liveCaches
            guard !ids.isEmpty, live.count < maxLive else { return true }
            let k = ids[Int(i) % ids.count]
            do {
                let p = try caches[k]!.allocate()
                add(p, size: caches[k]!.objectSize, owner: k, alignment: 1)
            } catch {
                expectRefusal(error, "quarry-fuzz: allocate failed other than out of memory")
            }
        case 3, 4:  // free a live block (cache or front)
            guard let i = input.byte() else { return false }
            guard !live.isEmpty else { return true }
            freeLive(live.remove(at: Int(i) % live.count))
        case 5:  // bad free of a live block; it must stay live and intact
            guard let i = input.byte(), let kind = input.byte() else { return false }
            guard !live.isEmpty else { return true }
            let b = live[Int(i) % live.count]
            switch kind % 5 {
            case 0:  // misaligned
                expect(freeInto(b.owner, b.pointer + 1), .misaligned)
            case 1:  // interior (an object of more than one granule, or a span)
                if b.owner >= 0, caches[b.owner]!.objectSize > Geometry.granule {
                    expect(freeInto(b.owner, b.pointer + Geometry.granule), .interiorPointer)
                } else if b.owner < 0, let usable = try? q.front.usableSize(b.pointer), usable > Geometry.granule {
                    expect(freeInto(-1, b.pointer + Geometry.granule), .interiorPointer)
                }
            case 2:  // into another cache, or a cache block into the front
                let others = liveCaches.filter { $0 != b.owner }
                if b.owner >= 0 {
                    expect(freeInto(-1, b.pointer), .wrongCache)
                } else if let o = others.first {
                    expect(freeInto(o, b.pointer), .wrongCache)
                }
                if b.owner >= 0, let o = others.first { expect(freeInto(o, b.pointer), .wrongCache) }
            case 3:  // outside the arena, into its metadata
                let region = UnsafeMutableRawPointer(bitPattern: q.heap.pointee.arena.regionStart)!
                expect(freeInto(b.owner, region - 4096), .outsideArena)
                expect(freeInto(b.owner, region + 64), .metadataPointer)
            default:  // a never-used page (above the high-water mark)
                let pages = q.pageStatistics
                if pages.highWater < pages.pageCount {
                    let end = UnsafeMutableRawPointer(bitPattern: q.heap.pointee.arena.end)!
                    expect(freeInto(b.owner, end - Geometry.pageSize), .freePage)
                }
            }
            fuzzVerify(b.pointer, b.size, b.cookie)
        case 6:  // free a live block, then free it again
            guard let i = input.byte() else { return false }
            guard !live.isEmpty else { return true }
            let b = live.remove(at: Int(i) % live.count)
            freeLive(b)
            expect(freeInto(b.owner, b.pointer), doubleFreeError(b.owner, b.pointer))
        case 7, 8:  // malloc (spans too)
            guard let s = input.u16() else { return false }
            guard live.count < maxLive else { return true }
            let size = op % 16 == 7 ? 1 + s % 2048 : 1 + s * 2  // up to 128 KiB: spans
            do {
                let p = try q.front.malloc(size)
                add(p, size: size, owner: -1, alignment: Geometry.granule)
            } catch {
                expectRefusal(error, "quarry-fuzz: malloc failed other than out of memory")
            }
        case 9:  // realloc a front block
            guard let i = input.byte(), let s = input.u16() else { return false }
            let front = live.indices.filter { live[$0].owner < 0 }
            guard !front.isEmpty else { return true }
            let j = front[Int(i) % front.count]
            let b = live[j]
            let size = 1 + (s & 1 == 0 ? s % 4096 : s * 2)
            do {
                let p = try q.front.realloc(b.pointer, size)
                fuzzVerify(p, min(size, b.size), b.cookie)
                live.remove(at: j)
                add(p, size: size, owner: -1, alignment: Geometry.granule)
            } catch {
                expectRefusal(error, "quarry-fuzz: realloc failed other than out of memory")
                fuzzVerify(b.pointer, b.size, b.cookie)
            }
        case 10:  // drain and shrink, one way or another
            guard let how = input.byte() else { return false }
            switch how % 5 {
            case 0: q.drainAll()
            case 1: q.shrink()
            case 2: q.front.shrink()
            case 3: for k in liveCaches { caches[k]!.drainCPU() }
            default: for k in liveCaches { caches[k]!.drainDepot(); caches[k]!.shrink() }
            }
        case 11:  // destroy a cache: refused (leak count) unless the model says it is empty
            guard let i = input.byte() else { return false }
            let ids = liveCaches
            guard !ids.isEmpty else { return true }
            let k = ids[Int(i) % ids.count]
            let held = live.filter { $0.owner == k }.count
            if caches[k]!.destroy() != held { fuzzFail("quarry-fuzz: destroy's leak count disagrees with the model") }
            if held == 0 { caches[k] = nil }
        case 12:  // the k-th page request from now fails
            guard let k = input.byte() else { return false }
            q.failPageRequest(after: 1 + Int(k % 8))
        case 13:
            check()
        case 15:  // write into a freed object's link, back in its slab
            guard let i = input.byte(), let how = input.byte(), let value = input.byte() else { return false }
            writeAfterFree(i, how, value)
        default:  // a burst of allocations from one cache (fills slabs, magazines, depot)
            guard let i = input.byte(), let n = input.byte() else { return false }
            let ids = liveCaches
            guard !ids.isEmpty else { return true }
            let k = ids[Int(i) % ids.count]
            for _ in 0..<Int(n % 32) where live.count < maxLive {
                guard let p = try? caches[k]!.allocate() else { break }
                add(p, size: caches[k]!.objectSize, owner: k, alignment: 1)
            }
        }
        return true
    }

    /// Frees everything, destroys every cache, drains and shrinks: every page must be
    /// back (quarantined slabs go with their caches), and the invariants hold again.
    mutating func finish() {
        q.failPageRequest(after: 0)
        check()
        for b in live {
            fuzzVerify(b.pointer, b.size, b.cookie)
            if freeInto(b.owner, b.pointer) != nil { fuzzFail("quarry-fuzz: final free refused") }
        }
        live.removeAll()
        for k in liveCaches where caches[k]!.destroy() != 0 { fuzzFail("quarry-fuzz: an empty cache would not go") }
        q.drainAll()
        q.front.shrink()
        q.shrink()
        q.checkInvariants()
        // A write after free (op 15) can land on a page that was reused by one of the
        // two internal caches, which are never destroyed: a slab of theirs found corrupt
        // stays quarantined for good (docs/design.md, "After a corruption").
        var quarantined = 0
        q.forEachCache { c in
            let s = c.statistics
            quarantined += s.quarantinedSlabs * s.pagesPerSlab
        }
        let pages = q.pageStatistics
        if pages.pagesInUse != quarantined { fuzzFail("quarry-fuzz: pages still in use after freeing everything") }
        if quarantined == 0 && pages.bump != 0 { fuzzFail("quarry-fuzz: the bump pointer did not come back to 0") }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func quarryFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    var input = FuzzInput(data: data, count: size)
    // First byte: the tuning (tiny geometry runs every refill and exchange path).
    let tuning: Tuning
    switch input.byte()! % 3 {
    case 0: tuning = .tiny
    case 1: tuning = .standard
    default: tuning = .noMagazines
    }
    let q: Quarry<FuzzPlatform>
    do {
        q = try Quarry<FuzzPlatform>.initialize(base: fuzzArena, size: fuzzArenaBytes, tuning: tuning)
    } catch { fuzzFail("quarry-fuzz: initialize failed") }
    var run = FuzzRun(q)
    var steps = 0
    while steps < 2000, run.step(&input) { steps += 1 }
    run.finish()
    return 0
}
