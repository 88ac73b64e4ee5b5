import BitModel
import FleetKit
import Foundation
import Testing
@testable import FleetController

/// The controller's rules on a real SQLite database: enrollment tokens, version labels,
/// sequences, report ordering, aggregate merging, Range parsing.
@Suite("Controller service")
struct FleetServiceTests {
    let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Models/fashion-mnist")

    func enroll(_ harness: ServiceHarness, name: String, labels: [String: String] = [:]) async throws -> EnrollResponse {
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600, labels: labels))
        return try await harness.service.enroll(EnrollRequest(token: token.token, name: name, labels: [:], pushURL: "", agentVersion: "test"))
    }

    @Test("enrollment tokens are single-use and expire")
    func enrollmentTokens() async throws {
        let clock = TestClock()
        let harness = try ServiceHarness(now: { clock.now })
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        let request = EnrollRequest(token: token.token, name: "pi", labels: [:], pushURL: "", agentVersion: "1")
        let enrolled = try await harness.service.enroll(request)
        #expect(enrolled.credential.hasPrefix(enrolled.deviceID + "."))
        await #expect(throws: APIError.self) { try await harness.service.enroll(request) }

        let expiring = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        clock.advance(601)
        await #expect(throws: APIError.self) {
            try await harness.service.enroll(EnrollRequest(token: expiring.token, name: "late", labels: [:], pushURL: "", agentVersion: "1"))
        }
        // Credentials are stored hashed, and a wrong secret does not authenticate.
        let stored = try #require(try await harness.store.device(id: enrolled.deviceID))
        #expect(!stored.credentialHash.contains(enrolled.credential.split(separator: ".")[1]))
        #expect(try await harness.service.authenticateDevice(credential: enrolled.credential)?.id == enrolled.deviceID)
        #expect(try await harness.service.authenticateDevice(credential: enrolled.deviceID + ".wrong") == nil)
        _ = try await harness.service.revokeDevice(id: enrolled.deviceID)
        #expect(try await harness.service.authenticateDevice(credential: enrolled.credential) == nil)
    }

    @Test("versions are assigned in order, duplicates refused, invalid files rejected")
    func registry() async throws {
        let harness = try ServiceHarness()
        let file = try Data(contentsOf: samples.appendingPathComponent("bnn-cnn.bnn"))
        let v1 = try await harness.service.uploadModel(file, name: "fashion", version: nil, createdBy: "admin")
        let v2 = try await harness.service.uploadModel(file, name: "fashion", version: nil, createdBy: "admin")
        #expect([v1.version, v2.version] == ["v1", "v2"])
        await #expect(throws: APIError.self) { try await harness.service.uploadModel(file, name: "fashion", version: "v1", createdBy: "admin") }
        var truncated = file
        truncated.removeLast(100)
        await #expect(throws: APIError.self) { try await harness.service.uploadModel(truncated, name: "fashion", version: nil, createdBy: "admin") }
        let onnx = try Data(contentsOf: samples.appendingPathComponent("bnn-mlp.onnx"))
        let converted = try await harness.service.uploadModel(onnx, name: "mlp", version: nil, createdBy: "admin")
        let blob = try #require(harness.service.blobs.url(for: converted.sha256))
        #expect(try ModelReader.read(contentsOf: blob).selfTests.count == 1, "ONNX uploads are converted with a self-test vector")
    }

    @Test("deployments get increasing sequences and signed per-device manifests")
    func deployments() async throws {
        let harness = try ServiceHarness()
        let a = try await enroll(harness, name: "a", labels: ["site": "berlin"])
        let b = try await enroll(harness, name: "b", labels: ["site": "paris"])
        let file = try Data(contentsOf: samples.appendingPathComponent("bnn-cnn.bnn"))
        _ = try await harness.service.uploadModel(file, name: "fashion", version: nil, createdBy: "admin")
        let first = try await harness.service.deploy(DeploymentRequest(model: nil, version: "v1", target: DeploymentTarget()), createdBy: "admin")
        let second = try await harness.service.deploy(DeploymentRequest(model: "fashion", version: "v1",
                                                                        target: DeploymentTarget(labels: ["site": "paris"])), createdBy: "admin")
        #expect(first.sequence == 1 && second.sequence == 2)
        #expect(first.devices?.count == 2 && second.devices?.map(\.deviceID) == [b.deviceID])
        let manifestA = try #require(try await harness.service.desiredManifest(deviceID: a.deviceID))
        let verifier = try ManifestVerifier(publicKeyBase64: a.publicKey, fleetID: a.fleetID, deviceID: a.deviceID)
        #expect(try verifier.verify(manifestA, lastAccepted: 0).sequence == 1)
        let manifestB = try #require(try await harness.service.desiredManifest(deviceID: b.deviceID))
        #expect(throws: ManifestError.self) { try verifier.verify(manifestB, lastAccepted: 0) }  // another device's manifest
        await #expect(throws: APIError.self) {
            try await harness.service.deploy(DeploymentRequest(model: nil, version: "v9", target: DeploymentTarget()), createdBy: "admin")
        }
        await #expect(throws: APIError.self) {
            try await harness.service.deploy(DeploymentRequest(model: nil, version: "v1", target: DeploymentTarget(labels: ["site": "mars"])), createdBy: "admin")
        }
        // Reports only move forward; a stale "downloading" after "active" is ignored.
        try await harness.store.applyReport(deviceID: a.deviceID, report: DeploymentReport(sequence: 1, state: .active), now: Date())
        try await harness.store.applyReport(deviceID: a.deviceID, report: DeploymentReport(sequence: 1, state: .downloading), now: Date())
        #expect(try await harness.store.deviceDeployment(deploymentID: first.id, deviceID: a.deviceID)?.state == "active")
    }

    @Test("aggregates add up per model version, and a repeated delivery is not counted twice")
    func aggregates() async throws {
        let harness = try ServiceHarness()
        let device = try await enroll(harness, name: "a")
        let record = try #require(try await harness.store.device(id: device.deviceID))
        let start = Date(timeIntervalSince1970: 1_780_000_000)  // in the past: windows ending a day ahead are refused
        var window = AggregateWindow(start: start, end: start.addingTimeInterval(60), model: "m", version: "v1", classes: 3)
        window.record(predictedClass: 2, latencyMs: 3, confidence: 0.9)
        window.record(predictedClass: 0, latencyMs: 0.3, confidence: 0.4)
        let beat = HeartbeatRequest(agentVersion: "1", pushURL: "", activeModel: nil, reports: [], aggregates: [window], events: [])
        _ = try await harness.service.heartbeat(device: record, beat, bytes: 100)
        _ = try await harness.service.heartbeat(device: record, beat, bytes: 100)  // the reply to the first was lost
        var later = AggregateWindow(start: start.addingTimeInterval(60), end: start.addingTimeInterval(120), model: "m", version: "v1", classes: 3)
        later.record(predictedClass: 2, latencyMs: 1, confidence: 0.5)
        _ = try await harness.service.heartbeat(device: record, HeartbeatRequest(agentVersion: "1", pushURL: "", activeModel: nil, reports: [],
                                                                                   aggregates: [later], events: []), bytes: 100)
        let summary = try await harness.service.metrics(since: start, model: "m")
        #expect(summary.entries.first?.inferences == 3)
        #expect(summary.entries.first?.classCounts == [1, 0, 2])
        var broken = window
        broken.latencyHistogram = [1]
        await #expect(throws: APIError.self) {
            try await harness.service.heartbeat(device: record, HeartbeatRequest(agentVersion: "1", pushURL: "", activeModel: nil, reports: [],
                                                                                   aggregates: [broken], events: []), bytes: 100)
        }
    }

    @Test("HTTP Range parsing")
    func ranges() {
        #expect(ByteRange.parse("bytes=0-99", size: 1000) == 0..<100)
        #expect(ByteRange.parse("bytes=900-", size: 1000) == 900..<1000)
        #expect(ByteRange.parse("bytes=-100", size: 1000) == 900..<1000)
        #expect(ByteRange.parse("bytes=990-2000", size: 1000) == 990..<1000)
        #expect(ByteRange.parse("bytes=1000-", size: 1000) == nil)
        #expect(ByteRange.parse("bytes=5-2", size: 1000) == nil)
        #expect(ByteRange.parse("bytes=0-1,5-6", size: 1000) == nil)
        #expect(ByteRange.parse("items=0-1", size: 1000) == nil)
    }
}

final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date()
    var now: Date {
        lock.lock()
        defer { lock.unlock() }
        return current
    }
    func advance(_ seconds: TimeInterval) {
        lock.lock()
        current += seconds
        lock.unlock()
    }
}

@Suite("Authentication throttle")
struct AuthThrottleTests {
    @Test("an address is locked after the limit and released when its failures age out")
    func throttle() async {
        let throttle = AuthThrottle(limit: 3, window: 60)
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        for i in 0..<3 {
            #expect(await !throttle.isLocked("10.0.0.1", now: t0 + Double(i)))
            await throttle.recordFailure("10.0.0.1", now: t0 + Double(i))
        }
        #expect(await throttle.isLocked("10.0.0.1", now: t0 + 3))
        #expect(await !throttle.isLocked("10.0.0.2", now: t0 + 3), "other addresses are not affected")
        #expect(await throttle.isLocked("10.0.0.1", now: t0 + 60))
        #expect(await !throttle.isLocked("10.0.0.1", now: t0 + 62), "failures older than the window no longer count")
    }
}
