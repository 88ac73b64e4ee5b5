import Crypto
import FleetKit
import Foundation
import GRDB
import Testing
@testable import FleetController

/// Manifest sequences: a durable counter that never issues a value twice, and devices that
/// accepted a sequence the controller lost are resynchronised on proof of it.
@Suite("Manifest sequences")
struct SequenceTests {
    let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Models/fashion-mnist")

    func setUp(_ harness: ServiceHarness) async throws -> DeviceRecord {
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        let enrolled = try await harness.service.enroll(EnrollRequest(token: token.token, name: "a", labels: [:], pushURL: "", agentVersion: "t"))
        let file = try Data(contentsOf: samples.appendingPathComponent("bnn-cnn.bnn"))
        for version in ["v1", "v2"] { _ = try await harness.service.uploadModel(file, name: "fashion", version: version, createdBy: "admin") }
        return try #require(try await harness.store.device(id: enrolled.deviceID))
    }

    func deploy(_ harness: ServiceHarness, _ version: String) async throws -> Int64 {
        try await harness.service.deploy(DeploymentRequest(model: "fashion", version: version, target: DeploymentTarget()), createdBy: "admin").sequence
    }

    @Test("a lost newest deployment does not make its sequence come back")
    func counterNeverReissues() async throws {
        let harness = try ServiceHarness()
        _ = try await setUp(harness)
        #expect(try await deploy(harness, "v1") == 1)
        #expect(try await deploy(harness, "v2") == 2)
        // As a power loss under synchronous=NORMAL could: the newest deployment is gone.
        try await harness.store.database.write { db in
            try db.execute(sql: "UPDATE device SET desiredDeploymentID = (SELECT id FROM deployment WHERE sequence = 1)")
            try db.execute(sql: "DELETE FROM deviceDeployment WHERE deploymentID = (SELECT id FROM deployment WHERE sequence = 2)")
            try db.execute(sql: "DELETE FROM deployment WHERE sequence = 2")
        }
        #expect(try await deploy(harness, "v2") == 3, "MAX(sequence)+1 would say 2 again")
        #expect(try await harness.store.database.read { db in try String.fetchOne(db, sql: "PRAGMA synchronous") } == "2", "FULL")
    }

    @Test("a device proving it accepted a higher sequence gets its desired version again under a newer one")
    func resynchronisation() async throws {
        let harness = try ServiceHarness()
        let device = try await setUp(harness)
        let desired = try await deploy(harness, "v1")
        // What the device accepted from this controller before it lost its newest deployments.
        let model = try #require(try await harness.store.models().first { $0.version == "v2" })
        let accepted = try harness.service.signer.sign(DeploymentManifest(
            fleetID: harness.service.fleetID, deviceID: device.id, sequence: 40, model: "fashion", version: "v2", sha256: model.sha256,
            size: model.size, issuedAt: Date(), blobPath: "/api/v1/blobs/\(model.sha256)"))
        var beat = HeartbeatRequest(agentVersion: "t", pushURL: "", activeModel: nil, reports: [], aggregates: [], events: [])
        beat.acceptedManifest = accepted
        let current = try #require(try await harness.store.device(id: device.id))
        let reply = try await harness.service.heartbeat(device: current, beat, bytes: 10)
        let manifest = try ManifestVerifier(publicKeyBase64: harness.service.signer.publicKeyBase64, fleetID: harness.service.fleetID, deviceID: device.id)
            .verify(try #require(reply.desired), lastAccepted: 40)
        #expect(manifest.sequence == 41 && manifest.version == "v1" && desired == 1)
        #expect(try await harness.store.currentSequence() == 41)
        #expect(try await deploy(harness, "v2") == 42)
    }

    @Test("a forged proof changes nothing and is refused with its reason")
    func forgedProof() async throws {
        let harness = try ServiceHarness()
        let device = try await setUp(harness)
        _ = try await deploy(harness, "v1")
        let other = ManifestSigner(privateKey: Curve25519.Signing.PrivateKey())
        let forged = try other.sign(DeploymentManifest(fleetID: harness.service.fleetID, deviceID: device.id, sequence: Int64.max - 1, model: "x",
                                                       version: "y", sha256: String(repeating: "a", count: 64), size: 1, issuedAt: Date(),
                                                       blobPath: "/"))
        var beat = HeartbeatRequest(agentVersion: "t", pushURL: "", activeModel: nil, reports: [], aggregates: [], events: [])
        beat.acceptedManifest = forged
        let current = try #require(try await harness.store.device(id: device.id))
        let refused = await #expect(throws: APIError.self) { _ = try await harness.service.heartbeat(device: current, beat, bytes: 10) }
        #expect(refused?.code == "invalid_accepted_manifest")
        #expect(try await harness.store.currentSequence() == 1, "Int64.max - 1 would have ended all future deployments")
    }
}
