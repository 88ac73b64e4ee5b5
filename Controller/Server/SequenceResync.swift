import FleetKit
import Foundation

/// A device that accepted a sequence the controller no longer knows of (the database lost
/// deployments: a power loss under an older build, a restored backup) refuses every
/// manifest the controller now signs with a lower sequence, and stayed `pending` forever.
/// The agent then sends the newest manifest it accepted; once its signature checks out
/// (this controller's key or one it rotated away from, this fleet, this device), the
/// sequence counter is raised past it and the device's desired version is issued to it
/// again under a new sequence.
extension FleetService {
    func resynchronise(device: DeviceRecord, proof: SignedManifest, now: Date) async throws {
        var keys = [signer.publicKeyBase64]
        if let announcements = try? await caches.setting("keys.\(keyring.snapshot.1)", load: { try await ControllerServer.keyAnnouncements(store) }) {
            keys += announcements.compactMap { try? ManifestCoding.decoder.decode(KeyAnnouncement.self, from: Data(base64Encoded: $0.payload) ?? Data()) }
                .map(\.previousPublicKey)
        }
        guard let accepted = keys.lazy.compactMap({ key -> DeploymentManifest? in
            guard let verifier = try? ManifestVerifier(publicKeyBase64: key, fleetID: fleetID, deviceID: device.id) else { return nil }
            return try? verifier.verify(proof, lastAccepted: 0)
        }).first else {
            throw APIError(.badRequest, "invalid_accepted_manifest", "acceptedManifest is not a manifest this controller signed for device \(device.id)")
        }
        let known = try await store.currentSequence()
        if accepted.sequence > known {
            try await store.raiseSequence(atLeast: accepted.sequence)
            metrics.sequenceResyncs.increment()
        }
        guard let desiredID = device.desiredDeploymentID, let (deployment, model) = try await cachedDeployment(id: desiredID),
              deployment.sequence <= accepted.sequence else { return }
        // What the device should run, under a sequence it will accept.
        _ = try await store.createDeployment(modelID: model.id!, target: DeploymentTarget(devices: [device.id]), deviceIDs: [device.id],
                                             createdBy: "resync (device accepted sequence \(accepted.sequence), controller knew \(known))",
                                             now: now, shadow: deployment.shadow)
    }
}
