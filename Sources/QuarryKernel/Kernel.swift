// Kernel: the test kernel's entry (kernel_main) and the order of bring-up and checks (i686, x86_64).
// Neighbours: boot/multiboot_<arch>.S (calls kernel_main), SMP.swift (kernel_ap_main),
// PlatformChecks.swift, AllocatorSuite.swift and RuntimeSuite.swift (the checks),
// TestHarness.swift (the exit).

import CQuarryHeader
import CQuarrySupport
import Quarry
import Synchronization

enum Kernel {
    /// LAPIC timer frequency on every CPU.
    static let timerHz = 2000
    static let multibootMagic: UInt32 = 0x2BAD_B002

    /// The arena the linker script reserves for Quarry.
    static var arenaBase: UInt { quarry_arena_start() }
    static var arenaSize: Int { Int(quarry_arena_end() - quarry_arena_start()) }

    /// The arena's last 4 MiB belong to the C ABI's global instance (quarry_init), which
    /// serves the Embedded runtime (RuntimeSuite.swift); below them, the reclaim suite's
    /// slice (ReclaimSuite.swift); the allocator suite splits the rest.
    static let runtimeArenaBytes = 4 << 20
    static var runtimeArenaBase: UInt { quarry_arena_end() - UInt(runtimeArenaBytes) }
    static var reclaimArenaBytes: Int { (ReclaimSuite.bytes + 4095) & ~4095 }
    static var reclaimArenaBase: UInt { runtimeArenaBase - UInt(reclaimArenaBytes) }
}

/// Multiboot v1 information: `flags` bit 0 says mem_lower/mem_upper (KiB below
/// 640 KiB and above 1 MiB) are valid.
struct MultibootInfo {
    var flags: UInt32
    var memLower: UInt32
    var memUpper: UInt32
}

/// Boot CPU entry from boot/multiboot_<arch>.S: protected mode with flat segments and %fs
/// on CPU 0's slot (i686), or long mode with the first 4 GiB identity-mapped and
/// IA32_GS_BASE on CPU 0's slot (x86_64); FPU/SSE on, interrupts off, stack 16-byte
/// aligned. Does not return.
@c(kernel_main)
func kernelMain(_ magic: UInt32, _ info: UInt32) {
    Serial.initialize()
    #if arch(x86_64)
    Console.printLine("Quarry x86_64 test kernel")
    #else
    Console.printLine("Quarry i686 test kernel")
    #endif

    // Read the multiboot information first: nothing below may overwrite it.
    var ramEnd: UInt = 0
    if magic == Kernel.multibootMagic, info != 0 {
        // Sound: a multiboot loader passed `info` in EBX; it points at its information
        // structure, of which only the first three words are read.
        let mbi = UnsafePointer<MultibootInfo>(bitPattern: UInt(info))!.pointee
        if mbi.flags & 1 != 0 { ramEnd = 0x10_0000 + UInt(mbi.memUpper) * 1024 }
    }

    TestHarness.check(
        "boot: multiboot magic", magic == Kernel.multibootMagic,
        "EAX was not 0x2BADB002 at entry")
    TestHarness.check(
        "serial: COM1 loopback", Serial.loopbackWorks(),
        "bytes sent in loopback mode did not come back")
    TestHarness.checkEqual(
        "platform: maxCPUs matches the boot code", X86Platform.maxCPUs,
        Int(QUARRY_MAX_CPUS))
    TestHarness.checkEqual("platform: cpuIndex is 0 on the boot CPU", X86Platform.cpuIndex, 0)
    TestHarness.check(
        "arena: page-aligned, at least 16 MiB",
        Kernel.arenaBase % 4096 == 0 && Kernel.arenaSize % 4096 == 0
            && Kernel.arenaSize >= 16 << 20,
        "linker/<arch>.ld arena symbols are wrong")
    TestHarness.check(
        "arena: inside the RAM the loader reports",
        ramEnd >= Kernel.arenaBase + UInt(Kernel.arenaSize),
        "run QEMU with more memory (-m 128M)")

    // From here on, class instances, array buffers and escaping closures come from Quarry:
    // the Embedded runtime calls posix_memalign/free, which libquarry.a's quarry_libc.o
    // defines over the C ABI's global instance. Nothing above allocates (an allocation
    // before quarry_init would trap: posix_memalign says ENOMEM until then).
    // Sound: the slice is the arena's last runtimeArenaBytes, used by nothing else.
    let runtimeInit = quarry_init(
        UnsafeMutableRawPointer(bitPattern: Kernel.runtimeArenaBase),
        Kernel.runtimeArenaBytes)
    TestHarness.checkEqual("runtime: quarry_init on the runtime slice", Int(runtimeInit.rawValue), 0)

    // Interrupts: IDT, PIC out of the way, LAPIC, then the first sti.
    Interrupts.buildIDT()
    Interrupts.load()
    Interrupts.remapAndMaskPIC()
    let masks = Interrupts.picMasks
    TestHarness.check(
        "interrupts: 8259 PIC masked", masks.master == 0xFF && masks.slave == 0xFF,
        "PIC mask registers are not 0xFF")
    TestHarness.check(
        "interrupts: disable/restore nest with interrupts off",
        PlatformChecks.interruptNestingWorks(), "IF differs from the saved state")
    TestHarness.check(
        "interrupts: int3 returns through the stub", PlatformChecks.breakpointReturns(),
        "the breakpoint was not counted or its frame is wrong")

    Clock.calibrate()
    TestHarness.check(
        "clock: TSC calibrated against the PIT",
        Clock.tscPerMillisecond.load(ordering: .relaxed) > 1000,
        "fewer than 1000 TSC ticks per millisecond")
    TestHarness.check(
        "lapic: enabled at 0xFEE00000", LocalAPIC.isAtResetBase,
        "IA32_APIC_BASE moved or disabled the LAPIC")
    LocalAPIC.enable()
    LocalAPIC.calibrateTimer(hz: UInt(Kernel.timerHz))
    LocalAPIC.startPeriodicTimer()
    quarry_sti()

    let tickStart = Clock.now()
    let ticks = PlatformChecks.ticksWithinDeadline()
    let tickMilliseconds = Clock.milliseconds(from: tickStart, to: Clock.now())
    Console.line {
        Console.print("clock: ")
        Console.decimal(Clock.tscPerMillisecond.load(ordering: .relaxed))
        Console.print(" TSC ticks/ms; LAPIC timer count ")
        Console.decimal(LocalAPIC.timerInitialCount.load(ordering: .relaxed))
        Console.print(" for ")
        Console.decimal(Kernel.timerHz)
        Console.print(" Hz; ")
        Console.decimal(ticks)
        Console.print(" ticks in ")
        Console.decimal(tickMilliseconds)
        Console.print(" ms")
        Console.newline()
    }
    TestHarness.checkAtLeast(
        "timer: 100 ticks on the boot CPU within 3 s", ticks,
        PlatformChecks.requiredTicks)
    TestHarness.check(
        "interrupts: disable/restore nest with interrupts on",
        PlatformChecks.interruptNestingWorks(), "IF differs from the saved state")
    TestHarness.check(
        "interrupts: masking holds off the timer", PlatformChecks.maskingHoldsOffTheTimer(),
        "a tick arrived while masked, or none after restore")
    Interrupts.clobberSIMDInTimer.store(true, ordering: .relaxed)
    TestHarness.check(
        "interrupts: fxsave/fxrstor keep every xmm register across a clobbering timer handler",
        PlatformChecks.simdSurvivesInterrupts(), "an xmm register changed across hlt")

    // SMP.
    let firmwareCount = SMP.firmwareCPUCount()
    TestHarness.check(
        "smp: fw_cfg reports the CPU count", firmwareCount != nil,
        "no QEMU fw_cfg signature at port 0x510")
    let expected = min(firmwareCount ?? 1, X86Platform.maxCPUs)
    let online = SMP.startApplicationProcessors(expected: expected)
    Console.line {
        Console.print("smp: ")
        Console.decimal(online)
        Console.print(" of ")
        Console.decimal(expected)
        Console.print(" CPUs online")
        Console.newline()
    }
    TestHarness.checkEqual("smp: every CPU came online", online, expected)
    SMP.runOnAllCPUs { cpu in PlatformChecks.phase(cpu) }
    PlatformChecks.reportPhase(cpuCount: online)
    Interrupts.clobberSIMDInTimer.store(false, ordering: .relaxed)

    // Sound: the arena is reserved by the linker script for Quarry alone.
    runAllocatorSuite(
        arenaBase: UnsafeMutableRawPointer(bitPattern: Kernel.arenaBase)!,
        arenaSize: Kernel.arenaSize - Kernel.runtimeArenaBytes - Kernel.reclaimArenaBytes)
    ReclaimSuite.run(
        base: UnsafeMutableRawPointer(bitPattern: Kernel.reclaimArenaBase)!, size: Kernel.reclaimArenaBytes)
    runRuntimeSuite(base: Kernel.runtimeArenaBase, size: Kernel.runtimeArenaBytes)

    TestHarness.finish()
}
