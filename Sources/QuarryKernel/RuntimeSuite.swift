// RuntimeSuite: the Embedded Swift runtime's allocations (classes, arrays, closures) come from Quarry.
// Neighbours: Kernel.swift (calls quarry_init on the runtime slice before anything
// allocates, then runRuntimeSuite), Sources/QuarryLibc/quarry_libc.c (posix_memalign and
// free over the C ABI, linked from libquarry.a), TestHarness.swift (reports).
//
// The Embedded runtime allocates every class instance, array buffer and escaping
// closure context with posix_memalign and frees it with free. In this kernel those are
// quarry_libc.o's, over the C ABI's global instance (quarry_init), so each such
// allocation must lie in Quarry's slice of the arena and every free must reach Quarry.
// The kernel module is built without -no-allocations (only the library is).
//
// Frees are observed through the public C ABI: the malloc class caches' `frees` column
// of slabinfo (summed over the `malloc-<size>` rows) grows by exactly the number of
// objects that died, and `live_spans` of the heap statistics drops when an array buffer
// above 32 KiB (a span) dies. (`quarry_usable_size` of a dead object would say 0 too,
// but it counts as a refused call in the cache's errors column, so it is not used.)

import CQuarryHeader
import Quarry

/// Runs the runtime checks. Called once, on the boot CPU, after `quarry_init` on
/// `[base, base + size)` and after the allocator suite (other CPUs idle).
func runRuntimeSuite(base: UInt, size: Int) {
    Console.printLine("== runtime suite (Swift runtime allocations served by Quarry)")
    RuntimeChecks.slice = (base, base + UInt(size))
    RuntimeChecks.classInstances()
    RuntimeChecks.arrays()
    RuntimeChecks.closures()
    var heap = quarry_heap_statistics()
    TestHarness.checkEqual("runtime: the C ABI reports no error", Int(quarry_heap_stats(&heap).rawValue), 0)
    TestHarness.checkEqual("runtime: no refused malloc-front call", Int(heap.malloc_errors), 0)
    Console.printLine("runtime: slabinfo of the malloc front (C ABI instance):")
    Console.line { quarry_slabinfo(nil, nil) }
}

/// A node of a singly linked list: one class instance per node.
final class RuntimeNode {
    let value: Int
    var next: RuntimeNode?
    init(value: Int, next: RuntimeNode?) {
        self.value = value
        self.next = next
    }
}

enum RuntimeChecks {
    /// Quarry's slice of the arena, `[start, end)`.
    nonisolated(unsafe) static var slice: (start: UInt, end: UInt) = (0, 0)
    /// Globals make the objects escape: the optimiser cannot put them on the stack.
    nonisolated(unsafe) static var list: RuntimeNode?
    nonisolated(unsafe) static var counter: (() -> Int)?

    static func inSlice(_ p: UnsafeRawPointer?) -> Bool {
        guard let p else { return false }
        let a = UInt(bitPattern: p)
        return a >= slice.start && a < slice.end
    }

    /// Allocation and free totals of the malloc front's class caches (`malloc-<size>`
    /// rows of slabinfo).
    static func frontCounters() -> SlabinfoTotals {
        var totals = SlabinfoTotals()
        withUnsafeMutablePointer(to: &totals) { context in
            quarry_slabinfo(
                { text, length, context in
                    // Sound: `context` is the SlabinfoTotals passed below, alive for the call;
                    // `text` points at `length` bytes of slabinfo text.
                    let totals = context!.assumingMemoryBound(to: SlabinfoTotals.self)
                    let bytes = UnsafeRawPointer(text!).assumingMemoryBound(to: UInt8.self)
                    for i in 0..<length { totals.pointee.consume(bytes[i]) }
                }, context)
        }
        return totals
    }

    // MARK: Classes

    /// 100 instances in a list: each lies in the slice; dropping the head frees them all.
    static func classInstances() {
        let before = frontCounters()
        var node: RuntimeNode? = nil
        for i in 0..<100 { node = RuntimeNode(value: i, next: node) }
        list = node
        var inside = 0
        var sum = 0
        var cursor = list
        while let n = cursor {
            if inSlice(UnsafeRawPointer(Unmanaged.passUnretained(n).toOpaque())) { inside += 1 }
            sum += n.value
            cursor = n.next
        }
        node = nil
        cursor = nil
        let head = UnsafeMutableRawPointer(Unmanaged.passUnretained(list!).toOpaque())
        TestHarness.checkEqual("runtime: 100 class instances lie in Quarry's slice", inside, 100)
        TestHarness.checkEqual("runtime: the list holds its values", sum, 99 * 100 / 2)
        TestHarness.check(
            "runtime: a live instance is a block Quarry handed out",
            quarry_usable_size(head) >= MemoryLayout<Int>.size * 2, "quarry_usable_size is 0")
        let alive = frontCounters()
        list = nil
        let after = frontCounters()
        TestHarness.check(
            "runtime: slabinfo has the malloc rows and their columns", after.valid,
            "no allocs/frees columns or no malloc-<size> row")
        TestHarness.checkAtLeast(
            "runtime: 100 instances counted as malloc allocations",
            Int(alive.allocations &- before.allocations), 100)
        TestHarness.checkEqual(
            "runtime: dropping the list frees its 100 instances",
            Int(after.frees &- alive.frees), 100)
    }

    // MARK: Arrays

    /// An array grown past its capacity again and again: every buffer lies in the slice,
    /// each growth frees the old buffer, and a buffer above 32 KiB is a span.
    static func arrays() {
        var heap = quarry_heap_statistics()
        _ = quarry_heap_stats(&heap)
        let spansBefore = heap.live_spans
        let before = frontCounters()
        var numbers: [Int] = []
        var growths = 0
        var outside = 0
        var lastBase: UnsafeRawPointer? = nil
        var lastCapacity = numbers.capacity
        // 40 KiB of Ints on i686, 80 KiB on x86_64: the last buffers are spans.
        let count = 10_000
        for i in 0..<count {
            numbers.append(i)
            if numbers.capacity != lastCapacity {
                let base = numbers.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
                if !inSlice(base) { outside += 1 }
                if base != lastBase { growths += 1 }
                lastBase = base
                lastCapacity = numbers.capacity
            }
        }
        var sum = 0
        for n in numbers { sum += n }
        let grown = frontCounters()
        _ = quarry_heap_stats(&heap)
        let spansAlive = heap.live_spans
        TestHarness.checkEqual("runtime: every array buffer lies in Quarry's slice", outside, 0)
        TestHarness.checkAtLeast("runtime: appending beyond capacity reallocates the buffer", growths, 5)
        TestHarness.checkEqual("runtime: the array holds its elements", sum, (count - 1) * count / 2)
        TestHarness.checkAtLeast(
            "runtime: each growth freed the buffer it replaced",
            Int(grown.frees &- before.frees), 3)
        TestHarness.checkEqual("runtime: the large buffer is a span", spansAlive - spansBefore, 1)
        numbers = []
        _ = quarry_heap_stats(&heap)
        TestHarness.checkEqual("runtime: the dead array's span is freed", heap.live_spans, spansBefore)
        TestHarness.checkEqual("runtime: the empty array holds no buffer", numbers.capacity, 0)
    }

    // MARK: Closures

    /// A counter closure capturing a mutable variable, stored in a global (escaping).
    static func makeCounter(start: Int) -> () -> Int {
        var count = start
        return {
            count += 1
            return count
        }
    }

    /// The stored closure's context lies in the slice, its state persists across
    /// calls, and releasing the closure frees its context.
    static func closures() {
        let before = frontCounters()
        counter = makeCounter(start: 41)
        let created = frontCounters()
        // Sound: a Swift function value is two words, the function's address and its
        // context (the heap box of the captures, or null when it captures nothing).
        let context = withUnsafeBytes(of: &counter) { raw in
            UnsafeRawPointer(bitPattern: raw.load(fromByteOffset: MemoryLayout<UInt>.size, as: UInt.self))
        }
        let first = counter!()
        let second = counter!()
        TestHarness.check(
            "runtime: a stored closure's context lies in Quarry's slice", inSlice(context),
            "the context is not in the slice")
        TestHarness.checkAtLeast(
            "runtime: creating the closure allocated from the malloc front",
            Int(created.allocations &- before.allocations), 1)
        TestHarness.check(
            "runtime: the closure's captured state persists across calls",
            first == 42 && second == 43, "the counter did not count 42, 43")
        counter = nil
        let after = frontCounters()
        // Storing the closure in an Optional global and calling it through there may add
        // reabstraction-thunk contexts (allocated and freed per call): count them all.
        TestHarness.checkEqual(
            "runtime: releasing the closure frees everything it allocated",
            Int(after.frees &- before.frees), Int(after.allocations &- before.allocations))
    }
}

/// Sums the `allocs` and `frees` columns of the `malloc-<size>` rows of slabinfo text,
/// fed a byte at a time. Columns are found by name in the header line (`# name ...`),
/// so added columns do not break it. No allocation: a fixed line buffer.
struct SlabinfoTotals {
    var allocations: UInt64 = 0
    var frees: UInt64 = 0
    /// Token positions of the two columns in a data row (-1 until the header is seen).
    var allocsColumn = -1
    var freesColumn = -1
    var mallocRows = 0
    var line = InlineArray<256, UInt8>(repeating: 0)
    var length = 0

    /// Both columns were found and at least one malloc row was read.
    var valid: Bool { allocsColumn >= 0 && freesColumn >= 0 && mallocRows > 0 }

    mutating func consume(_ byte: UInt8) {
        if byte == UInt8(ascii: "\n") {
            endLine()
        } else if length < 256 {
            line[length] = byte
            length += 1
        }
    }

    private mutating func endLine() {
        defer { length = 0 }
        if length > 0 && line[0] == UInt8(ascii: "#") {
            // "# name objsize ...": token 0 is "#", so a data row's column is one less.
            guard token(1, equals: "name") else { return }
            var t = 2
            while let (start, end) = token(t) {
                if matches(start, end, "allocs") { allocsColumn = t - 1 }
                if matches(start, end, "frees") { freesColumn = t - 1 }
                t += 1
            }
            return
        }
        guard allocsColumn >= 0, freesColumn >= 0, let (start, end) = token(0),
            end - start > 7, matches(start, start + 7, "malloc-")
        else { return }
        mallocRows += 1
        allocations &+= number(allocsColumn)
        frees &+= number(freesColumn)
    }

    /// The `index`th space-separated token as `[start, end)` in `line`.
    private func token(_ index: Int) -> (Int, Int)? {
        var i = 0
        var n = 0
        while i < length {
            while i < length && line[i] == UInt8(ascii: " ") { i += 1 }
            if i == length { return nil }
            let start = i
            while i < length && line[i] != UInt8(ascii: " ") { i += 1 }
            if n == index { return (start, i) }
            n += 1
        }
        return nil
    }

    private func token(_ index: Int, equals text: StaticString) -> Bool {
        guard let (start, end) = token(index) else { return false }
        return matches(start, end, text)
    }

    private func matches(_ start: Int, _ end: Int, _ text: StaticString) -> Bool {
        text.withUTF8Buffer { bytes in
            guard bytes.count == end - start else { return false }
            for i in 0..<bytes.count where line[start + i] != bytes[i] { return false }
            return true
        }
    }

    private func number(_ index: Int) -> UInt64 {
        guard let (start, end) = token(index) else { return 0 }
        var value: UInt64 = 0
        for i in start..<end {
            let digit = line[i] &- UInt8(ascii: "0")
            guard digit < 10 else { return 0 }
            value = value * 10 + UInt64(digit)
        }
        return value
    }
}
