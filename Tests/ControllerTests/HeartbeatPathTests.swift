import BitModel
import FleetKit
import Foundation
import GRDB
import Testing
@testable import FleetController

/// The heartbeat fast path: one transaction, in-memory caches that must never serve a
/// revoked credential or a wrong manifest, and timestamps identical to GRDB's own.
@Suite("Heartbeat path")
struct HeartbeatPathTests {
    let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Models/fashion-mnist")

    @Test("timestamps are written exactly as GRDB writes dates")
    func timestamps() {
        var random = SeededGenerator(seed: 42)
        var dates = [Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: 1_799_999_999.9995),
                     Date(timeIntervalSince1970: 951_782_400.001), Date(timeIntervalSince1970: 4_102_444_799.999)]
        for _ in 0..<5000 { dates.append(Date(timeIntervalSince1970: Double.random(in: 0..<4_102_444_800, using: &random))) }
        for date in dates {
            #expect(DatabaseTimestamp.text(date) == String.fromDatabaseValue(date.databaseValue), "\(date.timeIntervalSince1970)")
        }
    }

    @Test("a cached credential stops working the moment the device is revoked")
    func revocationBeatsTheCache() async throws {
        let harness = try ServiceHarness()
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600, labels: [:]))
        let device = try await harness.service.enroll(EnrollRequest(token: token.token, name: "a", labels: [:], pushURL: "", agentVersion: "t"))
        #expect(try await harness.service.authenticateDevice(credential: device.credential)?.id == device.deviceID)
        #expect(try await harness.service.authenticateDevice(credential: device.credential)?.id == device.deviceID)  // from the cache
        #expect(try await harness.service.authenticateDevice(credential: device.deviceID + ".wrong") == nil)
        #expect(try await harness.service.revokeDevice(id: device.deviceID))
        #expect(try await harness.service.authenticateDevice(credential: device.credential) == nil)
    }

    @Test("revocation under concurrent authentications: nothing authenticates after it returns, and a racing lookup cannot re-cache the device")
    func revocationUnderConcurrency() async throws {
        let harness = try ServiceHarness()
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600, labels: [:]))
        let device = try await harness.service.enroll(EnrollRequest(token: token.token, name: "a", labels: [:], pushURL: "", agentVersion: "t"))
        let service = harness.service
        let revoked = RevocationFlag()
        // 8 tasks authenticating in a loop while the device is revoked; every success must
        // have started before the revocation returned.
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var lateSuccesses = 0
                    for _ in 0..<300 {
                        let startedAfterRevocation = revoked.isSet
                        if try await service.authenticateDevice(credential: device.credential) != nil, startedAfterRevocation { lateSuccesses += 1 }
                    }
                    return lateSuccesses
                }
            }
            try await Task.sleep(for: .milliseconds(20))
            #expect(try await service.revokeDevice(id: device.deviceID))
            revoked.set()
            for try await late in group { #expect(late == 0, "authenticated after the revocation returned") }
        }
        // The race itself, step by step: a lookup that read the store before the revocation
        // committed offers the unrevoked record to the cache afterwards.
        let token2 = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600, labels: [:]))
        let other = try await harness.service.enroll(EnrollRequest(token: token2.token, name: "b", labels: [:], pushURL: "", agentVersion: "t"))
        let generation = harness.service.caches.revocationGeneration
        let stale = try #require(try await harness.store.device(id: other.deviceID))
        #expect(try await harness.service.revokeDevice(id: other.deviceID))
        harness.service.caches.remember(authenticated: stale, generation: generation)
        #expect(harness.service.caches.authenticatedDevice(id: other.deviceID) == nil)
        #expect(try await harness.service.authenticateDevice(credential: other.credential) == nil)
    }

    @Test("a cached credential expires, so a revocation made elsewhere is seen within the cache lifetime")
    func credentialCacheExpires() async throws {
        let harness = try ServiceHarness()
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600, labels: [:]))
        let device = try await harness.service.enroll(EnrollRequest(token: token.token, name: "a", labels: [:], pushURL: "", agentVersion: "t"))
        #expect(try await harness.service.authenticateDevice(credential: device.credential) != nil)
        let caches = harness.service.caches
        #expect(caches.authenticatedDevice(id: device.deviceID) != nil)
        // Another process revokes in the database only (no cache of ours to clear).
        _ = try await harness.store.revokeDevice(id: device.deviceID)
        #expect(caches.authenticatedDevice(id: device.deviceID, now: Date().addingTimeInterval(caches.deviceLifetime - 5)) != nil)
        #expect(caches.authenticatedDevice(id: device.deviceID, now: Date().addingTimeInterval(caches.deviceLifetime + 1)) == nil)
        #expect(try await harness.service.authenticateDevice(credential: device.credential) == nil)
    }

    @Test("a heartbeat carries the desired manifest until the device runs it, and lands in one transaction")
    func desiredUntilConverged() async throws {
        let harness = try ServiceHarness()
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600, labels: [:]))
        let enrolled = try await harness.service.enroll(EnrollRequest(token: token.token, name: "a", labels: [:], pushURL: "", agentVersion: "t"))
        let device = try #require(try await harness.store.device(id: enrolled.deviceID))
        let idle = HeartbeatRequest(agentVersion: "t", pushURL: "", activeModel: nil, reports: [], aggregates: [], events: [])
        #expect(try await harness.service.heartbeat(device: device, idle, bytes: 10).desired == nil)

        let file = try Data(contentsOf: samples.appendingPathComponent("bnn-cnn.bnn"))
        let model = try await harness.service.uploadModel(file, name: "fashion", version: nil, createdBy: "admin")
        let deployment = try await harness.service.deploy(DeploymentRequest(model: nil, version: "v1", target: DeploymentTarget()), createdBy: "admin")
        let first = try #require(try await harness.service.heartbeat(device: device, idle, bytes: 10).desired)
        let again = try #require(try await harness.service.heartbeat(device: device, idle, bytes: 10).desired)
        #expect(first == again)  // signed once, served from the cache
        let verifier = try ManifestVerifier(publicKeyBase64: enrolled.publicKey, fleetID: enrolled.fleetID, deviceID: enrolled.deviceID)
        #expect(try verifier.verify(first, lastAccepted: 0).sequence == deployment.sequence)

        // The device reports activation and its model in the same heartbeat.
        let running = ActiveModel(name: "fashion", version: "v1", sha256: model.sha256, sequence: deployment.sequence)
        let converged = HeartbeatRequest(agentVersion: "t", pushURL: "http://127.0.0.1:7070", activeModel: running,
                                         reports: [DeploymentReport(sequence: deployment.sequence, state: .active)], aggregates: [], events: [])
        #expect(try await harness.service.heartbeat(device: device, converged, bytes: 10).desired == nil)
        #expect(try await harness.store.deviceDeployment(deploymentID: deployment.id, deviceID: device.id)?.state == "active")
        let stored = try #require(try await harness.store.device(id: device.id))
        #expect(stored.activeModel == running && stored.pushURL == "http://127.0.0.1:7070")
        #expect(try await harness.store.uploads(deviceID: device.id, limit: 10).count == 4)

        // A heartbeat refused by validation writes nothing, not even liveness.
        var broken = AggregateWindow(start: Date(), end: Date().addingTimeInterval(60), model: "fashion", version: "v1", classes: 10)
        broken.latencyHistogram = [1]
        let refused = HeartbeatRequest(agentVersion: "t2", pushURL: "", activeModel: nil, reports: [], aggregates: [broken], events: [])
        await #expect(throws: APIError.self) { try await harness.service.heartbeat(device: device, refused, bytes: 10) }
        #expect(try await harness.store.device(id: device.id)?.agentVersion == "t")
        #expect(try await harness.store.uploads(deviceID: device.id, limit: 10).count == 4)
    }

    @Test("retention deletes ledger entries, audit entries, device events and metric windows past their periods, in batches, by the controller's clock")
    func retention() async throws {
        let clock = TestClock()
        let harness = try ServiceHarness(now: { clock.now })
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600, labels: [:]))
        let enrolled = try await harness.service.enroll(EnrollRequest(token: token.token, name: "a", labels: [:], pushURL: "", agentVersion: "t"))
        let device = try #require(try await harness.store.device(id: enrolled.deviceID))
        for _ in 0..<7 {
            var window = AggregateWindow(start: clock.now.addingTimeInterval(-60), end: clock.now, model: "m", version: "v", classes: 2)
            window.record(predictedClass: 1, latencyMs: 1, confidence: 0.9)
            // The event's own time is the device's: a clock far ahead must not keep it forever.
            let event = DeviceEvent(at: clock.now.addingTimeInterval(86_400 * 3650), kind: "k", message: "m")
            let beat = HeartbeatRequest(agentVersion: "t", pushURL: "", activeModel: nil, reports: [], aggregates: [window], events: [event])
            _ = try await harness.service.heartbeat(device: device, beat, bytes: 10)
            try await harness.store.insertAudit(AuditEntry(at: clock.now, actor: "admin", action: "POST /x", status: 200, remote: "127.0.0.1"))
            clock.advance(86_400 * 10)  // ten days between heartbeats: 10, 20, ..., 70 days old
        }
        var configuration = harness.service.configuration
        configuration.ledgerRetentionDays = 30
        configuration.auditRetentionDays = 45
        configuration.eventRetentionDays = 25
        configuration.metricsRetentionDays = 65
        let service = FleetService(store: harness.store, blobs: harness.service.blobs, signer: harness.service.signer, fleetID: harness.service.fleetID,
                                   configuration: configuration, clock: { clock.now })
        var retention = RecordRetention(service: service, logger: .init(label: "test"))
        retention.batch = 2
        let deleted = try await retention.sweep()
        // Entries are 10, 20, ..., 70 days old.
        #expect(deleted == [.uploads: 4, .audit: 3, .deviceEvents: 5, .metricWindows: 1])
        let left = try await harness.store.uploads(deviceID: device.id, limit: 100)
        // Timestamps are stored to the millisecond, hence the second of slack.
        #expect(left.count == 3 && left.allSatisfy { clock.now.timeIntervalSince($0.at) <= 30 * 86_400 + 1 })
        #expect(try await harness.store.events(deviceID: device.id, limit: 100).count == 2)
        #expect(try await harness.store.audit(since: .distantPast, limit: 100).count == 4)
        #expect(try await harness.store.metricWindows(since: .distantPast, model: nil).count == 6)
        #expect(try await retention.sweep().values.allSatisfy { $0 == 0 })
    }
}

/// Set once, read from many tasks.
final class RevocationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
