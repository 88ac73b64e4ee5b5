import BitModel
import Crypto
import FleetKit
import Foundation
import GRDB

/// The seed of a randomized fault test: BITFLEET_CRASH_SEED replays a run; printed always.
func faultSeed(_ test: String) -> UInt64 {
    let seed = ProcessInfo.processInfo.environment["BITFLEET_CRASH_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64(UInt32.max))
    print("\(test): seed \(seed) (replay with BITFLEET_CRASH_SEED=\(seed))")
    return seed
}

/// `PRAGMA integrity_check` on a database, opened read-only next to its live controller.
func integrityCheck(_ path: String) throws -> String {
    var configuration = Configuration()
    configuration.readonly = true
    let queue = try DatabaseQueue(path: path, configuration: configuration)
    return try queue.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check").joined(separator: "; ") }
}

/// A valid `.bnn` of about `floats * 4` bytes (one float dense layer); `tag` changes its
/// bytes (and so its SHA-256) cheaply without rebuilding the weights.
struct LargeModel {
    private var model: Model

    init(floats: Int = 768 * 1024) {
        var random = SeededGenerator(seed: 42)
        var builder = ModelBuilder()
        let outputs = floats / 1024
        let dense = builder.dense(builder.input, inFeatures: 1024, outFeatures: outputs, weights: random.floats(1024 * outputs))
        model = builder.build(metadata: ModelMetadata(
            name: "large", version: "", description: "", producer: "BitFleet tests",
            input: TensorSpec(name: "input", shape: [1, 1024], layout: .nc),
            output: TensorSpec(name: "output", shape: [1, outputs], layout: .nc)), output: dense)
    }

    func data(tag: String) throws -> Data {
        var tagged = model
        tagged.metadata.description = tag
        return try ModelWriter.data(for: tagged)
    }
}

func sha256Hex(_ data: Data) -> String {
    SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}
