// undocumented-symbols.swift: fails when a public symbol of module Quarry has no doc comment.
// Run by `make docs` (docs/Makefile.inc) with the toolchain's `swift` as a script:
//
//     swift Tests/undocumented-symbols.swift DIR
//
// DIR holds the symbol graphs swiftc wrote for module Quarry (`-emit-symbol-graph`:
// the module's symbols file, and one per other module whose types it extends, with
// public symbols only). Every symbol with a source location must carry a doc
// comment. Symbols without a location are the compiler's (a raw-value enum's initialiser
// and hash value): there is no line to document. A protocol extension's method is
// listed once per conforming type with the extension's location; it is reported once.
// Prints `file:line: kind name` per undocumented symbol and exits 1 if there is any.

import Foundation

guard CommandLine.arguments.count == 2 else {
    FileHandle.standardError.write(
        "usage: swift Tests/undocumented-symbols.swift SYMBOL-GRAPH-DIR\n".data(using: .utf8)!)
    exit(2)
}
let directory = URL(fileURLWithPath: CommandLine.arguments[1])
let files = (try? FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)) ?? []
let graphs = files.filter {
    $0.lastPathComponent.hasPrefix("Quarry") && $0.lastPathComponent.hasSuffix(".symbols.json")
}
guard !graphs.isEmpty else {
    print("undocumented-symbols: no Quarry*.symbols.json in \(directory.path)")
    exit(2)
}

let cwd = FileManager.default.currentDirectoryPath + "/"
var checked = 0
var missing: [String: (file: String, line: Int, report: String)] = [:]  // by "file:line"
for graph in graphs {
    let data = try Data(contentsOf: graph)
    guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
        let symbols = root["symbols"] as? [[String: Any]]
    else {
        print("undocumented-symbols: \(graph.path) is not a symbol graph")
        exit(2)
    }
    for symbol in symbols {
        guard let location = symbol["location"] as? [String: Any],
            let uri = location["uri"] as? String,
            let position = location["position"] as? [String: Any],
            let line = position["line"] as? Int
        else { continue }
        checked += 1
        let lines = ((symbol["docComment"] as? [String: Any])?["lines"] as? [[String: Any]]) ?? []
        let text = lines.compactMap { $0["text"] as? String }.joined().trimmingCharacters(in: .whitespaces)
        if !text.isEmpty { continue }
        var file = uri.hasPrefix("file://") ? String(uri.dropFirst("file://".count)) : uri
        if file.hasPrefix(cwd) { file = String(file.dropFirst(cwd.count)) }
        let kind = (symbol["kind"] as? [String: Any])?["displayName"] as? String ?? "symbol"
        let name = (symbol["pathComponents"] as? [String])?.joined(separator: ".") ?? "?"
        // Positions are 0-based; editors and compilers count lines from 1.
        let place = "\(file):\(line + 1)"
        if missing[place] == nil { missing[place] = (file, line + 1, "\(place): \(kind) \(name)") }
    }
}

if missing.isEmpty {
    print("== docs: every public symbol of module Quarry has a doc comment (\(checked) checked)")
    exit(0)
}
for entry in missing.values.sorted(by: { ($0.file, $0.line) < ($1.file, $1.line) }) { print(entry.report) }
print("== docs: \(missing.count) public symbols of module Quarry without a doc comment (add a /// comment)")
exit(1)
