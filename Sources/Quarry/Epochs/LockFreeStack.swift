// LockFreeStack: a Treiber stack of words whose nodes come from a Quarry cache and are
// retired through an EpochReclaimer: the first lock-free structure on deferred freeing.
// Neighbours: EpochReclaimer (critical sections, retire), SlabCache (the node cache),
// docs/design.md ("Deferred freeing") (why it is ABA-safe).

import Synchronization

/// A node. Every field another CPU may read while it is written is atomic, accessed
/// through the node's pointer.
///
/// - `cookie` is word 0, where the allocator writes a freed object's encoded free link:
///   `liveCookie` from push until the pop that unlinks it, then `poppedCookie`. Any other
///   value seen by a reader means the node was freed under it (use after free).
/// - `next`: the node below, written before the node is published, then never.
/// - `value`: the payload, likewise.
struct StackNode: ~Copyable {
    let cookie: Atomic<UInt>
    let next: Atomic<UInt>
    let value: Atomic<UInt>

    init(cookie: UInt, next: UInt, value: UInt) {
        self.cookie = Atomic(cookie)
        self.next = Atomic(next)
        self.value = Atomic(value)
    }

    static let liveCookie: UInt = 0x51AB_11FE
    static let poppedCookie: UInt = 0x51AB_DEAD
    static let anchorCookie: UInt = 0x51AB_A7C4
}

/// A lock-free LIFO of machine words (Treiber 1986) safe against ABA and use after free
/// because nodes are retired, not freed: a node popped by one CPU while another CPU
/// still holds its address (between loading `head` and its CAS) is not freed, hence
/// not handed out and pushed again at the same address, before that CPU leaves its
/// critical section. So a CAS that expects `head == n` can only succeed while `n` is
/// the same node it read, and `n.next` is still the node below it.
///
/// Which accesses need a critical section: `pop` reads fields of a node that another
/// CPU may pop and retire at any moment, so it runs inside one. `push` writes only its
/// own node, not yet published, and compares `head` as a number without dereferencing
/// it, so it needs none (a recycled address at `head` is then harmless: the new node's
/// `next` is whatever `head` is at the CAS).
///
/// The stack's anchor is one node of the same cache (`cookie == anchorCookie`): its
/// `next` is the head, its `value` counts cookie mismatches seen by `pop`.
///
/// Interrupt context: `push` and `pop` may run in an interrupt handler (the node cache's
/// lock disables interrupts; the reclaimer nests). A handler's `pop` may find this CPU's
/// backlog full while the interrupted code is inside a critical section: it then gets
/// `.reclaimStalled` and changes nothing.
public struct LockFreeStack<P: Platform> {
    let anchor: UnsafeMutablePointer<StackNode>
    /// Where nodes come from and go back to (through the reclaimer).
    public let nodes: SlabCache<P>
    /// The reclaimer popped nodes are retired through: readers inside its critical
    /// sections may still read a popped node until it is freed.
    public let reclaimer: EpochReclaimer<P>

    /// Creates an empty stack with its own node cache in `quarry`, retiring through `reclaimer`.
    public static func create(in quarry: Quarry<P>, reclaimer: EpochReclaimer<P>) throws(QuarryError) -> LockFreeStack {
        let cache = try quarry.createCache(
            name: "lfstack_node", size: MemoryLayout<StackNode>.stride, alignment: MemoryLayout<StackNode>.alignment)
        do throws(QuarryError) {
            let anchor = try cache.allocate().bindMemory(to: StackNode.self, capacity: 1)
            anchor.initialize(to: StackNode(cookie: StackNode.anchorCookie, next: 0, value: 0))
            return LockFreeStack(anchor: anchor, nodes: cache, reclaimer: reclaimer)
        } catch {
            cache.destroy()
            throw error
        }
    }

    /// Pushes `value`. Throws `.outOfMemory` when the node cache has no memory.
    /// One allocation, then a CAS loop on the head.
    public func push(_ value: UInt) throws(QuarryError) {
        // Sound: the cache hands out objects sized and aligned for a StackNode. No CPU
        // can still read this memory: it was either never a node, or a node freed by
        // the reclaimer after every reader that could hold it left its critical section.
        let node = try nodes.allocate().bindMemory(to: StackNode.self, capacity: 1)
        node.initialize(to: StackNode(cookie: StackNode.liveCookie, next: 0, value: value))
        let address = UInt(bitPattern: node)
        var top = anchor.pointee.next.load(ordering: .relaxed)
        while true {
            node.pointee.next.store(top, ordering: .relaxed)
            let (exchanged, found) = anchor.pointee.next.compareExchange(
                expected: top, desired: address, ordering: .releasing)
            if exchanged { return }
            top = found
        }
    }

    /// Pops the most recently pushed value, or nil when the stack is empty.
    /// Throws `.reclaimStalled` (changing nothing) when this CPU's backlog of retired
    /// nodes is full and a CPU stays inside a critical section: the slot for the
    /// popped node is reserved before the node is unlinked, so a node is never unlinked
    /// without a place to retire it.
    public func pop() throws(QuarryError) -> UInt? {
        let reservation = try reclaimer.reserve()
        reclaimer.enter()
        while true {
            let top = anchor.pointee.next.load(ordering: .acquiring)
            if top == 0 {
                reclaimer.exit()
                return nil
            }
            // Sound: `top` was the head inside this critical section, so the node is
            // not freed before `exit` (it may be popped and retired meanwhile).
            let node = UnsafeMutablePointer<StackNode>(bitPattern: top)!
            let cookie = node.pointee.cookie.load(ordering: .relaxed)
            if cookie != StackNode.liveCookie && cookie != StackNode.poppedCookie { countMismatch() }
            let next = node.pointee.next.load(ordering: .relaxed)
            let (exchanged, _) = anchor.pointee.next.compareExchange(
                expected: top, desired: next, ordering: .acquiringAndReleasing)
            guard exchanged else { continue }
            let value = node.pointee.value.load(ordering: .relaxed)
            // Exactly one pop unlinks a node: it must find it live.
            if node.pointee.cookie.exchange(StackNode.poppedCookie, ordering: .relaxed) != StackNode.liveCookie {
                countMismatch()
            }
            reclaimer.exit()
            do throws(QuarryError) {
                try reclaimer.retire(UnsafeMutableRawPointer(node), to: nodes, using: reservation)
            } catch {
                preconditionFailure("LockFreeStack: a node was not an allocated object of its cache")
            }
            return value
        }
    }

    /// True when the stack held no node at the moment of the load.
    public var isEmpty: Bool { anchor.pointee.next.load(ordering: .acquiring) == 0 }

    /// Readers that found a node with a wrong cookie (freed under them, or popped twice).
    public var cookieMismatches: Int { Int(anchor.pointee.value.load(ordering: .relaxed)) }

    private func countMismatch() {
        anchor.pointee.value.wrappingAdd(1, ordering: .relaxed)
    }

    /// Frees every node left and the anchor, flushes the reclaimer (so retired nodes go
    /// back) and destroys the node cache. Requires quiescence (see `EpochReclaimer.flush`).
    /// Returns the number of values that were still on the stack.
    @discardableResult
    public func destroy() -> Int {
        var left = 0
        var p = anchor.pointee.next.load(ordering: .acquiring)
        while p != 0 {
            let node = UnsafeMutablePointer<StackNode>(bitPattern: p)!
            p = node.pointee.next.load(ordering: .relaxed)
            node.deinitialize(count: 1)
            _ = try? nodes.free(UnsafeMutableRawPointer(node))
            left += 1
        }
        anchor.deinitialize(count: 1)
        _ = try? nodes.free(UnsafeMutableRawPointer(anchor))
        reclaimer.flush()
        nodes.destroy()
        return left
    }
}
