import FleetKit
import Foundation
import GRDB

// Rows of the controller's SQLite database. Column names equal property names.

struct ModelRecord: Codable, Sendable, FetchableRecord, MutablePersistableRecord {
    static let databaseTableName = "model"
    var id: Int64?
    var name: String
    var version: String
    var sha256: String
    var size: Int
    /// The model's BitModel metadata as JSON, plus derived facts (MACs) for listings.
    var metadataJSON: String
    var binaryMACs: Int
    var createdAt: Date
    var createdBy: String

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

struct DeviceRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "device"
    var id: String
    var name: String
    var labelsJSON: String
    var credentialHash: String
    var enrolledAt: Date
    var lastSeen: Date?
    var agentVersion: String
    var pushURL: String
    var activeModelJSON: String?
    var desiredDeploymentID: Int64?
    var revoked: Bool
    /// Labels the device asked for at enrollment: shown, never used for targeting (only
    /// the enrollment token's labels in `labelsJSON` are).
    var proposedLabelsJSON: String = "{}"

    var labels: [String: String] {
        (try? JSONDecoder().decode([String: String].self, from: Data(labelsJSON.utf8))) ?? [:]
    }

    var proposedLabels: [String: String] {
        (try? JSONDecoder().decode([String: String].self, from: Data(proposedLabelsJSON.utf8))) ?? [:]
    }

    var activeModel: ActiveModel? {
        activeModelJSON.flatMap { try? JSONDecoder().decode(ActiveModel.self, from: Data($0.utf8)) }
    }
}

struct EnrollmentTokenRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "enrollmentToken"
    var tokenHash: String
    var labelsJSON: String
    var createdAt: Date
    var expiresAt: Date
    var usedAt: Date?
    var usedBy: String?
}

struct DeploymentRecord: Codable, Sendable, FetchableRecord, MutablePersistableRecord {
    static let databaseTableName = "deployment"
    var id: Int64?
    var sequence: Int64
    var modelID: Int64
    var targetJSON: String
    var createdAt: Date
    var createdBy: String
    /// Devices run this version next to their active model instead of switching to it.
    var shadow: Bool

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    var target: DeploymentTarget {
        (try? JSONDecoder().decode(DeploymentTarget.self, from: Data(targetJSON.utf8))) ?? DeploymentTarget()
    }
}

struct DeviceDeploymentRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "deviceDeployment"
    var deploymentID: Int64
    var deviceID: String
    var state: String
    var reason: String?
    var updatedAt: Date
    var pushAttempts: Int
    var nextPushAt: Date?
}

struct DeviceEventRecord: Codable, Sendable, FetchableRecord, MutablePersistableRecord {
    static let databaseTableName = "deviceEvent"
    var id: Int64?
    var deviceID: String
    var at: Date
    var kind: String
    var message: String
    /// When the controller stored it (retention goes by this; `at` is the device's clock).
    var receivedAt: Date?
}

/// A staged rollout: a deployment whose devices are added stage by stage. Its progress is
/// this row, so a restarted controller (or another replica) continues where it was.
struct RolloutRecord: Codable, Sendable, FetchableRecord, MutablePersistableRecord {
    static let databaseTableName = "rollout"
    var id: Int64?
    var deploymentID: Int64
    var stagesJSON: String
    var targetDevicesJSON: String
    var currentStage: Int
    var state: String
    var reason: String?
    var soakSeconds: Double
    var maxFailureFraction: Double
    var minDevices: Int
    var autoRollback: Bool
    var previousModelID: Int64?
    var rollbackDeploymentID: Int64?
    var stageStartedAt: Date
    var createdAt: Date
    var updatedAt: Date
    var createdBy: String
    var shadowGateJSON: String?
    var promotionDeploymentID: Int64?

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    var shadowGate: ShadowGate? { shadowGateJSON.flatMap { try? JSONDecoder().decode(ShadowGate.self, from: Data($0.utf8)) } }

    var stages: [Double] { (try? JSONDecoder().decode([Double].self, from: Data(stagesJSON.utf8))) ?? [100] }
    var targetDevices: [String] { (try? JSONDecoder().decode([String].self, from: Data(targetDevicesJSON.utf8))) ?? [] }
}

struct ShadowStatRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "shadowStat"
    var deploymentID: Int64
    var deviceID: String
    var reportJSON: String
    /// Release ids already added (newest last, bounded): a resent report is not added twice.
    var releaseIDsJSON: String = "[]"

    var releaseIDs: [String] { (try? JSONDecoder().decode([String].self, from: Data(releaseIDsJSON.utf8))) ?? [] }

    var report: ShadowReport? { try? JSONDecoder().decode(ShadowReport.self, from: Data(reportJSON.utf8)) }
}

struct MetricWindowRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "metricWindow"
    var deviceID: String
    var model: String
    var version: String
    var windowStart: Date
    var windowEnd: Date
    var inferences: Int
    var errors: Int
    var classCountsJSON: String
    var latencyJSON: String
    var confidenceJSON: String
}

extension MetricWindowRecord {
    /// The stored window as an aggregate (histograms are kept as JSON arrays).
    var window: AggregateWindow {
        func decode(_ json: String) -> [Int] { (try? JSONDecoder().decode([Int].self, from: Data(json.utf8))) ?? [] }
        var window = AggregateWindow(start: windowStart, end: windowEnd, model: model, version: version, classes: 0)
        window.inferences = inferences
        window.errors = errors
        window.classCounts = decode(classCountsJSON)
        window.latencyHistogram = decode(latencyJSON)
        window.confidenceHistogram = decode(confidenceJSON)
        return window
    }
}
