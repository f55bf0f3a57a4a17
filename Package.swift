// swift-tools-version: 6.1
// Quarry: a freestanding slab allocator in Embedded Swift.
// This manifest is the host build (tests). The Embedded images for
// i686/x86_64-unknown-none-elf are built from the same sources by the Makefile.
import PackageDescription

let checked: [SwiftSetting] = [
    // Checked builds compile every `checkInvariants()` walk in; tests run them
    // after every mutating operation.
    .define("QUARRY_CHECKED", .when(configuration: .debug)),
]

let package = Package(
    name: "Quarry",
    products: [
        .library(name: "Quarry", targets: ["Quarry"]),
    ],
    targets: [
        .target(name: "Quarry", swiftSettings: checked),
        .testTarget(
            name: "QuarryTests",
            dependencies: ["Quarry"],
            swiftSettings: checked
        ),
    ]
)
