import Crypto
import Foundation

/// Staged rollouts: which devices belong to which stage, and the API bodies.
public enum RolloutPlan {
    /// A stable position of a device in [0, 1): the first 8 bytes of SHA-256(device id).
    /// Stage membership depends only on it, so re-running a rollout picks the same canaries.
    public static func position(of deviceID: String) -> Double {
        let digest = Array(SHA256.hash(data: Data(deviceID.utf8)))
        let value = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Double(value >> 11) / Double(1 << 53)
    }

    /// Index of the first stage whose cumulative share covers the device.
    public static func stage(of deviceID: String, stages: [Double]) -> Int {
        let p = position(of: deviceID)
        return stages.firstIndex { p < $0 / 100 } ?? (stages.count - 1)
    }

    /// Parses "5%,25%,100%" into increasing percentages ending at 100.
    public static func parseStages(_ text: String) throws -> [Double] {
        let values = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "%", with: "") }
        let stages = values.compactMap(Double.init)
        guard !stages.isEmpty, stages.count == values.count, stages.allSatisfy({ $0 > 0 && $0 <= 100 }),
              zip(stages, stages.dropFirst()).allSatisfy({ $0 < $1 }), stages.last == 100 else {
            throw RolloutPlanError(description: "stages must be increasing percentages ending at 100%, e.g. 5%,25%,100%; got '\(text)'")
        }
        return stages
    }
}

public struct RolloutPlanError: Error, CustomStringConvertible {
    public var description: String
}

public enum RolloutState: String, Codable, Sendable {
    case running, paused, halted, aborted, completed, rolledBack = "rolled-back"
}

public struct RolloutRequest: Codable, Sendable {
    public var model: String?
    public var version: String
    public var target: DeploymentTarget
    /// Cumulative percentages, e.g. [5, 25, 100].
    public var stages: [Double]
    public var soakSeconds: Double
    /// Halt when failed / finished exceeds this fraction (0...1).
    public var maxFailureFraction: Double
    /// ... once at least this many devices of the stage have finished.
    public var minDevices: Int
    public var autoRollback: Bool
    /// Shadow evaluation: devices run the new version next to the active one; a stage
    /// advances only when the gate is met, and the version is activated at the end.
    public var shadow: ShadowGate?

    public init(model: String?, version: String, target: DeploymentTarget, stages: [Double], soakSeconds: Double,
                maxFailureFraction: Double, minDevices: Int, autoRollback: Bool, shadow: ShadowGate? = nil) {
        self.shadow = shadow
        self.model = model
        self.version = version
        self.target = target
        self.stages = stages
        self.soakSeconds = soakSeconds
        self.maxFailureFraction = maxFailureFraction
        self.minDevices = minDevices
        self.autoRollback = autoRollback
    }
}

public struct ShadowGate: Codable, Sendable, Equatable {
    /// Required top-1 agreement between active and shadow model (0...1).
    public var minAgreement: Double
    /// Samples (inferences) required before a stage's agreement counts.
    public var minSamples: Int

    public init(minAgreement: Double, minSamples: Int) {
        self.minAgreement = minAgreement
        self.minSamples = minSamples
    }
}

public struct ShadowSummary: Codable, Sendable, Equatable {
    public var samples: Int
    public var agreements: Int
    public var agreement: Double?
    public var meanConfidenceDelta: Double?
    public var meanLatencyDeltaMs: Double?
    public var classes: Int
    public var confusion: [Int]
    /// Most samples one device counts for in `samples`/`agreements` (and so in the gate),
    /// and how many devices reported more than that; `confusion` and the means are raw.
    public var perDeviceCap: Int?
    public var cappedDevices: Int?

    public init(samples: Int, agreements: Int, agreement: Double?, meanConfidenceDelta: Double?, meanLatencyDeltaMs: Double?,
                classes: Int, confusion: [Int], perDeviceCap: Int? = nil, cappedDevices: Int? = nil) {
        self.perDeviceCap = perDeviceCap
        self.cappedDevices = cappedDevices
        self.samples = samples
        self.agreements = agreements
        self.agreement = agreement
        self.meanConfidenceDelta = meanConfidenceDelta
        self.meanLatencyDeltaMs = meanLatencyDeltaMs
        self.classes = classes
        self.confusion = confusion
    }
}

public struct RolloutStageInfo: Codable, Sendable, Equatable {
    public var percent: Double
    public var devices: Int
    /// Devices per deployment state ("waiting" for devices whose stage has not started).
    public var counts: [String: Int]
    public var startedAt: Date?
    public var shadow: ShadowSummary?

    public init(percent: Double, devices: Int, counts: [String: Int], startedAt: Date?, shadow: ShadowSummary? = nil) {
        self.shadow = shadow
        self.percent = percent
        self.devices = devices
        self.counts = counts
        self.startedAt = startedAt
    }
}

public struct RolloutInfo: Codable, Sendable, Equatable {
    public var id: Int64
    public var deploymentID: Int64
    public var sequence: Int64
    public var model: String
    public var version: String
    public var previousVersion: String?
    public var state: RolloutState
    public var reason: String?
    public var currentStage: Int
    public var stages: [RolloutStageInfo]
    public var soakSeconds: Double
    public var maxFailureFraction: Double
    public var minDevices: Int
    public var autoRollback: Bool
    public var rollbackDeploymentID: Int64?
    public var failures: [DeviceDeploymentInfo]
    public var shadowGate: ShadowGate?
    public var promotionDeploymentID: Int64?
    public var createdAt: Date
    public var updatedAt: Date

    public init(id: Int64, deploymentID: Int64, sequence: Int64, model: String, version: String, previousVersion: String?, state: RolloutState,
                reason: String?, currentStage: Int, stages: [RolloutStageInfo], soakSeconds: Double, maxFailureFraction: Double,
                minDevices: Int, autoRollback: Bool, rollbackDeploymentID: Int64?, failures: [DeviceDeploymentInfo],
                shadowGate: ShadowGate? = nil, promotionDeploymentID: Int64? = nil, createdAt: Date, updatedAt: Date) {
        self.shadowGate = shadowGate
        self.promotionDeploymentID = promotionDeploymentID
        self.id = id
        self.deploymentID = deploymentID
        self.sequence = sequence
        self.model = model
        self.version = version
        self.previousVersion = previousVersion
        self.state = state
        self.reason = reason
        self.currentStage = currentStage
        self.stages = stages
        self.soakSeconds = soakSeconds
        self.maxFailureFraction = maxFailureFraction
        self.minDevices = minDevices
        self.autoRollback = autoRollback
        self.rollbackDeploymentID = rollbackDeploymentID
        self.failures = failures
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}
