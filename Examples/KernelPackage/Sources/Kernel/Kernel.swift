// Kernel: the example kernel's entry: Quarry over the linker script's arena, one cache,
// typed handles allocated, written, checked and freed, each step printed over COM1, then
// `N passed, M failed` and QEMU's exit (status 67 when everything passed).
// Neighbours: Support (arena symbols, exit, memset & co.), Console.swift (output); in the
// Quarry repository boot/multiboot_<arch>.S (calls kernel_main: CPU 0's per-CPU slot set,
// FPU/SSE on) and Examples/KernelPackage/linker/<arch>.ld (the layout and the arena).

import Quarry
import QuarryX86
import Support

typealias Heap = Quarry<X86Platform>
typealias Handle = CacheObject<X86Platform>

/// Multiboot entry (boot/multiboot_<arch>.S): interrupts off, stack 16-byte aligned.
@c(kernel_main)
func kernelMain(_ magic: UInt32, _ info: UInt32) {
    #if arch(x86_64)
    Console.line("Quarry as a Swift package: example kernel (x86_64)")
    #else
    Console.line("Quarry as a Swift package: example kernel (i686)")
    #endif
    var checks = Checks()
    checks.expect("boot: multiboot magic", magic == 0x2BAD_B002)
    checks.expect("platform: X86Platform.cpuIndex is 0 on the boot CPU", X86Platform.cpuIndex == 0)

    let start = support_arena_start()
    let size = Int(support_arena_end() - start)
    checks.expect("arena: page-aligned, at least 1 MiB", start % 4096 == 0 && size >= 1 << 20)

    // Sound: the linker script reserves [start, start + size) for Quarry alone.
    let heap: Heap
    do {
        heap = try Heap.initialize(base: UnsafeMutableRawPointer(bitPattern: start)!, size: size)
        checks.pass("Quarry<X86Platform>.initialize over the arena")
    } catch {
        checks.fail("Quarry<X86Platform>.initialize over the arena", error)
        finish(checks)
    }
    do throws(QuarryError) {
        try run(heap, &checks)
    } catch {
        checks.fail("an allocator call threw", error)
    }
    finish(checks)
}

/// The allocations: one handle, then a table of handles that itself lives in a Quarry
/// object, then the cache destroyed with nothing leaked.
func run(_ heap: Heap, _ checks: inout Checks) throws(QuarryError) {
    let nodes = try heap.createCache(name: "node", size: 48)
    checks.expect("createCache(name: \"node\", size: 48)", nodes.objectSize >= 48)

    let node = try nodes.allocateObject()
    let sum = node.withUnsafeMutableBytes { bytes in
        var sum = 0
        for i in 0..<bytes.count {
            bytes[i] = UInt8(truncatingIfNeeded: i)
            sum += Int(bytes[i])
        }
        return sum
    }
    checks.expect(
        "allocateObject(): 48 bytes written and read back",
        node.byteCount == nodes.objectSize && sum == nodes.objectSize * (nodes.objectSize - 1) / 2)
    checks.expect("one handle out: activeObjects == 1", nodes.activeObjects == 1)
    node.free()  // consuming: `node` cannot be used or freed again
    checks.expect("free(): activeObjects == 0", nodes.activeObjects == 0)

    // Many handles at once, kept in a table that is itself an object of a second cache
    // (~Copyable values in raw memory: initialize, then move out to free).
    let count = 200
    let tables = try heap.createCache(name: "handle table", size: count * MemoryLayout<Handle>.stride)
    let table = try tables.allocateObject()
    // Sound: the object holds `count` handles and is bound to nothing else.
    let handles = table.pointer.bindMemory(to: Handle.self, capacity: count)
    for i in 0..<count {
        (handles + i).initialize(to: try nodes.allocateObject())
        handles[i].pointer.storeBytes(of: UInt32(0xC0DE_0000) | UInt32(i), as: UInt32.self)
    }
    checks.expect("200 handles out: activeObjects == 200", nodes.activeObjects == count)
    var intact = 0
    for i in 0..<count where handles[i].pointer.load(as: UInt32.self) == UInt32(0xC0DE_0000) | UInt32(i) {
        intact += 1
    }
    checks.expect("200 handles: every object kept its own cookie", intact == count)
    for i in 0..<count {
        (handles + i).move().free()
    }
    table.free()
    checks.expect("200 frees: activeObjects == 0", nodes.activeObjects == 0 && tables.activeObjects == 0)

    checks.expect("destroy both caches: nothing leaked", nodes.destroy() == 0 && tables.destroy() == 0)
    heap.drainAll()
    checks.expect("every page back: pagesInUse == 0", heap.pageStatistics.pagesInUse == 0)
}

/// Prints the summary line and leaves QEMU: 0x21 (status 67) when every check passed.
func finish(_ checks: Checks) -> Never {
    Console.number(checks.passed)
    Console.write(" passed, ")
    Console.number(checks.failed)
    Console.line(" failed")
    support_exit(checks.failed == 0 && checks.passed > 0 ? 0x21 : 0x22)
}

/// Named checks and their counts; each prints one line.
struct Checks {
    var passed = 0
    var failed = 0

    mutating func expect(_ name: StaticString, _ condition: Bool) {
        if condition {
            pass(name)
        } else {
            failed += 1
            Console.write("FAIL: ")
            Console.line(name)
        }
    }

    mutating func pass(_ name: StaticString) {
        passed += 1
        Console.write("ok: ")
        Console.line(name)
    }

    mutating func fail(_ name: StaticString, _ error: QuarryError) {
        failed += 1
        Console.write("FAIL: ")
        Console.write(name)
        Console.write(": ")
        Console.line(error.name)
    }
}
