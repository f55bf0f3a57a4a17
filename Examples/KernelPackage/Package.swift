// swift-tools-version: 6.1
// KernelPackage: a multiboot kernel that uses Quarry as a SwiftPM dependency, through its
// Swift API (typed handles over X86Platform). Built for bare metal with Quarry's toolset:
//   swift build -c release --triple i686-unknown-none-elf --toolset ../../toolset.json
// and linked and booted by the repository's `make example` (docs/integration.md,
// "From a Swift package").
import PackageDescription

let package = Package(
    name: "KernelPackage",
    products: [
        // One archive with the kernel, its support code and Quarry, for the link step.
        .library(name: "Kernel", type: .static, targets: ["Kernel"])
    ],
    dependencies: [
        // `name:`: a path dependency is known by its folder's name, which a clone may change.
        .package(name: "Quarry", path: "../..")
    ],
    targets: [
        // kernel_main (Kernel.swift) over the allocator and its x86 Platform, X86Platform.
        .target(
            name: "Kernel",
            dependencies: [
                .product(name: "Quarry", package: "Quarry"), .product(name: "QuarryX86", package: "Quarry"), "Support",
            ]),
        // What Swift cannot say: the arena's linker symbols, the exit port, memset & co.
        .target(name: "Support"),
    ]
)
