import FleetKit
import Foundation

/// What heartbeats read over and over, kept in memory so that a heartbeat costs one
/// write transaction and no read:
/// - devices that authenticated (their credential hash; the record only for its id, as
///   routes take everything else from the store), forgotten when revoked and after
///   `deviceLifetime` (so a revocation made by another process is seen within it);
/// - deployments and models, which never change once created;
/// - signed manifests per device and deployment (Ed25519 signing is the most expensive
///   step of a heartbeat that has to carry one);
/// - fleet settings (privacy, signing-key announcements) for a few seconds, so a change
///   made by another process (`fleet-controller rotate-signing-key`) is seen quickly.
/// Per process: a second controller replica keeps its own, which is correct because all
/// of it is either immutable or expires.
final class HeartbeatCaches: @unchecked Sendable {
    private let lock = NSLock()
    private var deployments: [Int64: (DeploymentRecord, ModelRecord)] = [:]
    private var manifests: [String: SignedManifest] = [:]
    private var settings: [String: (value: any Sendable, until: Date)] = [:]
    private var devices: [String: (device: DeviceRecord, until: Date)] = [:]
    /// Bumped by every revocation. A lookup that read the store before a revocation
    /// finished must not cache what it read: it may be the device as it was just before.
    private var revocations: UInt64 = 0
    let deviceLifetime: TimeInterval = 60
    private let maxDevices = 200_000
    /// About 1 KB per manifest: bounded well below the controller's memory budget.
    private let maxManifests = 50_000
    private let settingLifetime: TimeInterval = 5

    func authenticatedDevice(id: String, now: Date = Date()) -> DeviceRecord? {
        lock.withLock {
            guard let entry = devices[id] else { return nil }
            guard entry.until > now else {
                devices[id] = nil
                return nil
            }
            return entry.device
        }
    }

    /// Taken before a lookup in the store; `remember` caches only if no revocation
    /// happened since.
    var revocationGeneration: UInt64 { lock.withLock { revocations } }

    func remember(authenticated device: DeviceRecord, generation: UInt64, now: Date = Date()) {
        lock.withLock {
            guard generation == revocations, !device.revoked else { return }
            if devices.count >= maxDevices { devices.removeAll(keepingCapacity: true) }
            devices[device.id] = (device, now.addingTimeInterval(deviceLifetime))
        }
    }

    func forget(device id: String) {
        lock.withLock {
            revocations &+= 1
            devices[id] = nil
        }
    }

    func deployment(id: Int64) -> (DeploymentRecord, ModelRecord)? {
        lock.withLock { deployments[id] }
    }

    func remember(deployment: DeploymentRecord, model: ModelRecord) {
        guard let id = deployment.id else { return }
        lock.withLock { deployments[id] = (deployment, model) }
    }

    /// The manifest signed by `signer`, signed once per key: after a key rotation a
    /// signature made with the old key is never served again, however requests interleave.
    func manifest(deviceID: String, deploymentID: Int64, signer: ManifestSigner,
                  sign: (ManifestSigner) throws -> SignedManifest) throws -> SignedManifest {
        let key = "\(deploymentID)/\(deviceID)/\(signer.publicKeyBase64)"
        if let cached = lock.withLock({ manifests[key] }) { return cached }
        let signed = try sign(signer)
        lock.withLock {
            // Manifests of older deployments are dead weight once devices moved on.
            if manifests.count >= maxManifests { manifests.removeAll(keepingCapacity: true) }
            manifests[key] = signed
        }
        return signed
    }

    /// After a signing-key rotation: manifests signed with the old key are dead weight.
    func forgetManifests() {
        lock.withLock { manifests.removeAll() }
    }

    func setting<Value: Sendable>(_ name: String, load: () async throws -> Value) async throws -> Value {
        let now = Date()
        if let cached = lock.withLock({ settings[name] }), cached.until > now, let value = cached.value as? Value { return value }
        let value = try await load()
        lock.withLock { settings[name] = (value, now.addingTimeInterval(settingLifetime)) }
        return value
    }

    func forget(setting name: String) {
        lock.withLock { settings[name] = nil }
    }
}
