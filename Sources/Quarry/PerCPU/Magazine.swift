// Magazine: a fixed-capacity stack of free object addresses, in allocator-owned memory.
// Neighbours: CPUCache (each CPU's loaded and previous magazines), Depot (stacks of full
// and empty magazines), HeapState (the empty sentinel, the internal magazine cache).

/// The header of a magazine; `capacity` object addresses (its "rounds") follow it.
/// A magazine is one object of the heap's internal `quarry_magazine` cache (sized
/// for `Tuning.magazineSize` rounds), never handed to users, so its words are
/// written only by Quarry: the CPU that has it loaded (interrupts masked), or the
/// holder of its cache's depot lock while it sits in the depot.
///
/// Invariants: `0 <= count <= capacity`; rounds `0 ..< count` are distinct free
/// objects of the magazine's cache (bitmap bit set: out of their slab; counted in their slab's `inUse`);
/// `next` is meaningful only while the magazine is on a depot stack.
struct MagazineHeader {
    var next: UnsafeMutablePointer<MagazineHeader>?
    var count: Int
    var capacity: Int
}

/// A handle on one magazine (a pointer; copying it copies nothing).
///
/// The *empty sentinel* (HeapState) has `capacity == 0`: a CPU that has no magazines
/// yet has it loaded in both slots, so the fast path's single bound check
/// (`count > 0` to allocate, `count < capacity` to free) also sends a CPU without
/// magazines to the slow path, with no nil check.
struct Magazine: Equatable {
    let header: UnsafeMutablePointer<MagazineHeader>

    @inline(__always) init(_ header: UnsafeMutablePointer<MagazineHeader>) { self.header = header }

    /// Bytes of a magazine with room for `capacity` rounds.
    static func bytes(capacity: Int) -> Int {
        MemoryLayout<MagazineHeader>.stride + capacity * MemoryLayout<UInt>.stride
    }

    /// Turns `memory` (at least `bytes(capacity:)` bytes, word aligned) into an empty magazine.
    static func initialize(_ memory: UnsafeMutableRawPointer, capacity: Int) -> Magazine {
        // Sound: the caller owns `memory`, sized and aligned for a header and its rounds.
        let header = memory.bindMemory(to: MagazineHeader.self, capacity: 1)
        header.initialize(to: MagazineHeader(next: nil, count: 0, capacity: capacity))
        return Magazine(header)
    }

    var address: UnsafeMutableRawPointer { UnsafeMutableRawPointer(header) }

    var count: Int {
        @inline(__always) get { header.pointee.count }
        @inline(__always) nonmutating set { header.pointee.count = newValue }
    }
    var capacity: Int {
        @inline(__always) get { header.pointee.capacity }
    }
    var isFull: Bool { count == capacity }

    /// The rounds, right after the header.
    @inline(__always)
    var rounds: UnsafeMutablePointer<UInt> {
        // Sound: `bytes(capacity:)` reserved `capacity` words after the header, and the
        // header's stride is a multiple of the word alignment.
        (UnsafeMutableRawPointer(header) + MemoryLayout<MagazineHeader>.stride)
            .assumingMemoryBound(to: UInt.self)
    }

    /// Removes and returns the top round. Requires `count > 0`.
    @inline(__always)
    func pop() -> UInt {
        let n = count - 1
        count = n
        return rounds[n]
    }

    /// Adds `object` on top. Requires `count < capacity`.
    @inline(__always)
    func push(_ object: UInt) {
        let n = count
        rounds[n] = object
        count = n + 1
    }

    /// Reverses the rounds, so that a magazine filled in slab order hands objects out
    /// in slab order (first carved, first allocated).
    func reverse() {
        var i = 0
        var j = count - 1
        while i < j {
            let t = rounds[i]
            rounds[i] = rounds[j]
            rounds[j] = t
            i += 1
            j -= 1
        }
    }

    var next: Magazine? {
        get { header.pointee.next.map(Magazine.init) }
        nonmutating set { header.pointee.next = newValue?.header }
    }
}
