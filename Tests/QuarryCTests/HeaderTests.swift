// HeaderTests: include/quarry.h against the library: the functions it declares are
// exactly the ones the C ABI exports; it compiles as strict C11 for -m32 and -m64; the
// standard-name shim defines exactly the six libc names.

import Foundation
import QuarryCScenario
import Testing

/// The package root, from this file's path.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Runs a tool; returns its exit status and standard output (standard error appended).
func run(_ tool: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [tool] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

let gccAvailable = (try? run("gcc", ["--version"]).status) == 0
let nmAvailable = (try? run("nm", ["--version"]).status) == 0

/// Whether the library under test is checked (QUARRY_CHECKED): then it also defines the
/// test hooks quarry.h declares under QUARRY_TESTING (and the C scenario sees them).
#if QUARRY_CHECKED
let libraryIsChecked = true
#else
let libraryIsChecked = false
#endif

/// Names of the functions include/quarry.h declares (comments stripped first); those of
/// its `#ifdef QUARRY_TESTING` block only with `testing`.
func headerFunctions(testing: Bool = false) throws -> Set<String> {
    var text = try String(contentsOf: packageRoot.appendingPathComponent("include/quarry.h"), encoding: .utf8)
    text = text.replacingOccurrences(of: #"/\*[\s\S]*?\*/"#, with: " ", options: .regularExpression)
    if !testing {
        text = text.replacingOccurrences(
            of: #"#ifdef QUARRY_TESTING[\s\S]*?#endif"#, with: " ", options: .regularExpression)
    }
    let regex = try NSRegularExpression(pattern: #"\b(quarry_[a-z0-9_]+)\s*\("#)
    let range = NSRange(text.startIndex..., in: text)
    return Set(regex.matches(in: text, range: range).map { String(text[Range($0.range(at: 1), in: text)!]) })
}

/// Defined global symbols of the given object files, as nm prints them.
func definedSymbols(_ objects: [String]) throws -> Set<String> {
    let (status, output) = try run("nm", ["-g", "--defined-only", "-P"] + objects)
    #expect(status == 0, "nm: \(output)")
    return Set(
        output.split(separator: "\n").compactMap { line in
            let name = line.split(separator: " ").first.map(String.init)
            return name?.hasSuffix(":") == true ? nil : name
        })
}

@Suite struct HeaderTests {
    @Test func declaresSomething() throws {
        let functions = try headerFunctions(testing: libraryIsChecked)
        #expect(functions.contains("quarry_init") && functions.contains("quarry_posix_memalign"))
        #expect(
            try headerFunctions(testing: true).subtracting(headerFunctions()) == [
                "quarry_test_fail_page_request", "quarry_test_injected_failures",
            ])
        // The C scenario takes the address of every declared function through the header
        // (the test hooks when built with QUARRY_TESTING, as it is with a checked library).
        #expect(functions.count == quarry_c_function_count)
    }

    @Test(.enabled(if: nmAvailable))
    func libraryExportsExactlyTheHeaderFunctions() throws {
        // The QuarryC objects sit next to the test bundle: <build>/QuarryC.build/*.o
        let bundle = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        let objectDirectory = bundle.deletingLastPathComponent().appendingPathComponent("QuarryC.build")
        let objects = try FileManager.default.contentsOfDirectory(atPath: objectDirectory.path)
            .filter { $0.hasSuffix(".o") }.map { objectDirectory.appendingPathComponent($0).path }
        #expect(!objects.isEmpty, "no objects in \(objectDirectory.path)")
        let exported = try definedSymbols(objects).filter { $0.hasPrefix("quarry_") }
        let declared = try headerFunctions(testing: libraryIsChecked)
        #expect(
            exported.subtracting(declared).isEmpty, "exported, not declared: \(exported.subtracting(declared).sorted())"
        )
        #expect(
            declared.subtracting(exported).isEmpty, "declared, not exported: \(declared.subtracting(exported).sorted())"
        )
    }

    @Test(
        .enabled(if: gccAvailable), arguments: ["-m32", "-m64"],
        [[], ["-ffreestanding"], ["-x", "c++", "-std=c++11"], ["-DQUARRY_TESTING"]])
    func headerCompilesStrictly(mode: String, extra: [String]) throws {
        let header = packageRoot.appendingPathComponent("include/quarry.h").path
        let language = extra.contains("c++") ? [] : ["-x", "c", "-std=c11"]
        let (status, output) = try run(
            "gcc",
            language + extra + [
                mode, "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", header,
            ])
        #expect(status == 0, "gcc \(mode) \(extra): \(output)")
    }

    @Test(.enabled(if: gccAvailable && nmAvailable), arguments: ["-m32", "-m64"])
    func libcShimDefinesTheStandardNames(mode: String) throws {
        let source = packageRoot.appendingPathComponent("Sources/QuarryLibc/quarry_libc.c").path
        let include = packageRoot.appendingPathComponent("include").path
        let object = FileManager.default.temporaryDirectory
            .appendingPathComponent("quarry_libc\(mode)-\(getpid()).o").path
        defer { try? FileManager.default.removeItem(atPath: object) }
        let flags = [
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffreestanding", "-fno-builtin",
            "-O2", "-fno-pic", mode, "-I", include, "-c", source, "-o", object,
        ]
        var (status, output) = try run("gcc", flags + ["-DQUARRY_EXPORT_LIBC_NAMES"])
        #expect(status == 0, "gcc: \(output)")
        #expect(
            try definedSymbols([object]) == ["malloc", "free", "calloc", "realloc", "posix_memalign", "aligned_alloc"])
        (status, output) = try run("nm", ["-u", "-P", object])
        let undefined = Set(
            output.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
        #expect(
            undefined == [
                "quarry_malloc", "quarry_free", "quarry_calloc", "quarry_realloc",
                "quarry_posix_memalign", "quarry_aligned_alloc",
            ])
        // Without the macro (the host build) it defines nothing.
        (status, output) = try run("gcc", flags)
        #expect(status == 0, "gcc: \(output)")
        #expect(try definedSymbols([object]).isEmpty)
    }
}
