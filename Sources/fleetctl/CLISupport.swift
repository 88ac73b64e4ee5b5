import ArgumentParser
import BitModel
import Foundation

/// Prints an error message to stderr and exits with `code`, the CLI's convention for
/// failures that are the input's fault rather than a bug.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func readModel(at path: String) throws -> Model {
    do {
        return try ModelReader.read(contentsOf: URL(fileURLWithPath: path))
    } catch let error as ModelFormatError {
        throw CLIError("invalid model \(path): \(error.description)")
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func formatCount(_ value: Int) -> String {
    switch value {
    case 1_000_000_000...: return String(format: "%.2f G", Double(value) / 1e9)
    case 1_000_000...: return String(format: "%.2f M", Double(value) / 1e6)
    case 1_000...: return String(format: "%.1f K", Double(value) / 1e3)
    default: return "\(value)"
    }
}

func formatBytes(_ value: Int) -> String {
    switch value {
    case 1_048_576...: return String(format: "%.2f MiB", Double(value) / 1_048_576)
    case 1024...: return String(format: "%.1f KiB", Double(value) / 1024)
    default: return "\(value) B"
    }
}

/// Pads each column to its widest cell.
func table(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    let widths = first.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
    return rows.map { row in
        row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }.joined(separator: "\n")
}
