// swift-tools-version: 6.1
// Quarry: a freestanding slab allocator in Embedded Swift.
// The host build (tests) and, with toolset.json's Embedded flags, the bare-metal build of
// the Swift API, the targets Quarry and QuarryX86 (what a dependent package uses):
//   swift build -c release --triple i686-unknown-none-elf --toolset toolset.json --target QuarryX86
// The other targets are host-only (QuarryC is bare metal only inside the Makefile's one
// module). The Makefile compiles the same sources, with the same toolset.json, into
// libquarry.a (one module with the C ABI) and the test kernels.
import PackageDescription

// QUARRY_ASAN=1 (make test-asan, with --sanitize=address): Quarry poisons free objects
// and spans through the CQuarryASan shim (docs/testing.md). Off, the shim is not built.
let asan = Context.environment["QUARRY_ASAN"] == "1"

let checked: [SwiftSetting] =
    [
        // Checked builds compile every `checkInvariants()` walk in; tests run them
        // after every mutating operation.
        .define("QUARRY_CHECKED", .when(configuration: .debug))
    ] + (asan ? [.define("QUARRY_ASAN")] : [])

let package = Package(
    name: "Quarry",
    products: [
        .library(name: "Quarry", targets: ["Quarry"]),
        // X86Platform: Quarry's Platform on bare-metal x86 (a kernel booted by boot/).
        .library(name: "QuarryX86", targets: ["QuarryX86"]),
        // The C ABI of include/quarry.h over one global instance (host build, for tests;
        // the bare-metal libquarry.a compiles Sources/QuarryC into module Quarry).
        .library(name: "QuarryC", targets: ["QuarryC"]),
    ],
    targets: [
        .target(name: "Quarry", dependencies: asan ? ["CQuarryASan"] : [], swiftSettings: checked),
        .target(name: "QuarryX86", dependencies: ["Quarry", "CQuarrySupport"]),
        // The instructions Swift cannot say (port I/O, flags, CPU index): static inline asm.
        .systemLibrary(name: "CQuarrySupport", path: "Sources/CQuarrySupport/include"),
        // include/quarry.h as a Clang module, so the C ABI implements it with @c @implementation.
        .systemLibrary(name: "CQuarryHeader", path: "include"),
        .target(name: "QuarryC", dependencies: ["Quarry", "CQuarryHeader", "CQuarryHost"], swiftSettings: checked),
        // The host C library's thread-local words (each thread's CPU index and last error).
        .target(name: "CQuarryHost", path: "Sources/CQuarryHost"),
        // malloc, free, ... as C names for bare-metal images (QUARRY_EXPORT_LIBC_NAMES);
        // on the host it compiles to nothing, so the process keeps its own malloc.
        .target(
            name: "QuarryLibc", path: "Sources/QuarryLibc", publicHeadersPath: ".",
            cSettings: [.headerSearchPath("../../include")]
        ),
        .testTarget(
            name: "QuarryTests",
            dependencies: ["Quarry", "CTestPlatform", "QuarryScenarios"],
            swiftSettings: checked
        ),
        // Scenarios written once for the host tests and the test kernel (Makefile:
        // compiled into QuarryKernel), in Embedded-compatible Swift.
        .target(name: "QuarryScenarios", dependencies: ["Quarry"], path: "Tests/Scenarios", swiftSettings: checked),
        // ThreadPlatform's per-thread words (interrupt mask, virtual CPU) and EFLAGS.TF.
        .target(name: "CTestPlatform", path: "Tests/CTestPlatform"),
        // A C program written against quarry.h, linked into the C ABI tests. QUARRY_TESTING
        // (quarry.h's test-only functions) exactly when the library is checked (QUARRY_CHECKED).
        .target(
            name: "QuarryCScenario", path: "Tests/QuarryCScenario",
            cSettings: [.headerSearchPath("../../include"), .define("QUARRY_TESTING", .when(configuration: .debug))]
        ),
        .testTarget(
            name: "QuarryCTests",
            dependencies: ["QuarryC", "QuarryCScenario", "CQuarryHeader", "Quarry", "QuarryScenarios"],
            swiftSettings: checked
        ),
    ] + (asan ? [.target(name: "CQuarryASan")] : [])
)
