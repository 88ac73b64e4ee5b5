import Crypto
import Foundation

/// What a deployment tells one device to run. Agents accept it only when the signature
/// verifies against the controller key pinned at enrollment, it names their fleet and
/// device, and its sequence is newer than the last one they accepted; the blob must then
/// match `sha256` and `size`. Because trust comes from the signature, the blob may come
/// from any HTTP server or cache.
public struct DeploymentManifest: Codable, Sendable, Equatable {
    public var fleetID: String
    public var deviceID: String
    public var sequence: Int64
    public var model: String
    public var version: String
    public var sha256: String
    public var size: Int
    public var issuedAt: Date
    /// Where to fetch the blob, relative to the controller URL unless absolute.
    public var blobPath: String
    /// Shadow evaluation: install and run next to the active model on the same inputs,
    /// reporting only agreement aggregates, without serving its results.
    public var shadow: Bool?

    public init(fleetID: String, deviceID: String, sequence: Int64, model: String, version: String, sha256: String, size: Int,
                issuedAt: Date, blobPath: String, shadow: Bool? = nil) {
        self.shadow = shadow
        self.fleetID = fleetID
        self.deviceID = deviceID
        self.sequence = sequence
        self.model = model
        self.version = version
        self.sha256 = sha256
        self.size = size
        self.issuedAt = issuedAt
        self.blobPath = blobPath
    }
}

/// A manifest as signed bytes: the signature covers exactly `payload` (base64 of the JSON
/// the controller encoded), so no canonical JSON form is needed.
public struct SignedManifest: Codable, Sendable, Equatable {
    public var payload: String
    public var signature: String

    public init(payload: String, signature: String) {
        self.payload = payload
        self.signature = signature
    }
}

public enum ManifestError: Error, CustomStringConvertible, Equatable {
    case malformed(String)
    case badSignature
    case wrongFleet(expected: String, got: String)
    case wrongDevice(expected: String, got: String)
    case notNewer(sequence: Int64, lastAccepted: Int64)

    public var description: String {
        switch self {
        case .malformed(let why): return "malformed manifest: \(why)"
        case .badSignature: return "manifest signature does not verify against the pinned controller key"
        case .wrongFleet(let expected, let got): return "manifest is for fleet \(got), this device belongs to \(expected)"
        case .wrongDevice(let expected, let got): return "manifest is for device \(got), this device is \(expected)"
        case .notNewer(let sequence, let last): return "manifest sequence \(sequence) is not newer than the last accepted \(last) (replay or rollback attempt)"
        }
    }
}

/// Signs manifests with the controller's Ed25519 key.
public struct ManifestSigner: Sendable {
    private let key: Curve25519.Signing.PrivateKey

    public init(privateKey: Curve25519.Signing.PrivateKey) { key = privateKey }

    public var publicKeyBase64: String { key.publicKey.rawRepresentation.base64EncodedString() }

    func signature(for data: Data) throws -> Data { try key.signature(for: data) }

    public func sign(_ manifest: DeploymentManifest) throws -> SignedManifest {
        let payload = try ManifestCoding.encoder.encode(manifest)
        let signature = try key.signature(for: payload)
        return SignedManifest(payload: payload.base64EncodedString(), signature: signature.base64EncodedString())
    }
}

/// Verifies manifests for one enrolled device.
public struct ManifestVerifier: Sendable {
    public let publicKey: Curve25519.Signing.PublicKey
    public let fleetID: String
    public let deviceID: String

    public init(publicKeyBase64: String, fleetID: String, deviceID: String) throws {
        guard let raw = Data(base64Encoded: publicKeyBase64),
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
            throw ManifestError.malformed("the pinned public key is not a base64 Ed25519 key")
        }
        publicKey = key
        self.fleetID = fleetID
        self.deviceID = deviceID
    }

    /// The manifest, if it is authentic, addressed to this device and newer than `lastAccepted`.
    public func verify(_ signed: SignedManifest, lastAccepted: Int64) throws -> DeploymentManifest {
        guard let payload = Data(base64Encoded: signed.payload), payload.count <= 64 * 1024 else {
            throw ManifestError.malformed("payload is not base64 or too large")
        }
        guard let signature = Data(base64Encoded: signed.signature), signature.count == 64 else {
            throw ManifestError.malformed("signature is not 64 base64 bytes")
        }
        guard publicKey.isValidSignature(signature, for: payload) else { throw ManifestError.badSignature }
        let manifest: DeploymentManifest
        do {
            manifest = try ManifestCoding.decoder.decode(DeploymentManifest.self, from: payload)
        } catch {
            throw ManifestError.malformed("signed payload is not a manifest: \(error)")
        }
        guard manifest.fleetID == fleetID else { throw ManifestError.wrongFleet(expected: fleetID, got: manifest.fleetID) }
        guard manifest.deviceID == deviceID else { throw ManifestError.wrongDevice(expected: deviceID, got: manifest.deviceID) }
        guard manifest.sequence > lastAccepted else { throw ManifestError.notNewer(sequence: manifest.sequence, lastAccepted: lastAccepted) }
        guard manifest.sha256.count == 64, manifest.sha256.allSatisfy(\.isHexDigit), manifest.size > 0 else {
            throw ManifestError.malformed("sha256 or size is invalid")
        }
        return manifest
    }
}

public enum ManifestCoding {
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

/// Key rotation: the controller's new public key, signed with the previous key. Agents
/// verify it with the key they pinned and pin the new one; a chain of announcements
/// carries an agent across several rotations.
public struct KeyAnnouncement: Codable, Sendable, Equatable {
    public var fleetID: String
    public var previousPublicKey: String
    public var newPublicKey: String
    public var issuedAt: Date

    public init(fleetID: String, previousPublicKey: String, newPublicKey: String, issuedAt: Date) {
        self.fleetID = fleetID
        self.previousPublicKey = previousPublicKey
        self.newPublicKey = newPublicKey
        self.issuedAt = issuedAt
    }
}

public struct SignedKeyAnnouncement: Codable, Sendable, Equatable {
    public var payload: String
    public var signature: String

    public init(payload: String, signature: String) {
        self.payload = payload
        self.signature = signature
    }
}

extension ManifestSigner {
    public func announce(_ announcement: KeyAnnouncement) throws -> SignedKeyAnnouncement {
        let payload = try ManifestCoding.encoder.encode(announcement)
        return SignedKeyAnnouncement(payload: payload.base64EncodedString(), signature: try signature(for: payload).base64EncodedString())
    }
}

public enum KeyRotation {
    /// Follows the chain from `pinned`: the newest key reachable through announcements
    /// each signed by the key before it, for this fleet; `pinned` if none applies. A key is
    /// never followed twice, so announcements that lead back to an earlier key (A -> A, or
    /// A -> B -> A) end the walk instead of looping forever.
    public static func follow(_ chain: [SignedKeyAnnouncement], from pinned: String, fleetID: String) -> String {
        path(chain, from: pinned, fleetID: fleetID).last ?? pinned
    }

    /// The keys `follow` walks through, `pinned` first and the newest last.
    public static func path(_ chain: [SignedKeyAnnouncement], from pinned: String, fleetID: String) -> [String] {
        var current = pinned
        var keys = [pinned]
        var visited: Set<String> = [pinned]
        var progressed = true
        while progressed {
            progressed = false
            for signed in chain {
                guard let payload = Data(base64Encoded: signed.payload), let signature = Data(base64Encoded: signed.signature),
                      let announcement = try? ManifestCoding.decoder.decode(KeyAnnouncement.self, from: payload),
                      announcement.previousPublicKey == current, announcement.fleetID == fleetID,
                      !visited.contains(announcement.newPublicKey),
                      let keyData = Data(base64Encoded: current),
                      let key = try? Curve25519.Signing.PublicKey(rawRepresentation: keyData),
                      key.isValidSignature(signature, for: payload) else { continue }
                current = announcement.newPublicKey
                visited.insert(current)
                keys.append(current)
                progressed = true
            }
        }
        return keys
    }
}
