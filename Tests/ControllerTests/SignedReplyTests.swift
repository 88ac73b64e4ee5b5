import Crypto
import FleetKit
import Foundation
import Testing
@testable import FleetController

/// The controller's side of authenticated enrollment and signed heartbeat replies, and a
/// signing-key rotation picked up by a running service without a restart.
@Suite("Signed replies and key rotation")
struct SignedReplyTests {
    @Test("tokens carry the signing key's fingerprint; the secret part alone (or the whole token) enrolls")
    func tokenCarriesFingerprint() async throws {
        let harness = try ServiceHarness()
        let fingerprint = try #require(ControllerKeyFingerprint.of(publicKeyBase64: harness.service.signer.publicKeyBase64))
        let created = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        #expect(created.controllerKeyFingerprint == fingerprint)
        let parsed = EnrollmentToken(parsing: created.token)
        #expect(parsed.fingerprint == fingerprint && parsed.secret.hasPrefix("enr_"))
        let bySecret = try await harness.service.enroll(EnrollRequest(token: parsed.secret, name: "a", labels: [:], pushURL: "", agentVersion: "t"))
        #expect(ControllerKeyFingerprint.of(publicKeyBase64: bySecret.publicKey) == fingerprint)
        try EnrollmentTrust.checkReceipt(bySecret, tokenSecret: parsed.secret)
        let second = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        _ = try await harness.service.enroll(EnrollRequest(token: second.token, name: "b", labels: [:], pushURL: "", agentVersion: "t"))
        // Still one-time, whichever form was used.
        await #expect(throws: APIError.self) {
            try await harness.service.enroll(EnrollRequest(token: parsed.secret, name: "c", labels: [:], pushURL: "", agentVersion: "t"))
        }
    }

    @Test("a heartbeat with a nonce gets a reply signed for the device and that nonce")
    func signedReply() async throws {
        let harness = try ServiceHarness()
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        let enrolled = try await harness.service.enroll(EnrollRequest(token: token.token, name: "a", labels: [:], pushURL: "", agentVersion: "t"))
        let device = try #require(try await harness.store.device(id: enrolled.deviceID))
        try await harness.service.setPrivacySettings(PrivacySettings(minCount: 3, epsilon: 2))
        var beat = HeartbeatRequest(agentVersion: "t", pushURL: "", activeModel: nil, reports: [], aggregates: [], events: [])
        // An older agent (no nonce) gets the unsigned fields only.
        #expect(try await harness.service.heartbeat(device: device, beat, bytes: 10).signed == nil)
        beat.nonce = "nonce-1"
        let response = try await harness.service.heartbeat(device: device, beat, bytes: 10)
        let verified = try HeartbeatReplyVerifier.verify(response.signed, pinnedKey: enrolled.publicKey, fleetID: enrolled.fleetID,
                                                         deviceID: enrolled.deviceID, nonce: "nonce-1", requestAge: 0)
        #expect(verified.reply.privacy == PrivacySettings(minCount: 3, epsilon: 2))
        #expect(verified.reply.heartbeatInterval == harness.service.configuration.heartbeatInterval)
        #expect(verified.reply.desired == response.desired && verified.reply.keyAnnouncements == response.keyAnnouncements)
        #expect(throws: HeartbeatReplyError.wrongNonce) {
            try HeartbeatReplyVerifier.verify(response.signed, pinnedKey: enrolled.publicKey, fleetID: enrolled.fleetID,
                                              deviceID: enrolled.deviceID, nonce: "nonce-2", requestAge: 0)
        }

        // What the signature adds to the heartbeat path, side by side in one run (printed,
        // not asserted: tests check behaviour; this build's optimisation level shows in it).
        var unsigned = beat
        unsigned.nonce = nil
        var timings: [String: Duration] = [:]
        for round in 0..<2 {
            for (label, request) in [("unsigned reply", unsigned), ("signed reply", beat)] {
                let start = ContinuousClock.now
                for _ in 0..<200 { _ = try await harness.service.heartbeat(device: device, request, bytes: 10) }
                if round == 1 { timings[label] = (ContinuousClock.now - start) / 200 }
            }
        }
        let content = verified.reply
        let signStart = ContinuousClock.now
        for _ in 0..<200 { _ = try harness.service.signer.sign(content) }
        let signing = (ContinuousClock.now - signStart) / 200
        print("heartbeat path (service call incl. SQLite write), mean of 200 after a warm-up round: unsigned reply \(timings["unsigned reply"]!), "
              + "signed reply \(timings["signed reply"]!); encoding and signing one reply alone: \(signing)")
    }

    @Test("rotate-signing-key on a running service: new key within seconds, announced in the same reply, manifests re-signed")
    func rotationWithoutRestart() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rotation-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        let data = try DataDirectory(directory)
        let store = try SQLiteFleetStore(path: data.databasePath)
        let startup = try await ControllerServer.prepare(data, store: store)
        let keyring = try SigningKeyring(directory: data)
        let service = FleetService(store: store, blobs: FileBlobStore(directory: data.blobsURL), keyring: keyring, fleetID: startup.fleetID,
                                   configuration: ControllerConfiguration(dataDirectory: directory), clock: { Date() })
        let caches = service.caches
        keyring.onChange {
            caches.forgetManifests()
            caches.forget(setting: "keys")
        }
        let token = try await service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        let enrolled = try await service.enroll(EnrollRequest(token: token.token, name: "a", labels: [:], pushURL: "", agentVersion: "t"))
        let device = try #require(try await store.device(id: enrolled.deviceID))
        let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Models/fashion-mnist/bnn-cnn.bnn")
        _ = try await service.uploadModel(try Data(contentsOf: samples), name: "fashion", version: nil, createdBy: "admin")
        _ = try await service.deploy(DeploymentRequest(model: nil, version: "v1", target: DeploymentTarget()), createdBy: "admin")
        var beat = HeartbeatRequest(agentVersion: "t", pushURL: "", activeModel: nil, reports: [], aggregates: [], events: [])
        beat.nonce = "before"
        let before = try await service.heartbeat(device: device, beat, bytes: 10)
        #expect(try HeartbeatReplyVerifier.verify(before.signed, pinnedKey: enrolled.publicKey, fleetID: enrolled.fleetID,
                                                  deviceID: enrolled.deviceID, nonce: "before", requestAge: 0).signingKey == enrolled.publicKey)

        let earlyToken = try await service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        let newKey = try await ControllerServer.rotateSigningKey(dataDirectory: directory)
        #expect(newKey != enrolled.publicKey)
        let deadline = Date().addingTimeInterval(10)
        while service.signer.publicKeyBase64 != newKey && Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(service.signer.publicKeyBase64 == newKey, "the running service never picked up the rotated key")
        // The first reply signed with the new key already carries the chain that vouches for it.
        beat.nonce = "after"
        let reply = try await service.heartbeat(device: device, beat, bytes: 10)
        let verified = try HeartbeatReplyVerifier.verify(reply.signed, pinnedKey: enrolled.publicKey, fleetID: enrolled.fleetID,
                                                         deviceID: enrolled.deviceID, nonce: "after", requestAge: 0)
        #expect(verified.signingKey == newKey)
        // The desired manifest is signed with the new key (the old signature was dropped).
        let manifest = try #require(verified.reply.desired)
        #expect(manifest != before.desired)
        let newVerifier = try ManifestVerifier(publicKeyBase64: newKey, fleetID: enrolled.fleetID, deviceID: enrolled.deviceID)
        #expect(throws: Never.self) { try newVerifier.verify(manifest, lastAccepted: 0) }
        // A token made before the rotation still enrolls: the answer's chain leads from the
        // key the token vouches for to the new one.
        let late = try await service.enroll(EnrollRequest(token: earlyToken.token, name: "b", labels: [:], pushURL: "", agentVersion: "t"))
        #expect(late.publicKey == newKey)
        let vouched = try #require(EnrollmentToken(parsing: earlyToken.token).fingerprint)
        try EnrollmentTrust.check(publicKey: late.publicKey, fleetID: late.fleetID, expected: vouched, announcements: late.keyAnnouncements ?? [])
    }
}
