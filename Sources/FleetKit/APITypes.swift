import Foundation

// JSON bodies of the controller's API (/api/v1) and the agent's local API (/v1). Shared
// by the controller, the agent and fleetctl so the three can never disagree on a field.
// Dates travel as ISO 8601.

public struct APIErrorBody: Codable, Sendable, Equatable {
    public var error: Detail
    public struct Detail: Codable, Sendable, Equatable {
        public var code: String
        public var message: String
    }
    public init(code: String, message: String) { error = Detail(code: code, message: message) }
}

// MARK: Models

public struct ModelVersionInfo: Codable, Sendable, Equatable {
    public var id: Int64
    public var name: String
    public var version: String
    public var sha256: String
    public var size: Int
    public var description: String
    public var labels: [String]
    public var inputShape: [Int]
    public var outputShape: [Int]
    public var binaryMACs: Int
    public var properties: [String: String]
    public var createdAt: Date
    public var createdBy: String

    public init(id: Int64, name: String, version: String, sha256: String, size: Int, description: String, labels: [String],
                inputShape: [Int], outputShape: [Int], binaryMACs: Int, properties: [String: String], createdAt: Date, createdBy: String) {
        self.id = id
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.size = size
        self.description = description
        self.labels = labels
        self.inputShape = inputShape
        self.outputShape = outputShape
        self.binaryMACs = binaryMACs
        self.properties = properties
        self.createdAt = createdAt
        self.createdBy = createdBy
    }
}

// MARK: Enrollment

public struct EnrollmentTokenRequest: Codable, Sendable {
    public var expiresInSeconds: Int
    public var labels: [String: String]
    public init(expiresInSeconds: Int, labels: [String: String] = [:]) {
        self.expiresInSeconds = expiresInSeconds
        self.labels = labels
    }
}

public struct EnrollmentTokenResponse: Codable, Sendable {
    /// `enr_<secret>.<fingerprint hex>` (see `EnrollmentToken`): the agent checks the
    /// controller's key against the fingerprint before pinning it.
    public var token: String
    public var expiresAt: Date
    /// `sha256:<hex>` of the controller's signing key, also inside `token`.
    public var controllerKeyFingerprint: String?
    public init(token: String, expiresAt: Date, controllerKeyFingerprint: String? = nil) {
        self.token = token
        self.expiresAt = expiresAt
        self.controllerKeyFingerprint = controllerKeyFingerprint
    }
}

public struct EnrollRequest: Codable, Sendable {
    public var token: String
    public var name: String
    public var labels: [String: String]
    /// Where the controller can push manifests, e.g. http://10.0.0.7:7070 (may be empty).
    public var pushURL: String
    public var agentVersion: String
    public init(token: String, name: String, labels: [String: String], pushURL: String, agentVersion: String) {
        self.token = token
        self.name = name
        self.labels = labels
        self.pushURL = pushURL
        self.agentVersion = agentVersion
    }
}

public struct EnrollResponse: Codable, Sendable {
    public var deviceID: String
    /// Shown once; the controller keeps only its hash.
    public var credential: String
    public var fleetID: String
    /// Base64 Ed25519 public key the agent pins, once its fingerprint matches the token's.
    public var publicKey: String
    /// Signing-key rotations, oldest first: a token that vouches for a key since rotated
    /// away still enrolls when this chain leads from that key to `publicKey`.
    public var keyAnnouncements: [SignedKeyAnnouncement]?
    /// Signed by `publicKey`: device and credential issued for this token (`EnrollmentReceipt`).
    public var receipt: SignedEnrollmentReceipt?
    public init(deviceID: String, credential: String, fleetID: String, publicKey: String, keyAnnouncements: [SignedKeyAnnouncement]? = nil,
                receipt: SignedEnrollmentReceipt? = nil) {
        self.receipt = receipt
        self.keyAnnouncements = keyAnnouncements
        self.deviceID = deviceID
        self.credential = credential
        self.fleetID = fleetID
        self.publicKey = publicKey
    }
}

// MARK: Device state and heartbeats

/// Where a device is with one deployment (by manifest sequence).
public enum DeploymentState: String, Codable, Sendable, CaseIterable {
    case pending, notified, downloading, installed, active, failed
}

public struct DeploymentReport: Codable, Sendable, Equatable {
    public var sequence: Int64
    public var state: DeploymentState
    public var reason: String?
    public init(sequence: Int64, state: DeploymentState, reason: String? = nil) {
        self.sequence = sequence
        self.state = state
        self.reason = reason
    }
}

public struct ActiveModel: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    public var sha256: String
    public var sequence: Int64
    public init(name: String, version: String, sha256: String, sequence: Int64) {
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.sequence = sequence
    }
}

/// Something a device wants the operator to know, e.g. a refused manifest.
public struct DeviceEvent: Codable, Sendable, Equatable {
    public var at: Date
    public var kind: String
    public var message: String
    public init(at: Date, kind: String, message: String) {
        self.at = at
        self.kind = kind
        self.message = message
    }
}

public struct HeartbeatRequest: Codable, Sendable {
    public var agentVersion: String
    public var pushURL: String
    public var activeModel: ActiveModel?
    /// Reports not yet acknowledged by the controller, oldest first.
    public var reports: [DeploymentReport]
    /// Aggregates only: never inputs, outputs or per-inference records.
    public var aggregates: [AggregateWindow]
    public var events: [DeviceEvent]
    /// Shadow-evaluation counts since the last heartbeat.
    public var shadow: [ShadowReport]
    /// Total differential-privacy epsilon this device has spent on released windows and
    /// shadow reports (charged when the noise is drawn, once per release).
    public var epsilonSpent: Double?
    /// The newest manifest this device accepted, sent when the controller offers one that
    /// is not newer (it lost deployments: power loss, a restored backup). Its signature
    /// proves the sequence, and the controller resynchronises (SequenceResync).
    public var acceptedManifest: SignedManifest?
    /// Random, fresh per heartbeat; the signed reply echoes it (see `HeartbeatReply`).
    public var nonce: String?
    /// The device's own limit (`fleet-agent --epsilon-budget`), if it has one.
    public var epsilonBudget: Double?
    /// Why the device is holding its counts back instead of releasing them, e.g. its
    /// epsilon budget is spent; nil while it releases normally.
    public var releasesWithheld: String?
    public init(agentVersion: String, pushURL: String, activeModel: ActiveModel?, reports: [DeploymentReport],
                aggregates: [AggregateWindow], events: [DeviceEvent], shadow: [ShadowReport] = []) {
        self.shadow = shadow
        self.agentVersion = agentVersion
        self.pushURL = pushURL
        self.activeModel = activeModel
        self.reports = reports
        self.aggregates = aggregates
        self.events = events
    }
}

/// The unsigned fields are kept for tools and older agents; an agent acts only on `signed`,
/// which carries the same values signed for this device and this heartbeat's nonce.
public struct HeartbeatResponse: Codable, Sendable {
    /// The manifest this device should run, signed for it; nil when none is deployed.
    public var desired: SignedManifest?
    /// Seconds until the next heartbeat (the agent adds jitter).
    public var heartbeatInterval: Double
    /// Signing-key rotations, oldest first; agents follow them from their pinned key.
    public var keyAnnouncements: [SignedKeyAnnouncement]
    /// The fleet's privacy settings, applied by the agent before aggregates leave it.
    public var privacy: PrivacySettings
    /// Everything above, with fleet, device, nonce and issue time, signed by the controller.
    public var signed: SignedHeartbeatReply?
    public init(desired: SignedManifest?, heartbeatInterval: Double, keyAnnouncements: [SignedKeyAnnouncement] = [],
                privacy: PrivacySettings = PrivacySettings(), signed: SignedHeartbeatReply? = nil) {
        self.signed = signed
        self.privacy = privacy
        self.keyAnnouncements = keyAnnouncements
        self.desired = desired
        self.heartbeatInterval = heartbeatInterval
    }
}

/// What a device learned by running a shadow model next to its active one: counts only.
public struct ShadowReport: Codable, Sendable, Equatable {
    /// Sequence of the shadow deployment.
    public var sequence: Int64
    public var samples: Int
    /// Inputs on which both models chose the same top-1 class.
    public var agreements: Int
    /// classes x classes counts, row = active model's class, column = shadow model's class.
    public var confusion: [Int]
    public var classes: Int
    public var confidenceDeltaSum: Double
    public var latencyDeltaSumMs: Double
    /// The privacy mechanisms applied on the device, as for aggregate windows; noisy counts
    /// may be negative and agreements may exceed samples.
    public var privacy: String?
    /// Confusion cells withheld under the fleet's minimum count (sent as 0).
    public var suppressedCells: [Int]?
    /// Random id of this release, drawn with its noise and resent with it: the controller
    /// adds a report once however often a lost reply makes the agent send it.
    public var releaseID: String?

    /// Each sample's latency difference counts at most this much (ms) either way, so one
    /// inference has a bounded effect on the sum and the noise can be calibrated to it.
    public static let latencyDeltaClampMs = 100.0

    public init(sequence: Int64, classes: Int) {
        self.sequence = sequence
        self.classes = classes
        samples = 0
        agreements = 0
        confusion = [Int](repeating: 0, count: classes * classes)
        confidenceDeltaSum = 0
        latencyDeltaSumMs = 0
    }

    public mutating func record(activeClass: Int, shadowClass: Int, confidenceDelta: Double, latencyDeltaMs: Double) {
        samples += 1
        if activeClass == shadowClass { agreements += 1 }
        if activeClass < classes && shadowClass < classes { confusion[activeClass * classes + shadowClass] += 1 }
        // Confidences lie in [0, 1], so a difference in [-1, 1]; anything else is clamped.
        confidenceDeltaSum += confidenceDelta.isFinite ? min(max(confidenceDelta, -1), 1) : 0
        let clamp = Self.latencyDeltaClampMs
        latencyDeltaSumMs += latencyDeltaMs.isFinite ? min(max(latencyDeltaMs, -clamp), clamp) : 0
    }

    public mutating func merge(_ other: ShadowReport) {
        // Saturating: the controller merges reports from devices, which it cannot trust.
        samples.saturatingAdd(other.samples)
        agreements.saturatingAdd(other.agreements)
        if confusion.count == other.confusion.count { confusion.saturatingAdd(other.confusion) }
        confidenceDeltaSum += other.confidenceDeltaSum
        latencyDeltaSumMs += other.latencyDeltaSumMs
    }

    public var isWellFormed: Bool {
        // Noisy counts (privacy "laplace ...") may be negative, within the noisy-count bound.
        let noisy = privacy?.contains("laplace") == true
        let counts = [samples, agreements] + confusion
        let exactShape = samples >= 0 && agreements >= 0 && agreements <= samples && confusion.allSatisfy { $0 >= 0 }
        return (noisy || exactShape) && counts.allSatisfy { abs($0) < 1 << 40 } && classes >= 0 && classes <= 10_000
            && confusion.count == classes * classes
            && confidenceDeltaSum.isFinite && latencyDeltaSumMs.isFinite
            && (privacy?.count ?? 0) <= 200 && (suppressedCells?.count ?? 0) <= confusion.count && (releaseID?.count ?? 0) <= 64
    }
}

// MARK: Devices and deployments (admin)

public struct DeviceInfo: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    /// The enrollment token's labels: what deployments and rollouts target.
    public var labels: [String: String]
    /// Labels the device asked for when it enrolled; shown, never targeted.
    public var proposedLabels: [String: String]?
    public var enrolledAt: Date
    public var lastSeen: Date?
    /// online, stale or offline (by last heartbeat), or revoked.
    public var status: String
    public var agentVersion: String
    public var pushURL: String
    public var activeModel: ActiveModel?
    public var desiredSequence: Int64?
    public var deploymentState: DeploymentState?
    public var deploymentReason: String?
    public init(id: String, name: String, labels: [String: String], enrolledAt: Date, lastSeen: Date?, status: String, agentVersion: String,
                pushURL: String, activeModel: ActiveModel?, desiredSequence: Int64?, deploymentState: DeploymentState?, deploymentReason: String?) {
        self.id = id
        self.name = name
        self.labels = labels
        self.enrolledAt = enrolledAt
        self.lastSeen = lastSeen
        self.status = status
        self.agentVersion = agentVersion
        self.pushURL = pushURL
        self.activeModel = activeModel
        self.desiredSequence = desiredSequence
        self.deploymentState = deploymentState
        self.deploymentReason = deploymentReason
    }
}

public struct DeploymentTarget: Codable, Sendable, Equatable {
    /// All devices when both are empty.
    public var labels: [String: String]
    public var devices: [String]
    public init(labels: [String: String] = [:], devices: [String] = []) {
        self.labels = labels
        self.devices = devices
    }
}

public struct DeploymentRequest: Codable, Sendable {
    /// Model name; optional when only one model name exists.
    public var model: String?
    public var version: String
    public var target: DeploymentTarget
    public init(model: String?, version: String, target: DeploymentTarget) {
        self.model = model
        self.version = version
        self.target = target
    }
}

public struct DeviceDeploymentInfo: Codable, Sendable, Equatable {
    public var deviceID: String
    public var deviceName: String
    public var state: DeploymentState
    public var reason: String?
    public var updatedAt: Date
    public var pushAttempts: Int

    public init(deviceID: String, deviceName: String, state: DeploymentState, reason: String?, updatedAt: Date, pushAttempts: Int) {
        self.deviceID = deviceID
        self.deviceName = deviceName
        self.state = state
        self.reason = reason
        self.updatedAt = updatedAt
        self.pushAttempts = pushAttempts
    }
}

public struct DeploymentInfo: Codable, Sendable, Equatable {
    public var id: Int64
    public var sequence: Int64
    public var model: String
    public var version: String
    public var sha256: String
    public var target: DeploymentTarget
    public var createdAt: Date
    public var createdBy: String
    /// Count of devices per state.
    public var counts: [String: Int]
    public var devices: [DeviceDeploymentInfo]?

    public init(id: Int64, sequence: Int64, model: String, version: String, sha256: String, target: DeploymentTarget, createdAt: Date, createdBy: String, counts: [String: Int], devices: [DeviceDeploymentInfo]?) {
        self.id = id
        self.sequence = sequence
        self.model = model
        self.version = version
        self.sha256 = sha256
        self.target = target
        self.createdAt = createdAt
        self.createdBy = createdBy
        self.counts = counts
        self.devices = devices
    }
}

public struct FleetStatus: Codable, Sendable, Equatable {
    public var devices: Int
    public var online: Int
    public var stale: Int
    public var offline: Int
    public var revoked: Int
    /// "name version" -> devices reporting it active.
    public var byModelVersion: [String: Int]
    public var latestDeployment: DeploymentInfo?
    public var onlineThresholdSeconds: Double
    public var offlineThresholdSeconds: Double

    public init(devices: Int, online: Int, stale: Int, offline: Int, revoked: Int, byModelVersion: [String: Int], latestDeployment: DeploymentInfo?, onlineThresholdSeconds: Double, offlineThresholdSeconds: Double) {
        self.devices = devices
        self.online = online
        self.stale = stale
        self.offline = offline
        self.revoked = revoked
        self.byModelVersion = byModelVersion
        self.latestDeployment = latestDeployment
        self.onlineThresholdSeconds = onlineThresholdSeconds
        self.offlineThresholdSeconds = offlineThresholdSeconds
    }
}

public struct MetricsSummary: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var model: String
        public var version: String
        public var devices: Int
        public var windows: Int
        public var inferences: Int
        public var errors: Int
        public var classCounts: [Int]
        public var latencyP50Ms: Double?
        public var latencyP95Ms: Double?
        public var latencyP99Ms: Double?
        public var meanConfidence: Double?
        /// The model's class labels by class index (from its metadata), when it has them.
        public var classLabels: [String]?

        /// The `count` most frequent classes, named by their labels where the model has them.
        public func topClasses(_ count: Int) -> [(name: String, count: Int)] {
            classCounts.enumerated().sorted { ($0.element, $1.offset) > ($1.element, $0.offset) }.prefix(count).map { index, value in
                let labels = classLabels ?? []
                return (labels.indices.contains(index) && !labels[index].isEmpty ? labels[index] : "class \(index)", value)
            }
        }

        public init(model: String, version: String, devices: Int, windows: Int, inferences: Int, errors: Int, classCounts: [Int],
                    latencyP50Ms: Double?, latencyP95Ms: Double?, latencyP99Ms: Double?, meanConfidence: Double?) {
            self.model = model
            self.version = version
            self.devices = devices
            self.windows = windows
            self.inferences = inferences
            self.errors = errors
            self.classCounts = classCounts
            self.latencyP50Ms = latencyP50Ms
            self.latencyP95Ms = latencyP95Ms
            self.latencyP99Ms = latencyP99Ms
            self.meanConfidence = meanConfidence
        }
    }
    public var since: Date
    public var entries: [Entry]

    public init(since: Date, entries: [Entry]) {
        self.since = since
        self.entries = entries
    }
}

/// One admin action in the audit log.
public struct AuditEntry: Codable, Sendable, Equatable {
    public var at: Date
    /// "admin", or "unauthenticated" for refused requests.
    public var actor: String
    /// Method and path, e.g. "POST /api/v1/deployments".
    public var action: String
    public var status: Int
    /// Client address.
    public var remote: String

    public init(at: Date, actor: String, action: String, status: Int, remote: String) {
        self.at = at
        self.actor = actor
        self.action = action
        self.status = status
        self.remote = remote
    }
}

/// One heartbeat as the controller received it: the device's privacy ledger.
public struct UploadRecord: Codable, Sendable, Equatable {
    public var at: Date
    public var bytes: Int
    /// What the upload contained, e.g. ["aggregates: 2 windows", "reports: 1"].
    public var fields: [String]
    public var epsilonSpent: Double?

    public init(at: Date, bytes: Int, fields: [String], epsilonSpent: Double?) {
        self.at = at
        self.bytes = bytes
        self.fields = fields
        self.epsilonSpent = epsilonSpent
    }
}

// MARK: Agent local API

public struct InferenceResponse: Codable, Sendable {
    public var model: String
    public var version: String
    public var topClass: Int
    public var label: String?
    public var confidence: Float
    public var latencyMs: Double
    public var scores: [Float]
    public init(model: String, version: String, topClass: Int, label: String?, confidence: Float, latencyMs: Double, scores: [Float]) {
        self.model = model
        self.version = version
        self.topClass = topClass
        self.label = label
        self.confidence = confidence
        self.latencyMs = latencyMs
        self.scores = scores
    }
}
