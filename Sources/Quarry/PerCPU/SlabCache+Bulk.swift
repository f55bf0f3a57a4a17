// SlabCache+Bulk: many objects of one cache in one call (SLUB's kmem_cache_alloc_bulk and
// kmem_cache_free_bulk): the slot claimed once per batch, the rest moved to or from the
// slabs under one acquisition of the cache lock.
// Neighbours: SlabCache (the one-object paths, whose checks run here per object),
// SlabCache+PerCPU (the slow path's rules), SlabLayer (takeRun,
// giveBack), CPUCache (the claim and the interrupt contract), CABI.swift
// (quarry_cache_alloc_bulk, quarry_cache_free_bulk).
//
// ## Interrupt contract
//
// As `allocate` and `free`: any CPU, interrupts on or off, interrupt handlers included.
// The hit parts claim the slot without masking; the slow parts mask interrupts and claim
// the slot for their whole length, so a handler (or NMI) that lands inside takes the
// nested path. A bulk call that finds the slot claimed (it interrupted its own CPU inside
// Quarry) never touches the slot: its whole batch goes to or from the slabs under one
// acquisition of the cache lock, taken the way the nolock rule allows (CPUCache.swift).
// The slow parts keep interrupts masked while they walk the batch: the interrupt latency
// of a bulk call grows with its length (about 100 instructions per object that reaches
// the slabs), so a caller with a latency bound splits its batches.

import Synchronization

extension SlabCache {
    // MARK: Allocate

    /// Fills `buffer` with objects of this cache, all or nothing (SLUB's
    /// `kmem_cache_alloc_bulk` contract): returns `buffer.count`, or throws what a single
    /// `allocate` would (`.outOfMemory`, `.corruptFreeList`) with every entry set to nil
    /// and every object taken meanwhile given back. Each object is handed out as by
    /// `allocate` (constructed, its cached mark cleared, the debug options' work).
    ///
    /// Cost: when this CPU's loaded magazine holds the whole batch, one claim of the
    /// slot and a copy of the rounds (no lock, no masking). Otherwise the slow part:
    /// interrupts masked once, the slot's two magazines emptied into the batch, and the
    /// rest taken from the slabs under one acquisition of the cache lock (counted as one
    /// refill). The depot is not asked (a burst bigger than two magazines is served
    /// by the slabs, as SLUB's bulk path is).
    @discardableResult
    public func allocate(into buffer: UnsafeMutableBufferPointer<UnsafeMutableRawPointer?>) throws(QuarryError) -> Int {
        let n = buffer.count
        guard n > 0, let out = buffer.baseAddress else { return 0 }
        if !allocateBulkHit(out, n) { try allocateBulkSlow(out, n) }
        return n
    }

    /// The hit part: the whole batch from this CPU's loaded magazine, or false
    /// (too few rounds, or the slot claimed by code this call interrupted).
    @inline(__always)
    func allocateBulkHit(_ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>, _ n: Int) -> Bool {
        hook(.allocateEnter)
        let slot = cpu(P.cpuIndex)
        guard slot.claim() else { return false }
        hook(.allocateClaimed)
        let m = slot.pointee.loaded
        let count = m.count
        guard count >= n else {
            slot.unclaim()
            return false
        }
        let rounds = m.rounds
        var i = 0
        while i < n {
            out[i] = UnsafeMutableRawPointer(bitPattern: rounds[count &- 1 &- i])
            i &+= 1
        }
        m.count = count &- n
        slot.counters.pointee.allocHits.add(n)
        slot.unclaim()
        handOutBatch(out, n)
        return true
    }

    /// The slow part: interrupts masked throughout. With the slot claimed, its
    /// magazines first; the rest (all of it on the nested path) from the slabs in one
    /// lock section. On failure the slot gets its rounds back (it has room: nothing
    /// else ran on the slot meanwhile) and the slabs theirs, inside the same section.
    @inline(never)
    func allocateBulkSlow(_ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>, _ n: Int) throws(QuarryError) {
        let saved = P.disableInterrupts()
        let index = P.cpuIndex
        let slot = cpu(index)
        let claimed = slot.claim()
        let mode = heap.pointee.lockMode(cpu: index)
        var fromSlot = 0
        if claimed {
            hook(.allocateMiss)
            while fromSlot < n, let object = slot.pointee.popEitherMagazine() {
                out[fromSlot] = UnsafeMutableRawPointer(bitPattern: object)
                fromSlot += 1
            }
        }
        var failure: QuarryError? = nil
        if fromSlot < n { failure = takeBatchFromSlabs(out + fromSlot, n - fromSlot, mode) }
        if failure != nil {
            while fromSlot > 0 {
                fromSlot -= 1
                let pushed = slot.pointee.pushEitherMagazine(UInt(bitPattern: out[fromSlot]))
                assert(pushed, "Quarry: no room to give a bulk allocation's rounds back")
            }
        } else if claimed {
            slot.counters.pointee.allocMisses.add(n)
        } else {
            state.pointee.atomics.nestedAllocations.wrappingAdd(UInt(n), ordering: .relaxed)
        }
        if claimed {
            if mode == .spin { tidy(index) }
            slot.unclaim()
        }
        P.restoreInterrupts(saved)
        if let failure {
            out.update(repeating: nil, count: n)
            state.pointee.atomics.failures.wrappingAdd(1, ordering: .relaxed)
            if mode == .tryOnly { state.pointee.atomics.nolockRefusals.wrappingAdd(1, ordering: .relaxed) }
            throw failure
        }
        handOutBatch(out, n)
    }

    /// `n` objects from the slabs into `out` under one acquisition of the cache lock,
    /// or the error with none kept (those taken go back inside the same section).
    /// Interrupts masked.
    func takeBatchFromSlabs(
        _ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>, _ n: Int,
        _ mode: LockMode
    ) -> QuarryError? {
        let result = state.pointee.lock.tryWithLock(P.self, mode) { slabs -> QuarryError? in
            hook(.cacheLocked)
            var taken = 0
            var failure: QuarryError? = nil
            while taken < n {
                switch slabs.takeRun(into: out + taken, n - taken, mode, for: self) {
                case .success(let run): taken += run
                case .failure(let error): failure = error
                }
                if failure != nil { break }
            }
            if failure != nil {
                while taken > 0 {
                    taken -= 1
                    slabs.giveBack(UInt(bitPattern: out[taken]), mode, for: self)
                }
            } else {
                slabs.counters.refills += 1
            }
            return failure
        }
        guard let result else { return .outOfMemory }
        return result
    }

    /// `handOut` of each object of a batch.
    @inline(__always)
    func handOutBatch(_ out: UnsafeMutablePointer<UnsafeMutableRawPointer?>, _ n: Int) {
        var i = 0
        while i < n {
            handOut(UInt(bitPattern: out[i]))
            i &+= 1
        }
    }

    // MARK: Free

    /// Frees every object of `objects`, each checked exactly as `free` checks it: nil
    /// entries are skipped; a refused pointer (outside the arena, another cache's, an
    /// interior pointer, a double free, also of an object that appears twice in the
    /// batch) is reported and counted, left untouched, and does not stop the others.
    /// Throws the first error met, after the whole batch has been walked. `.busy`
    /// (only in a nested call that cannot take the cache lock) leaves that object, and
    /// every later one that found no room, the caller's.
    ///
    /// Cost: the hit part claims the slot once and pushes onto the loaded magazine
    /// while it has room; the slow part masks interrupts once, fills the previous
    /// magazine, and returns the rest to the slabs under one acquisition of the cache
    /// lock (counted as one flush).
    public func free(_ objects: UnsafeBufferPointer<UnsafeMutableRawPointer?>) throws(QuarryError) {
        let n = objects.count
        guard n > 0, let base = objects.baseAddress else { return }
        var first: QuarryError? = nil
        let done = freeBulkHit(base, n, &first)
        if done < n { freeBulkSlow(base + done, n - done, &first) }
        if let first { throw first }
    }

    /// The hit part: with the slot claimed once, each object checked and pushed onto
    /// the loaded magazine while it has room. Returns how many entries it consumed
    /// (freed or refused); 0 when the slot was claimed by code this call interrupted.
    @inline(__always)
    func freeBulkHit(
        _ objects: UnsafePointer<UnsafeMutableRawPointer?>, _ n: Int,
        _ first: inout QuarryError?
    ) -> Int {
        hook(.freeEnter)
        let slot = cpu(P.cpuIndex)
        guard slot.claim() else { return 0 }
        hook(.freeClaimed)
        var i = 0
        var pushed = 0
        while i < n {
            // Read the magazine again for each object: a nested call may run in the checks.
            let m = slot.pointee.loaded
            let count = m.count
            guard count < m.capacity else { break }
            if let object = objects[i] {
                let address = UInt(bitPattern: object)
                if case .failure(let error) = admitFree(address) {
                    if first == nil { first = error }
                } else {
                    setCachedMark(address)
                    m.rounds[count] = address
                    m.count = count &+ 1
                    pushed &+= 1
                }
            }
            i &+= 1
        }
        slot.counters.pointee.freeHits.add(pushed)
        slot.unclaim()
        return i
    }

    /// The slow part: interrupts masked throughout. Each object checked, then, with
    /// the slot claimed, pushed onto either magazine while one has room; the rest
    /// (all of it on the nested path) returned to the slabs in one lock section,
    /// taken at the first object that needs it. When that lock cannot be taken
    /// (nolock rule): parked in the slot's reserve while it has room, else `.busy`.
    @inline(never)
    func freeBulkSlow(_ objects: UnsafePointer<UnsafeMutableRawPointer?>, _ n: Int, _ first: inout QuarryError?) {
        let saved = P.disableInterrupts()
        let index = P.cpuIndex
        let slot = cpu(index)
        let claimed = slot.claim()
        let mode = heap.pointee.lockMode(cpu: index)
        if claimed { hook(.freeMiss) }
        var freed = 0
        // With the slot claimed: onto either magazine while one has room.
        func hasRoom() -> Bool { claimed && slot.pointee.hasRoom }
        let rest = admitEach(objects, from: 0, to: n, &first, while: hasRoom) { address, _, _ in
            setCachedMark(address)
            _ = slot.pointee.pushEitherMagazine(address)
            freed += 1
        }
        if rest < n {
            // The rest to the slabs in one lock section; they are checked under the lock,
            // so `locate`'s slab is exact. Without the lock: parked, or refused.
            let locked: Void? = state.pointee.lock.tryWithLock(P.self, mode) { slabs in
                hook(.cacheLocked)
                _ = admitEach(objects, from: rest, to: n, &first) { address, page, _ in
                    slabs.giveBack(address, mode, for: self, slab: page)
                    freed += 1
                }
                slabs.counters.flushes += 1
            }
            if locked == nil {
                _ = admitEach(objects, from: rest, to: n, &first) { address, _, first in
                    parkOrRefuse(address, claimed ? slot : nil, &first)
                }
            }
        }
        if claimed {
            slot.counters.pointee.freeMisses.add(freed)
            if mode == .spin { tidy(index) }
            slot.unclaim()
        } else {
            state.pointee.atomics.nestedFrees.wrappingAdd(UInt(freed), ordering: .relaxed)
        }
        P.restoreInterrupts(saved)
    }

    /// Checks `objects[start ..< n]` one by one (`admitFree`; nil entries skipped),
    /// giving each admitted object and its slab head to `body`, and keeping the first
    /// refusal in `first`; stops before the first object for which `proceed` is false.
    /// Returns where it stopped (`n` when it went through).
    @inline(__always)
    func admitEach(
        _ objects: UnsafePointer<UnsafeMutableRawPointer?>, from start: Int, to n: Int,
        _ first: inout QuarryError?, while proceed: () -> Bool = { true },
        _ body: (UInt, PageNumber, inout QuarryError?) -> Void
    ) -> Int {
        var i = start
        while i < n {
            if let object = objects[i] {
                guard proceed() else { return i }
                let address = UInt(bitPattern: object)
                switch admitFree(address) {
                case .success(let page): body(address, page, &first)
                case .failure(let error): if first == nil { first = error }
                }
            }
            i += 1
        }
        return n
    }

    /// A checked object that cannot reach its slab (the cache lock is held and this
    /// CPU holds a Quarry lock): parked with its cached mark in `slot`'s reserve (nil
    /// on the nested path), or refused with `.busy` and left the caller's.
    func parkOrRefuse(_ address: UInt, _ slot: UnsafeMutablePointer<CPUCache>?, _ first: inout QuarryError?) {
        if let slot {
            let offset = geometry.linkOffset
            let word = FreeLink.word(of: address, offset: offset)
            setCachedMark(address)
            if park(address, slot) { return }
            // Refused: the caller's word comes back, nothing changed (as in freeSlow).
            FreeLink.setWord(word, of: address, offset: offset)
        }
        state.pointee.atomics.nolockRefusals.wrappingAdd(1, ordering: .relaxed)
        if first == nil { first = .busy }
    }

    /// The checks `free` makes before an object may enter the per-CPU layer
    /// (`locate`, `isUserHeld`), then the debug options' work: the object's slab head
    /// when it is the caller's and may be freed now, else the error, reported and
    /// counted, with the object untouched.
    @inline(__always)
    func admitFree(_ address: UInt) -> Result<PageNumber, QuarryError> {
        let page: PageNumber
        switch locate(address) {
        case .success(let p): page = p
        case .failure(let error): return .failure(refuse(error, address))
        }
        guard isUserHeld(address) else { return .failure(refuse(.doubleFree, address)) }
        if state.pointee.objectWork { checkOnFree(address) }
        poisonFreed(address)
        hook(.freeValidated)
        return .success(page)
    }

    /// Writes the cached mark into the link word of `address` (an object entering the
    /// per-CPU layer).
    @inline(__always)
    func setCachedMark(_ address: UInt) {
        FreeLink.setWord(
            FreeLink.mark(of: address, secret: secret), of: address, offset: geometry.linkOffset)
    }
}
