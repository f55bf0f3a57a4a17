// CacheObjectCompileTests: the misuse a `CacheObject` rules out does not compile. Each
// snippet is compiled with swiftc against the Quarry module of this test build and must
// fail with the expected diagnostic (a control snippet must compile). About 0.2 s each.
// Neighbours: Sources/Quarry/PerCPU/CacheObject.swift (the type), EmbeddedBuildTests (swiftc).

import Foundation
import Testing

/// The directory holding this build's Quarry.swiftmodule (next to the test bundle).
let moduleDirectory: String? = {
    guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
    let modules = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("Modules").path
    return FileManager.default.fileExists(atPath: modules + "/Quarry.swiftmodule") ? modules : nil
}()

@Suite struct CacheObjectCompileTests {
    /// (name, body of a generic function over `cache` and `other`, expected diagnostic or nil).
    /// The ownership errors come from SIL diagnostics, so every snippet is compiled with
    /// -emit-sil (type checking alone would pass them).
    static let snippets: [(String, String, String?)] = [
        (
            "control: allocate, use, free once",
            """
            let object = try cache.allocateObject()
            object.pointer.storeBytes(of: 1, as: UInt.self)
            object.free()
            """, nil
        ),
        (
            "free twice",
            """
            let object = try cache.allocateObject()
            object.free()
            object.free()
            """, "'object' consumed more than once"
        ),
        (
            "use after free",
            """
            let object = try cache.allocateObject()
            object.free()
            object.pointer.storeBytes(of: 1, as: UInt.self)
            """, "'object' used after consume"
        ),
        (
            "a copy freed too",
            """
            let object = try cache.allocateObject()
            let copy = object
            object.free()
            copy.free()
            """, "'object' consumed more than once"
        ),
        (
            "free to another cache",
            """
            let object = try cache.allocateObject()
            try other.free(object)
            """, "cannot convert value of type 'CacheObject<P>'"
        ),
        (
            "a handle made from an interior pointer",
            """
            let object = try cache.allocateObject()
            let inside = CacheObject<P>(state: cache.state, pointer: object.pointer + 8)
            inside.free()
            object.free()
            """, "'CacheObject<P>' initializer is inaccessible"
        ),
    ]

    @Test(
        .enabled(if: moduleDirectory != nil && FileManager.default.fileExists(atPath: swiftBin + "/swiftc")),
        arguments: 0..<snippets.count)
    func misuseDoesNotCompile(index: Int) throws {
        let (name, body, expected) = Self.snippets[index]
        let source = """
            import Quarry
            func snippet<P: Platform>(_ cache: SlabCache<P>, _ other: SlabCache<P>) throws(QuarryError) {
            \(body)
            }

            """
        let file = FileManager.default.temporaryDirectory
            .appendingPathComponent("cacheobject-snippet-\(getpid())-\(index).swift").path
        try source.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let (status, output) = try run(
            swiftBin + "/swiftc",
            ["-emit-sil", "-o", "/dev/null", "-I", moduleDirectory!, file])
        if let expected {
            #expect(status != 0, "\(name): compiled, but must not")
            #expect(output.contains("error: \(expected)"), "\(name): expected \"\(expected)\" in:\n\(output)")
        } else {
            #expect(status == 0, "\(name): must compile:\n\(output)")
        }
    }
}
