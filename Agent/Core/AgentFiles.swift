import BitModel
import FleetKit
import Foundation

/// The agent's data directory:
/// - `identity.json` (0600): device id, credential, fleet id, pinned controller key;
/// - `state.json`: active and previous model slots, last accepted sequence, unsent reports;
/// - `aggregates.json`: raw aggregate windows and shadow counts, the released (noised) batch
///   awaiting acknowledgement, and the epsilon spent (one file: a release and its charge
///   are written together);
/// - `models/<sha256>.bnn`: installed models; `downloads/<sha256>.part`: partial downloads.
/// Every file is replaced atomically (temp file, fsync, rename).
struct AgentFiles: Sendable {
    let root: URL

    init(_ root: URL) throws {
        self.root = root
        for directory in [root, models, downloads] {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }

    var identityURL: URL { root.appendingPathComponent("identity.json") }
    var stateURL: URL { root.appendingPathComponent("state.json") }
    var aggregatesURL: URL { root.appendingPathComponent("aggregates.json") }
    var shadowStatsURL: URL { root.appendingPathComponent("shadow.json") }
    var listenURLFile: URL { root.appendingPathComponent("agent.url") }
    var models: URL { root.appendingPathComponent("models") }
    var downloads: URL { root.appendingPathComponent("downloads") }

    func modelURL(sha256: String) -> URL { models.appendingPathComponent("\(sha256).bnn") }
    func partialURL(sha256: String) -> URL { downloads.appendingPathComponent("\(sha256).part") }

    func load<T: Decodable>(_ type: T.Type, from url: URL) throws -> T? {
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        return try FleetJSON.decoder.decode(type, from: data)
    }

    func save<T: Encodable>(_ value: T, to url: URL, secret: Bool = false) throws {
        try AtomicFile.write(try FleetJSON.encoder.encode(value), to: url, permissions: secret ? 0o600 : 0o644)
    }
}

struct AgentIdentity: Codable, Sendable {
    var deviceID: String
    var credential: String
    var fleetID: String
    var publicKey: String
    var controllerURL: String
}

/// One installed model slot.
struct InstalledModel: Codable, Sendable, Equatable {
    var name: String
    var version: String
    var sha256: String
    var sequence: Int64

    var activeModel: ActiveModel { ActiveModel(name: name, version: version, sha256: sha256, sequence: sequence) }
}

struct AgentState: Codable, Sendable {
    var active: InstalledModel?
    var previous: InstalledModel?
    /// A model under shadow evaluation: run next to the active one, never served.
    var shadow: InstalledModel?
    var lastAcceptedSequence: Int64 = 0
    /// The signed manifest of `lastAcceptedSequence`: proof for a controller that lost it.
    var lastAcceptedManifest: SignedManifest?
    /// Reports not yet acknowledged by the controller.
    var pendingReports: [DeploymentReport] = []
    /// Events not yet sent, e.g. manifests refused (bad signature, replay, other device).
    var pendingEvents: [DeviceEvent] = []
    /// The fleet's privacy settings, as the controller last sent them.
    var privacy = PrivacySettings()
    /// Differential-privacy epsilon spent so far, as of the last successful heartbeat. The
    /// authoritative ledger is aggregates.json (AggregateBuffer), written with each release;
    /// this copy lets an older state file seed it.
    var epsilonSpent: Double = 0
    /// Set while a newly activated model is on probation (see AgentRuntime.probation).
    var probation: Probation?
    /// Last failed sequence and when, so a permanently broken deployment is retried slowly.
    var failedSequence: Int64?
    var failedAt: Date?
}

/// A newly activated model's trial period: if it misbehaves (inference failures, latency
/// far above its budget, or the agent restarting repeatedly) before `until`, the agent
/// returns to the previous slot by itself and reports why.
struct Probation: Codable, Sendable {
    var sequence: Int64
    var until: Date
    var starts: Int
    var violations: Int
    var lastViolation: String?
}
