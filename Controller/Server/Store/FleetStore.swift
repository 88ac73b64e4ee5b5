import FleetKit
import Foundation

/// Everything the controller persists. One implementation per database engine (SQLite
/// now; PostgreSQL for replicated controllers later); no SQL lives outside a store.
protocol FleetStore: Sendable {
    func setting(_ key: String) async throws -> String?
    func setSetting(_ key: String, _ value: String) async throws

    /// Inserts a model version; `version` nil assigns the next "vN" for that name.
    func insertModel(name: String, version: String?, sha256: String, size: Int, metadataJSON: String,
                     binaryMACs: Int, createdBy: String, now: Date) async throws -> ModelRecord
    func models() async throws -> [ModelRecord]
    func model(id: Int64) async throws -> ModelRecord?

    func insertEnrollmentToken(_ record: EnrollmentTokenRecord) async throws
    /// Marks an unused, unexpired token used (atomically) and returns it; nil otherwise.
    func consumeEnrollmentToken(hash: String, deviceID: String, now: Date) async throws -> EnrollmentTokenRecord?

    func insertDevice(_ device: DeviceRecord) async throws
    func device(id: String) async throws -> DeviceRecord?
    func devices() async throws -> [DeviceRecord]
    /// Applies a whole heartbeat atomically; returns the device's desired deployment id.
    func ingestHeartbeat(_ heartbeat: HeartbeatWrite) async throws -> Int64?
    /// Call through `FleetService.revokeDevice`, which also drops the cached credential.
    func revokeDevice(id: String) async throws -> Bool

    /// Creates a deployment with the next fleet-wide sequence for `deviceIDs`, making it
    /// their desired deployment, with a pending push per device.
    func createDeployment(modelID: Int64, target: DeploymentTarget, deviceIDs: [String], createdBy: String, now: Date,
                          shadow: Bool) async throws -> DeploymentRecord
    /// Adds a device's shadow-evaluation counts to its total for that shadow deployment.
    func addShadowReport(deviceID: String, report: ShadowReport) async throws
    func shadowStats(deploymentID: Int64) async throws -> [ShadowStatRecord]
    /// Adds devices to an existing deployment (a rollout's next stage).
    func extendDeployment(id: Int64, deviceIDs: [String], now: Date) async throws
    /// Inserts `rollout` with its deployment of `modelID` to `firstStage`, in one transaction.
    func createRollout(_ rollout: RolloutRecord, modelID: Int64, target: DeploymentTarget, firstStage: [String], createdBy: String,
                       now: Date, shadow: Bool) async throws -> RolloutRecord
    func rollouts() async throws -> [RolloutRecord]
    func rollout(id: Int64) async throws -> RolloutRecord?
    /// Writes the rollout only if its state and stage are still `expected...` (another
    /// evaluation or an operator may have changed it meanwhile); false if it was not written.
    /// Stores `rollout` and applies `change`, in one transaction, if the stored rollout is
    /// still in `expectedState` at `expectedStage`; returns the stored rollout (with the id
    /// of a deployment the change created), or nil when another change came first.
    func transitionRollout(_ rollout: RolloutRecord, expectedState: String, expectedStage: Int, change: RolloutDeploymentChange?,
                           now: Date) async throws -> RolloutRecord?

    func deployments() async throws -> [DeploymentRecord]
    func deployment(id: Int64) async throws -> DeploymentRecord?
    func deviceDeployments(deploymentID: Int64) async throws -> [DeviceDeploymentRecord]
    func deviceDeployment(deploymentID: Int64, deviceID: String) async throws -> DeviceDeploymentRecord?
    /// Applies an agent's report about the deployment with `sequence`; reports about
    /// deployments the device was not part of are ignored.
    func applyReport(deviceID: String, report: DeploymentReport, now: Date) async throws

    /// Pending pushes whose time has come, for devices whose desired deployment it still is.
    func duePushes(now: Date, limit: Int) async throws -> [DeviceDeploymentRecord]
    func recordPush(deploymentID: Int64, deviceID: String, delivered: Bool, error: String?, nextAttempt: Date?, now: Date) async throws
    func failUnreachable(now: Date, silentFor seconds: Double, minPushAttempts: Int) async throws -> [DeviceDeploymentRecord]

    func insertEvents(deviceID: String, events: [DeviceEvent], now: Date) async throws
    func events(deviceID: String, limit: Int) async throws -> [DeviceEventRecord]

    func insertUpload(deviceID: String, _ upload: UploadRecord) async throws
    func uploads(deviceID: String, limit: Int) async throws -> [UploadRecord]
    /// Deletes up to `limit` ledger entries older than `cutoff`; returns how many.
    /// Deletes up to `limit` of `records` older than `cutoff`; returns how many went.
    func prune(_ records: RetainedRecords, before cutoff: Date, limit: Int) async throws -> Int
    /// The newest manifest sequence issued, and raising it (never lowering) past a sequence
    /// an agent proved it accepted.
    func currentSequence() async throws -> Int64
    func raiseSequence(atLeast value: Int64) async throws
    func insertSession(tokenHash: String, csrf: String, expiresAt: Date) async throws
    /// The CSRF token of a live session.
    func session(tokenHash: String, now: Date) async throws -> String?
    func deleteSession(tokenHash: String) async throws
    /// Ends every dashboard session and unused login link (admin token rotation).
    func deleteAllSessions() async throws
    func insertLoginLink(codeHash: String, expiresAt: Date) async throws
    /// Marks an unused, unexpired login link used; false otherwise.
    func consumeLoginLink(codeHash: String, now: Date) async throws -> Bool
    /// Every deployment that included the device, newest first, with its state there.
    func deviceHistory(deviceID: String) async throws -> [(DeploymentRecord, DeviceDeploymentRecord)]
    func insertAudit(_ entry: AuditEntry) async throws
    func audit(since: Date, limit: Int) async throws -> [AuditEntry]

    /// Stores windows by (device, model, version, start), replacing a repeated delivery.
    func mergeAggregates(deviceID: String, windows: [AggregateWindow]) async throws
    func metricWindows(since: Date, model: String?) async throws -> [MetricWindowRecord]
}

/// What one heartbeat writes: the device's state, its reports, shadow counts, events,
/// aggregate windows and the privacy-ledger entry describing the upload.
struct HeartbeatWrite: Sendable {
    var deviceID: String
    var now: Date
    var agentVersion: String
    var pushURL: String
    var activeModelJSON: String?
    var reports: [DeploymentReport]
    var shadow: [ShadowReport]
    var events: [DeviceEvent]
    var aggregates: [AggregateWindow]
    var upload: UploadRecord
}

enum StoreError: Error, CustomStringConvertible {
    case conflict(String)
    case notFound(String)

    var description: String {
        switch self {
        case .conflict(let message), .notFound(let message): return message
        }
    }
}

/// The deployment a rollout change brings with it.
enum RolloutDeploymentChange: Sendable {
    /// The devices of the stage just entered join the rollout's deployment.
    case extend(deviceIDs: [String])
    /// A new deployment of `modelID` to every device the rollout reached (`rollbackDeploymentID`).
    case rollBack(modelID: Int64, createdBy: String)
    /// A new regular deployment of the shadow-evaluated `modelID` to every target (`promotionDeploymentID`).
    case promote(modelID: Int64, createdBy: String)
}

/// What retention deletes by age (RecordRetention).
enum RetainedRecords: String, CaseIterable, Sendable {
    case uploads, audit, deviceEvents, metricWindows
}
