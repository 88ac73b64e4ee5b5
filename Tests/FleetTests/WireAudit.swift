import FleetKit
import Foundation

/// Checks the bytes an agent really sent (captured by `InterceptingProxy`) against
/// docs/PRIVACY.md: each request body has only allow-listed fields, and no input image
/// appears in any form: raw bytes, JSON numbers, or base64.
enum WireAudit {
    /// Every key path a request body may carry, per endpoint. Anything new must be added
    /// here on purpose (and to docs/PRIVACY.md), so no field starts leaking by accident.
    static let allowed: [String: Set<String>] = [
        "/api/v1/enroll": [".token", ".name", ".labels", ".labels.*", ".pushURL", ".agentVersion"],
        "/api/v1/reports": ["[].sequence", "[].state", "[].reason"],
        "/api/v1/heartbeat": [
            ".agentVersion", ".pushURL", ".epsilonSpent", ".epsilonBudget", ".releasesWithheld",
            ".activeModel", ".activeModel.name", ".activeModel.version", ".activeModel.sha256", ".activeModel.sequence",
            ".reports", ".reports[].sequence", ".reports[].state", ".reports[].reason",
            ".events", ".events[].at", ".events[].kind", ".events[].message",
            ".aggregates", ".aggregates[].start", ".aggregates[].end", ".aggregates[].model", ".aggregates[].version",
            ".aggregates[].inferences", ".aggregates[].errors", ".aggregates[].classCounts", ".aggregates[].latencyHistogram",
            ".aggregates[].confidenceHistogram", ".aggregates[].privacy", ".aggregates[].suppressedClasses", ".aggregates[].suppressedCount",
            ".shadow", ".shadow[].sequence", ".shadow[].samples", ".shadow[].agreements", ".shadow[].confusion", ".shadow[].classes",
            ".shadow[].confidenceDeltaSum", ".shadow[].latencyDeltaSumMs", ".shadow[].privacy", ".shadow[].suppressedCells",
            ".shadow[].releaseID",
            // Protocol, not data: the reply's freshness nonce, and the controller's own signed
            // manifest sent back when it lost deployments (SequenceResync).
            ".nonce", ".acceptedManifest", ".acceptedManifest.payload", ".acceptedManifest.signature",
        ],
    ]

    /// Key paths of a JSON value; keys under `.labels` (chosen by the operator) are `*`.
    static func keyPaths(_ value: Any, _ path: String = "") -> Set<String> {
        var keys = Set<String>()
        if let dictionary = value as? [String: Any] {
            for (key, inner) in dictionary {
                let name = path == ".labels" ? "*" : key
                keys.insert(path + "." + name)
                keys.formUnion(keyPaths(inner, path + "." + name))
            }
        } else if let array = value as? [Any] {
            for inner in array { keys.formUnion(keyPaths(inner, path + "[]")) }
        }
        return keys
    }

    /// Every array of numbers in a JSON value.
    static func numberArrays(_ value: Any) -> [[Double]] {
        if let dictionary = value as? [String: Any] { return dictionary.values.flatMap(numberArrays) }
        guard let array = value as? [Any] else { return [] }
        let numbers = array.compactMap { ($0 as? NSNumber).map(\.doubleValue) }
        return (numbers.count == array.count && !numbers.isEmpty ? [numbers] : []) + array.flatMap(numberArrays)
    }

    /// Runs of 24 pixels from the middle of each image (flat background skipped).
    static func pixelRuns(_ images: [Data]) -> [[UInt8]] {
        images.flatMap { image -> [[UInt8]] in
            let pixels = [UInt8](image.suffix(784))
            return stride(from: 300, to: 700, by: 50).map { Array(pixels[$0..<($0 + 24)]) }.filter { Set($0).count > 4 }
        }
    }

    /// What is wrong with one captured request; empty if nothing.
    static func problems(_ request: InterceptingProxy.Captured, images: [Data]) -> [String] {
        var problems: [String] = []
        let name = "\(request.method) \(request.path)"
        if request.body.isEmpty {
            if request.method != "GET" && request.method != "HEAD" { problems.append("\(name) has no body but is not a GET") }
        } else if let schema = allowed[request.path] {
            if let object = try? JSONSerialization.jsonObject(with: request.body, options: [.fragmentsAllowed]) {
                let extra = keyPaths(object).subtracting(schema)
                if !extra.isEmpty { problems.append("\(name) carries fields outside the allow-list: \(extra.sorted())") }
                problems += inputs(inNumbers: numberArrays(object), images: images).map { "\(name): \($0)" }
            } else {
                problems.append("\(name) has a body that is not JSON")
            }
        } else {
            problems.append("\(name) sends a body (\(request.body.count) bytes) to an endpoint not in the allow-list")
        }
        problems += inputs(inBytes: Data(request.head.utf8) + request.body, images: images).map { "\(name): \($0)" }
        return problems
    }

    /// Pixel runs as raw bytes, or base64 (standard or URL-safe, any alignment), or as
    /// comma-separated decimal text.
    static func inputs(inBytes bytes: Data, images: [Data]) -> [String] {
        let text = String(decoding: bytes, as: UTF8.self).filter { !$0.isWhitespace }
        var found: [String] = []
        for run in pixelRuns(images) {
            if bytes.range(of: Data(run)) != nil { found.append("raw pixel bytes"); continue }
            for alignment in 0..<3 {
                let encoded = Data(run[alignment..<(alignment + 21)]).base64EncodedString()
                let urlSafe = encoded.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                if text.contains(encoded) || text.contains(urlSafe) { found.append("pixels as base64") }
            }
            let eight = Array(run.prefix(8))
            if Set(eight).count >= 5, text.contains(eight.map(String.init).joined(separator: ",")) { found.append("pixels as decimal text") }
        }
        return Array(Set(found)).sorted()
    }

    /// Pixel runs of 8 (also scaled to 0...1) inside any array of numbers.
    static func inputs(inNumbers arrays: [[Double]], images: [Data]) -> [String] {
        // Runs of 8 with at least 5 distinct values: counts of a histogram do not look like that by chance.
        let runs = pixelRuns(images).map { Array($0.prefix(8)).map(Double.init) }.filter { Set($0).count >= 5 }
        for array in arrays where array.count >= 8 {
            for start in 0...(array.count - 8) {
                let slice = Array(array[start..<(start + 8)])
                for run in runs where slice == run || zip(slice, run).allSatisfy({ abs($0 - $1 / 255) < 1e-6 }) {
                    return ["pixels as JSON numbers"]
                }
            }
        }
        return []
    }
}
