import FleetKit
import Foundation
import GRDB

/// The embedded store: one SQLite file in WAL mode through GRDB, migrated on open.
final class SQLiteFleetStore: FleetStore {
    let database: DatabasePool

    init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            // FULL: WAL commits are fsynced before they are acknowledged, so a power loss
            // cannot undo a deployment an agent has already accepted (NORMAL could; see
            // docs/RELIABILITY.md "Power loss").
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        database = try DatabasePool(path: path, configuration: configuration)
        try Migrations.migrator.migrate(database)
    }

    func integrityCheck() async throws -> String {
        try await database.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "no result" }
    }

    /// Online backup of the live database into `path` (SQLite backup API).
    func backup(to path: String) throws {
        let destination = try DatabaseQueue(path: path)
        try database.backup(to: destination)
    }

    func setting(_ key: String) async throws -> String? {
        try await database.read { db in try String.fetchOne(db, sql: "SELECT value FROM setting WHERE key = ?", arguments: [key]) }
    }

    func setSetting(_ key: String, _ value: String) async throws {
        try await database.write { db in
            try db.execute(sql: "INSERT INTO setting(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           arguments: [key, value])
        }
    }

    func insertModel(name: String, version: String?, sha256: String, size: Int, metadataJSON: String,
                     binaryMACs: Int, createdBy: String, now: Date) async throws -> ModelRecord {
        try await database.write { db in
            let label: String
            if let version {
                label = version
            } else {
                let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM model WHERE name = ?", arguments: [name]) ?? 0
                var next = count + 1
                while try Bool.fetchOne(db, sql: "SELECT 1 FROM model WHERE name = ? AND version = ?", arguments: [name, "v\(next)"]) == true {
                    next += 1
                }
                label = "v\(next)"
            }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM model WHERE name = ? AND version = ?", arguments: [name, label]) == true {
                throw StoreError.conflict("model \(name) version \(label) already exists")
            }
            var record = ModelRecord(id: nil, name: name, version: label, sha256: sha256, size: size, metadataJSON: metadataJSON,
                                     binaryMACs: binaryMACs, createdAt: now, createdBy: createdBy)
            try record.insert(db)
            return record
        }
    }

    func models() async throws -> [ModelRecord] {
        try await database.read { db in try ModelRecord.order(Column("name"), Column("id")).fetchAll(db) }
    }

    func model(id: Int64) async throws -> ModelRecord? {
        try await database.read { db in try ModelRecord.fetchOne(db, key: id) }
    }

    func insertEnrollmentToken(_ record: EnrollmentTokenRecord) async throws {
        try await database.write { db in try record.insert(db) }
    }

    func consumeEnrollmentToken(hash: String, deviceID: String, now: Date) async throws -> EnrollmentTokenRecord? {
        try await database.write { db in
            guard var token = try EnrollmentTokenRecord.fetchOne(db, key: hash), token.usedAt == nil, token.expiresAt > now else {
                return nil
            }
            token.usedAt = now
            token.usedBy = deviceID
            try token.update(db)
            return token
        }
    }

    func insertDevice(_ device: DeviceRecord) async throws {
        try await database.write { db in try device.insert(db) }
    }

    func device(id: String) async throws -> DeviceRecord? {
        try await database.read { db in try DeviceRecord.fetchOne(db, key: id) }
    }

    func devices() async throws -> [DeviceRecord] {
        try await database.read { db in try DeviceRecord.order(Column("name"), Column("id")).fetchAll(db) }
    }

    /// Everything one heartbeat changes, in one transaction: a heartbeat is applied whole
    /// or not at all, and the controller pays for one commit per heartbeat, not six.
    func ingestHeartbeat(_ heartbeat: HeartbeatWrite) async throws -> Int64? {
        try await database.write { db in
            let desired = try Self.recordHeartbeat(db, deviceID: heartbeat.deviceID, now: heartbeat.now, agentVersion: heartbeat.agentVersion,
                                                   pushURL: heartbeat.pushURL, activeModelJSON: heartbeat.activeModelJSON)
            for report in heartbeat.reports { try Self.applyReport(db, deviceID: heartbeat.deviceID, report: report, now: heartbeat.now) }
            for report in heartbeat.shadow { try Self.addShadowReport(db, deviceID: heartbeat.deviceID, report: report) }
            try Self.insertEvents(db, deviceID: heartbeat.deviceID, events: heartbeat.events, now: heartbeat.now)
            try Self.mergeAggregates(db, deviceID: heartbeat.deviceID, windows: heartbeat.aggregates, encoder: JSONEncoder())
            try Self.insertUpload(db, deviceID: heartbeat.deviceID, heartbeat.upload)
            return desired
        }
    }

    /// Updates the device's liveness and state; returns its desired deployment id. The
    /// statements are prepared once per connection (this runs for every heartbeat).
    @discardableResult
    private static func recordHeartbeat(_ db: Database, deviceID: String, now: Date, agentVersion: String, pushURL: String,
                                        activeModelJSON: String?) throws -> Int64? {
        let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT activeModelJSON, desiredDeploymentID FROM device WHERE id = ?"),
                                   arguments: [deviceID])
        let storedJSON: String? = row?["activeModelJSON"]
        var activeJSON = activeModelJSON
        // A heartbeat composed before an activation may arrive after its report: keep
        // the newer model unless that deployment failed on the device (a revert).
        if let activeModelJSON, let storedJSON, activeModelJSON != storedJSON,
           let incoming = try? FleetJSON.decoder.decode(ActiveModel.self, from: Data(activeModelJSON.utf8)),
           let stored = try? FleetJSON.decoder.decode(ActiveModel.self, from: Data(storedJSON.utf8)), incoming.sequence < stored.sequence {
            let state = try String.fetchOne(db, sql: "SELECT dd.state FROM deviceDeployment dd JOIN deployment d ON d.id = dd.deploymentID WHERE d.sequence = ? AND dd.deviceID = ?",
                                            arguments: [stored.sequence, deviceID])
            if state != DeploymentState.failed.rawValue {
                activeJSON = storedJSON
            }
        }
        try db.cachedStatement(sql: "UPDATE device SET lastSeen = ?, agentVersion = ?, pushURL = ?, activeModelJSON = ? WHERE id = ?")
            .execute(arguments: [DatabaseTimestamp.text(now), agentVersion, pushURL, activeJSON, deviceID])
        return row?["desiredDeploymentID"]
    }

    func revokeDevice(id: String) async throws -> Bool {
        try await database.write { db in
            try db.execute(sql: "UPDATE device SET revoked = 1 WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }

    func addShadowReport(deviceID: String, report: ShadowReport) async throws {
        try await database.write { db in try Self.addShadowReport(db, deviceID: deviceID, report: report) }
    }

    private static func addShadowReport(_ db: Database, deviceID: String, report: ShadowReport) throws {
        do {
            guard let deployment = try DeploymentRecord.filter(Column("sequence") == report.sequence).fetchOne(db), deployment.shadow,
                  try DeviceDeploymentRecord.fetchOne(db, key: ["deploymentID": deployment.id!, "deviceID": deviceID]) != nil else { return }
            var total = report
            let stored = try ShadowStatRecord.fetchOne(db, key: ["deploymentID": deployment.id!, "deviceID": deviceID])
            var releases = stored?.releaseIDs ?? []
            // A report resent after a lost reply carries the same release id: added once.
            if let id = report.releaseID {
                guard !releases.contains(id) else { return }
                releases = Array((releases + [id]).suffix(256))
            }
            if let existing = stored?.report {
                total = existing
                total.merge(report)
            }
            total.releaseID = nil
            try ShadowStatRecord(deploymentID: deployment.id!, deviceID: deviceID,
                                 reportJSON: String(decoding: try JSONEncoder().encode(total), as: UTF8.self),
                                 releaseIDsJSON: String(decoding: try JSONEncoder().encode(releases), as: UTF8.self)).save(db)
        }
    }

    func shadowStats(deploymentID: Int64) async throws -> [ShadowStatRecord] {
        try await database.read { db in try ShadowStatRecord.filter(Column("deploymentID") == deploymentID).fetchAll(db) }
    }

    func createDeployment(modelID: Int64, target: DeploymentTarget, deviceIDs: [String], createdBy: String, now: Date,
                          shadow: Bool) async throws -> DeploymentRecord {
        try await database.write { db in
            try Self.insertDeployment(db, modelID: modelID, target: target, deviceIDs: deviceIDs, createdBy: createdBy, now: now, shadow: shadow)
        }
    }

    /// A new deployment with the next sequence, and every device pointed at it.
    static func insertDeployment(_ db: Database, modelID: Int64, target: DeploymentTarget, deviceIDs: [String], createdBy: String,
                                 now: Date, shadow: Bool) throws -> DeploymentRecord {
        let targetJSON = String(decoding: try FleetJSON.encoder.encode(target), as: UTF8.self)
        let sequence = try nextSequence(db)
        var deployment = DeploymentRecord(id: nil, sequence: sequence, modelID: modelID, targetJSON: targetJSON,
                                          createdAt: now, createdBy: createdBy, shadow: shadow)
        try deployment.insert(db)
        let id = deployment.id!
        for deviceID in deviceIDs {
            try DeviceDeploymentRecord(deploymentID: id, deviceID: deviceID, state: DeploymentState.pending.rawValue, reason: nil,
                                       updatedAt: now, pushAttempts: 0, nextPushAt: now).insert(db)
            try db.execute(sql: "UPDATE device SET desiredDeploymentID = ? WHERE id = ?", arguments: [id, deviceID])
        }
        return deployment
    }

    /// The next manifest sequence from the durable counter (migration v9). It never goes
    /// back, even if deployments were lost or deleted, so no sequence is issued twice.
    static func nextSequence(_ db: Database) throws -> Int64 {
        try db.execute(sql: "UPDATE counter SET value = value + 1 WHERE name = 'sequence'")
        guard let value = try Int64.fetchOne(db, sql: "SELECT value FROM counter WHERE name = 'sequence'") else {
            throw StoreError.conflict("the sequence counter is missing")
        }
        return value
    }

    func currentSequence() async throws -> Int64 {
        try await database.read { db in try Int64.fetchOne(db, sql: "SELECT value FROM counter WHERE name = 'sequence'") ?? 0 }
    }

    func raiseSequence(atLeast value: Int64) async throws {
        try await database.write { db in
            try db.execute(sql: "UPDATE counter SET value = MAX(value, ?) WHERE name = 'sequence'", arguments: [value])
        }
    }

    func extendDeployment(id: Int64, deviceIDs: [String], now: Date) async throws {
        try await database.write { db in try Self.extendDeployment(db, id: id, deviceIDs: deviceIDs, now: now) }
    }

    /// Adds devices to a deployment (those already in it are left as they are).
    static func extendDeployment(_ db: Database, id: Int64, deviceIDs: [String], now: Date) throws {
        for deviceID in deviceIDs {
            if try DeviceDeploymentRecord.fetchOne(db, key: ["deploymentID": id, "deviceID": deviceID]) != nil { continue }
            try DeviceDeploymentRecord(deploymentID: id, deviceID: deviceID, state: DeploymentState.pending.rawValue, reason: nil,
                                       updatedAt: now, pushAttempts: 0, nextPushAt: now).insert(db)
            // Never point a device back at an older deployment than the one it wants now.
            try db.execute(sql: """
                UPDATE device SET desiredDeploymentID = ? WHERE id = ? AND (desiredDeploymentID IS NULL OR
                  (SELECT sequence FROM deployment WHERE id = desiredDeploymentID) < (SELECT sequence FROM deployment WHERE id = ?))
                """, arguments: [id, deviceID, id])
        }
    }

    func rollouts() async throws -> [RolloutRecord] {
        try await database.read { db in try RolloutRecord.order(Column("id").desc).fetchAll(db) }
    }

    func rollout(id: Int64) async throws -> RolloutRecord? {
        try await database.read { db in try RolloutRecord.fetchOne(db, key: id) }
    }

    func deployments() async throws -> [DeploymentRecord] {
        try await database.read { db in try DeploymentRecord.order(Column("sequence").desc).fetchAll(db) }
    }

    func deployment(id: Int64) async throws -> DeploymentRecord? {
        try await database.read { db in try DeploymentRecord.fetchOne(db, key: id) }
    }

    func deviceDeployments(deploymentID: Int64) async throws -> [DeviceDeploymentRecord] {
        try await database.read { db in
            try DeviceDeploymentRecord.filter(Column("deploymentID") == deploymentID).order(Column("deviceID")).fetchAll(db)
        }
    }

    func deviceDeployment(deploymentID: Int64, deviceID: String) async throws -> DeviceDeploymentRecord? {
        try await database.read { db in
            try DeviceDeploymentRecord.fetchOne(db, key: ["deploymentID": deploymentID, "deviceID": deviceID])
        }
    }

    func applyReport(deviceID: String, report: DeploymentReport, now: Date) async throws {
        try await database.write { db in try Self.applyReport(db, deviceID: deviceID, report: report, now: now) }
    }

    private static func applyReport(_ db: Database, deviceID: String, report: DeploymentReport, now: Date) throws {
        do {
            guard let deploymentID = try Int64.fetchOne(db, sql: "SELECT id FROM deployment WHERE sequence = ?", arguments: [report.sequence]),
                  var row = try DeviceDeploymentRecord.fetchOne(db, key: ["deploymentID": deploymentID, "deviceID": deviceID]) else {
                return
            }
            // States only move forward, except that a failure can follow anything and a
            // retry after a failure may start again.
            let order: [DeploymentState] = [.pending, .notified, .downloading, .installed, .active]
            let current = DeploymentState(rawValue: row.state) ?? .pending
            if report.state != .failed, current != .failed,
               let from = order.firstIndex(of: current), let to = order.firstIndex(of: report.state), to < from {
                return
            }
            row.state = report.state.rawValue
            row.reason = report.reason.map { String($0.prefix(1000)) }
            row.updatedAt = now
            if report.state != .pending { row.nextPushAt = nil }
            try row.update(db)
            // An activation changes what the device runs now, not at its next heartbeat.
            if report.state == .active, let deployment = try DeploymentRecord.fetchOne(db, key: deploymentID), !deployment.shadow,
               let model = try ModelRecord.fetchOne(db, key: deployment.modelID) {
                let active = ActiveModel(name: model.name, version: model.version, sha256: model.sha256, sequence: deployment.sequence)
                try db.execute(sql: "UPDATE device SET activeModelJSON = ? WHERE id = ?",
                               arguments: [String(decoding: try FleetJSON.encoder.encode(active), as: UTF8.self), deviceID])
            }
        }
    }

    func duePushes(now: Date, limit: Int) async throws -> [DeviceDeploymentRecord] {
        try await database.read { db in
            try DeviceDeploymentRecord.fetchAll(db, sql: """
                SELECT dd.* FROM deviceDeployment dd JOIN device d ON d.id = dd.deviceID
                WHERE dd.state = 'pending' AND dd.nextPushAt IS NOT NULL AND dd.nextPushAt <= ?
                  AND d.desiredDeploymentID = dd.deploymentID AND d.revoked = 0 AND d.pushURL != ''
                ORDER BY dd.nextPushAt LIMIT ?
                """, arguments: [now, limit])
        }
    }

    func recordPush(deploymentID: Int64, deviceID: String, delivered: Bool, error: String?, nextAttempt: Date?, now: Date) async throws {
        try await database.write { db in
            guard var row = try DeviceDeploymentRecord.fetchOne(db, key: ["deploymentID": deploymentID, "deviceID": deviceID]) else { return }
            row.pushAttempts += 1
            // The device may have moved on (e.g. reported a failure via its heartbeat)
            // while this push was in flight; its report wins.
            guard row.state == DeploymentState.pending.rawValue else {
                try row.update(db)
                return
            }
            row.updatedAt = now
            if delivered {
                if row.state == DeploymentState.pending.rawValue { row.state = DeploymentState.notified.rawValue }
                row.nextPushAt = nil
                row.reason = nil
            } else {
                row.nextPushAt = nextAttempt
                row.reason = error.map { "push failed: \($0.prefix(500))" }
            }
            try row.update(db)
        }
    }

    func insertEvents(deviceID: String, events: [DeviceEvent], now: Date) async throws {
        try await database.write { db in try Self.insertEvents(db, deviceID: deviceID, events: events, now: now) }
    }

    private static func insertEvents(_ db: Database, deviceID: String, events: [DeviceEvent], now: Date) throws {
        do {
            for event in events {
                var record = DeviceEventRecord(id: nil, deviceID: deviceID, at: event.at, kind: String(event.kind.prefix(64)),
                                               message: String(event.message.prefix(2000)), receivedAt: now)
                try record.insert(db)
            }
        }
    }

    func events(deviceID: String, limit: Int) async throws -> [DeviceEventRecord] {
        try await database.read { db in
            try DeviceEventRecord.filter(Column("deviceID") == deviceID).order(Column("id").desc).limit(limit).fetchAll(db)
        }
    }

    func insertUpload(deviceID: String, _ upload: UploadRecord) async throws {
        try await database.write { db in try Self.insertUpload(db, deviceID: deviceID, upload) }
    }

    private static func insertUpload(_ db: Database, deviceID: String, _ upload: UploadRecord) throws {
        do {
            try db.cachedStatement(sql: "INSERT INTO upload(deviceID, at, bytes, fieldsJSON, epsilonSpent) VALUES (?, ?, ?, ?, ?)")
                .execute(arguments: [deviceID, DatabaseTimestamp.text(upload.at), upload.bytes, String(decoding: try JSONEncoder().encode(upload.fields), as: UTF8.self),
                                     upload.epsilonSpent])
        }
    }

    func prune(_ records: RetainedRecords, before cutoff: Date, limit: Int) async throws -> Int {
        // Each table by the controller's own time column, through its index, in batches.
        let (table, column, key) = switch records {
        case .uploads: ("upload", "at", "id")
        case .audit: ("audit", "at", "id")
        case .deviceEvents: ("deviceEvent", "receivedAt", "id")
        case .metricWindows: ("metricWindow", "windowEnd", "rowid")
        }
        return try await database.write { db in
            try db.execute(sql: "DELETE FROM \(table) WHERE \(key) IN (SELECT \(key) FROM \(table) WHERE \(column) < ? ORDER BY \(column) LIMIT ?)",
                           arguments: [DatabaseTimestamp.text(cutoff), limit])
            return db.changesCount
        }
    }

    func uploads(deviceID: String, limit: Int) async throws -> [UploadRecord] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT at, bytes, fieldsJSON, epsilonSpent FROM upload WHERE deviceID = ? ORDER BY id DESC LIMIT ?",
                             arguments: [deviceID, limit]).map { row in
                UploadRecord(at: row["at"], bytes: row["bytes"],
                             fields: (try? JSONDecoder().decode([String].self, from: Data((row["fieldsJSON"] as String).utf8))) ?? [],
                             epsilonSpent: row["epsilonSpent"])
            }
        }
    }

    func insertSession(tokenHash: String, csrf: String, expiresAt: Date) async throws {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM session WHERE expiresAt < ?", arguments: [Date()])
            try db.execute(sql: "INSERT INTO session(tokenHash, csrf, expiresAt) VALUES (?, ?, ?)", arguments: [tokenHash, csrf, expiresAt])
        }
    }

    func session(tokenHash: String, now: Date) async throws -> String? {
        try await database.read { db in
            try String.fetchOne(db, sql: "SELECT csrf FROM session WHERE tokenHash = ? AND expiresAt > ?", arguments: [tokenHash, now])
        }
    }

    func deleteAllSessions() async throws {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM session")
            try db.execute(sql: "DELETE FROM loginLink")
        }
    }

    func deleteSession(tokenHash: String) async throws {
        try await database.write { db in try db.execute(sql: "DELETE FROM session WHERE tokenHash = ?", arguments: [tokenHash]) }
    }

    func insertLoginLink(codeHash: String, expiresAt: Date) async throws {
        try await database.write { db in
            try db.execute(sql: "INSERT INTO loginLink(codeHash, expiresAt) VALUES (?, ?)", arguments: [codeHash, expiresAt])
        }
    }

    func consumeLoginLink(codeHash: String, now: Date) async throws -> Bool {
        try await database.write { db in
            try db.execute(sql: "UPDATE loginLink SET usedAt = ? WHERE codeHash = ? AND usedAt IS NULL AND expiresAt > ?",
                           arguments: [now, codeHash, now])
            return db.changesCount == 1
        }
    }

    func deviceHistory(deviceID: String) async throws -> [(DeploymentRecord, DeviceDeploymentRecord)] {
        try await database.read { db in
            let rows = try DeviceDeploymentRecord.filter(Column("deviceID") == deviceID).fetchAll(db)
            return try rows.compactMap { row in try DeploymentRecord.fetchOne(db, key: row.deploymentID).map { ($0, row) } }
                .sorted { $0.0.sequence > $1.0.sequence }
        }
    }

    func insertAudit(_ entry: AuditEntry) async throws {
        try await database.write { db in
            try db.execute(sql: "INSERT INTO audit(at, actor, action, status, remote) VALUES (?, ?, ?, ?, ?)",
                           arguments: [entry.at, entry.actor, String(entry.action.prefix(500)), entry.status, entry.remote])
        }
    }

    func audit(since: Date, limit: Int) async throws -> [AuditEntry] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT at, actor, action, status, remote FROM audit WHERE at >= ? ORDER BY id DESC LIMIT ?",
                             arguments: [since, limit]).map {
                AuditEntry(at: $0["at"], actor: $0["actor"], action: $0["action"], status: $0["status"], remote: $0["remote"])
            }
        }
    }

    func mergeAggregates(deviceID: String, windows: [AggregateWindow]) async throws {
        let encoder = JSONEncoder()
        try await database.write { db in try Self.mergeAggregates(db, deviceID: deviceID, windows: windows, encoder: encoder) }
    }

    private static func mergeAggregates(_ db: Database, deviceID: String, windows: [AggregateWindow], encoder: JSONEncoder) throws {
        do {
            for window in windows {
                // An agent sends each window until it is acknowledged, and a window it merged
                // while offline keeps the earliest start and carries the full counts: storing
                // by (device, model, version, start) makes a repeated delivery harmless.
                try Self.record(deviceID: deviceID, window, encoder: encoder).save(db)
            }
        }
    }

    private static func record(deviceID: String, _ window: AggregateWindow, encoder: JSONEncoder) throws -> MetricWindowRecord {
        MetricWindowRecord(deviceID: deviceID, model: window.model, version: window.version, windowStart: window.start,
                           windowEnd: window.end, inferences: window.inferences, errors: window.errors,
                           classCountsJSON: String(decoding: try encoder.encode(window.classCounts), as: UTF8.self),
                           latencyJSON: String(decoding: try encoder.encode(window.latencyHistogram), as: UTF8.self),
                           confidenceJSON: String(decoding: try encoder.encode(window.confidenceHistogram), as: UTF8.self))
    }

    func metricWindows(since: Date, model: String?) async throws -> [MetricWindowRecord] {
        try await database.read { db in
            var request = MetricWindowRecord.filter(Column("windowEnd") >= since)
            if let model { request = request.filter(Column("model") == model) }
            return try request.fetchAll(db)
        }
    }
}
