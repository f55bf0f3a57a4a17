// EmbeddedBuildTests: the bare-metal library (core + X86Platform + C ABI, one Embedded
// module) compiles with -no-allocations for i686 and x86_64, defines every function of
// quarry.h, and needs from the image only the symbols docs/integration.md lists. The flags
// are toolset.json's (as `make lib` and `swift build --toolset` use them) plus the library's
// own: -no-allocations and the include directories.

import Foundation
import Testing

/// The toolchain's bin directory: $SWIFT_BIN, else /opt/swift/usr/bin.
let swiftBin = ProcessInfo.processInfo.environment["SWIFT_BIN"] ?? "/opt/swift/usr/bin"
let embeddedAvailable =
    FileManager.default.fileExists(atPath: swiftBin + "/swiftc")
    && FileManager.default.fileExists(atPath: swiftBin + "/../lib/swift/embedded")

/// What an image must provide to the library (docs/integration.md, "Symbols the library needs").
let allowedUndefined: Set<String> = [
    "memset", "memmove", "memcpy", "memcmp",
    // i686 only: 64-bit division (libgcc).
    "__udivdi3", "__umoddi3", "__divdi3", "__moddi3",
    // Resolved by the linker in a static link (swiftc always emits PIC).
    "_GLOBAL_OFFSET_TABLE_",
]

/// One tool's `extraCLIOptions` in toolset.json ("swiftCompiler", "cCompiler").
func toolsetOptions(_ tool: String) throws -> [String] {
    let data = try Data(contentsOf: packageRoot.appendingPathComponent("toolset.json"))
    let toolset = try JSONSerialization.jsonObject(with: data) as? [String: Any]
    let options = (toolset?[tool] as? [String: Any])?["extraCLIOptions"] as? [String]
    return try #require(options, "toolset.json has no \(tool).extraCLIOptions")
}

let makeAvailable = (try? run("make", ["--version"]).status) == 0

@Suite struct EmbeddedBuildTests {
    /// The Makefile reads toolset.json with awk (no JSON parser): it must see the options a
    /// JSON parser sees, in order, or `make lib` and `swift build --toolset` would differ.
    @Test(.enabled(if: makeAvailable), arguments: ["swiftCompiler", "cCompiler"])
    func makefileReadsTheToolset(tool: String) throws {
        let (status, output) = try run(
            "make",
            [
                "-s", "--no-print-directory", "-C", packageRoot.path, "toolset-options", "TOOL=\(tool)",
            ])
        #expect(status == 0, "make toolset-options: \(output)")
        let options = try toolsetOptions(tool)
        #expect(!options.isEmpty)
        #expect(output.split(whereSeparator: \.isWhitespace).map(String.init) == options)
    }

    @Test(.enabled(if: embeddedAvailable && nmAvailable), arguments: ["i686", "x86_64"])
    func libraryBuildsWithoutAllocations(arch: String) throws {
        let root = packageRoot.path
        func swiftFiles(_ directory: String) throws -> [String] {
            // Every layer folder's files (subpathsOfDirectory walks the whole tree).
            try FileManager.default.subpathsOfDirectory(atPath: root + "/" + directory)
                .filter { $0.hasSuffix(".swift") }.sorted().map { root + "/" + directory + "/" + $0 }
        }
        let sources = try swiftFiles("Sources/Quarry") + swiftFiles("Sources/QuarryX86") + swiftFiles("Sources/QuarryC")
        let object = FileManager.default.temporaryDirectory.appendingPathComponent("quarry-\(arch)-\(getpid()).o").path
        defer { try? FileManager.default.removeItem(atPath: object) }
        let (status, output) = try run(
            swiftBin + "/swiftc",
            ["-target", "\(arch)-unknown-none-elf"]
                + toolsetOptions("swiftCompiler") + [
                    "-Xfrontend", "-no-allocations",
                    "-I", root + "/Sources/CQuarrySupport/include", "-I", root + "/include",
                    "-module-name", "Quarry", "-c", "-o", object,
                ] + sources)
        #expect(status == 0, "swiftc \(arch): \(output)")
        guard status == 0 else { return }
        let defined = try definedSymbols([object])
        let declared = try headerFunctions()
        #expect(
            declared.subtracting(defined).isEmpty,
            "not in the \(arch) library: \(declared.subtracting(defined).sorted())")
        // The test hooks (quarry.h's QUARRY_TESTING block) only in a QUARRY_CHECKED library.
        let hooks = try headerFunctions(testing: true).subtracting(declared)
        #expect(!hooks.isEmpty && hooks.isDisjoint(with: defined), "test hooks in the \(arch) release library")
        let (_, undefinedText) = try run("nm", ["-u", "-P", object])
        let undefined = Set(
            undefinedText.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
        #expect(
            undefined.subtracting(allowedUndefined).isEmpty,
            "\(arch) library needs more than documented: \(undefined.subtracting(allowedUndefined).sorted())")
    }
}
