// swift-tools-version: 6.1
// QuarryBench: Quarry built for the host (release) behind a small C ABI, so the C benchmark
// runner (Benchmarks/runner) can drive it next to glibc, mimalloc, jemalloc and tcmalloc.
// Kept out of the main package so `swift test` never builds it. Build it with
//   swift build -c release -Xswiftc -enable-cmo-everything --package-path Benchmarks/QuarryBench
// (`-enable-cmo-everything` serialises Quarry's generic bodies as Embedded Swift does, so
// `SlabCache<BenchPlatform>` is specialised here; without it the calls stay generic.)
import PackageDescription

let package = Package(
    name: "QuarryBench",
    products: [
        .library(name: "QuarryBench", type: .dynamic, targets: ["QuarryBench"]),
    ],
    dependencies: [
        .package(name: "Quarry", path: "../.."),
    ],
    targets: [
        .target(name: "CQuarryBench"),
        .target(
            name: "QuarryBench",
            dependencies: ["CQuarryBench", .product(name: "Quarry", package: "Quarry")]
        ),
    ]
)
