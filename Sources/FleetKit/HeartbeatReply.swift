import Crypto
import Foundation

/// What an agent acts on from a heartbeat reply, signed by the controller as one payload
/// (base64 of the JSON it encoded, like a manifest, so no canonical JSON is needed and an
/// older agent ignores fields it does not know). Bound to the fleet and device, and fresh:
/// it echoes the random nonce of the heartbeat it answers.
public struct HeartbeatReply: Codable, Sendable, Equatable {
    public var fleetID: String
    public var deviceID: String
    /// The nonce of the heartbeat request this answers.
    public var nonce: String
    /// Controller time when it was signed (logged by the agent; see `replayWindow` for why
    /// the agent's own clock does not judge it).
    public var issuedAt: Date
    public var desired: SignedManifest?
    public var heartbeatInterval: Double
    public var keyAnnouncements: [SignedKeyAnnouncement]
    public var privacy: PrivacySettings

    public init(fleetID: String, deviceID: String, nonce: String, issuedAt: Date, desired: SignedManifest?, heartbeatInterval: Double,
                keyAnnouncements: [SignedKeyAnnouncement], privacy: PrivacySettings) {
        self.fleetID = fleetID
        self.deviceID = deviceID
        self.nonce = nonce
        self.issuedAt = issuedAt
        self.desired = desired
        self.heartbeatInterval = heartbeatInterval
        self.keyAnnouncements = keyAnnouncements
        self.privacy = privacy
    }
}

public struct SignedHeartbeatReply: Codable, Sendable, Equatable {
    public var payload: String
    public var signature: String

    public init(payload: String, signature: String) {
        self.payload = payload
        self.signature = signature
    }
}

/// The bounds an agent applies to numbers it takes from the network.
public enum NetworkBounds {
    /// Heartbeat interval, seconds: 1 s ... 24 h. Values outside are clamped (a
    /// misconfigured controller slows or speeds agents within sane limits, never traps or
    /// spins them); a non-finite one refuses the reply.
    public static let heartbeatInterval: ClosedRange<Double> = 1...86_400

    public static func clampedHeartbeatInterval(_ seconds: Double) -> Double {
        min(max(seconds, heartbeatInterval.lowerBound), heartbeatInterval.upperBound)
    }
    // Retry-After is clamped to 1 ... 60 s by FleetClientError.busyDelay; manifest sizes
    // by --max-model-bytes; privacy settings by PrivacySettings.isValid.
}

public enum HeartbeatReplyError: Error, CustomStringConvertible, Equatable {
    case unsigned
    case malformed(String)
    case badSignature(pinned: String)
    case wrongFleet(expected: String, got: String)
    case wrongDevice(expected: String, got: String)
    case wrongNonce
    case late(seconds: Double)
    case invalidInterval
    case invalidPrivacy

    public var description: String {
        switch self {
        case .unsigned: return "heartbeat reply is not signed"
        case .malformed(let why): return "heartbeat reply is malformed: \(why)"
        case .badSignature(let pinned): return "heartbeat reply signature does not verify against the pinned controller key \(pinned)"
        case .wrongFleet(let expected, let got): return "heartbeat reply is for fleet \(got), this device belongs to \(expected)"
        case .wrongDevice(let expected, let got): return "heartbeat reply is for device \(got), this device is \(expected)"
        case .wrongNonce: return "heartbeat reply does not answer this heartbeat (nonce differs: a replayed reply)"
        case .late(let seconds):
            return "heartbeat reply arrived \(Int(seconds)) s after its request, outside the \(Int(HeartbeatReplyVerifier.replayWindow)) s replay window"
        case .invalidInterval: return "heartbeat reply carries a non-finite heartbeat interval"
        case .invalidPrivacy: return "heartbeat reply carries invalid privacy settings"
        }
    }
}

extension ManifestSigner {
    public func sign(_ reply: HeartbeatReply) throws -> SignedHeartbeatReply {
        let payload = try ManifestCoding.encoder.encode(reply)
        return SignedHeartbeatReply(payload: payload.base64EncodedString(), signature: try signature(for: payload).base64EncodedString())
    }
}

/// Verifies heartbeat replies for one enrolled device.
public enum HeartbeatReplyVerifier {
    /// Seconds between sending a heartbeat and accepting its reply, on the agent's
    /// monotonic clock. Freshness comes from the nonce (a reply answers exactly one
    /// request, so an earlier reply replayed is refused); this window bounds how long a
    /// man in the middle may hold the right reply back. The signed `issuedAt` is not
    /// compared with the device's clock: a Raspberry Pi has no real-time clock and may
    /// boot days behind, and a genuine reply would then be refused.
    public static let replayWindow: TimeInterval = 30

    public struct Verified: Sendable, Equatable {
        public var reply: HeartbeatReply
        /// The key to pin from now on: the pinned key, or the newest one the reply's own
        /// announcement chain leads to from it.
        public var signingKey: String
    }

    /// `requestAge`: seconds since the request carrying `nonce` was sent.
    public static func verify(_ signed: SignedHeartbeatReply?, pinnedKey: String, fleetID: String, deviceID: String, nonce: String,
                              requestAge: TimeInterval) throws -> Verified {
        guard let signed else { throw HeartbeatReplyError.unsigned }
        guard let payload = Data(base64Encoded: signed.payload), payload.count <= 1 << 20 else {
            throw HeartbeatReplyError.malformed("payload is not base64 or larger than 1 MiB")
        }
        guard let signature = Data(base64Encoded: signed.signature), signature.count == 64 else {
            throw HeartbeatReplyError.malformed("signature is not 64 base64 bytes")
        }
        let reply: HeartbeatReply
        do {
            reply = try ManifestCoding.decoder.decode(HeartbeatReply.self, from: payload)
        } catch {
            throw HeartbeatReplyError.malformed("signed payload is not a heartbeat reply")
        }
        // A rotated key is reachable only through announcements each signed by the key
        // before it, starting at the pinned one, so reading them before the reply's own
        // signature is checked lets nothing unsigned in. The reply may be signed by any key
        // on that path (a reply signed just before a rotation, carrying the announcement
        // made meanwhile); the agent then pins the newest, after which older ones are refused.
        let path = KeyRotation.path(reply.keyAnnouncements, from: pinnedKey, fleetID: fleetID)
        let signedByPath = path.reversed().contains { candidate in
            guard let raw = Data(base64Encoded: candidate), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else { return false }
            return key.isValidSignature(signature, for: payload)
        }
        guard signedByPath, let signingKey = path.last else {
            throw HeartbeatReplyError.badSignature(pinned: ControllerKeyFingerprint.of(publicKeyBase64: pinnedKey) ?? "(unreadable)")
        }
        guard reply.fleetID == fleetID else { throw HeartbeatReplyError.wrongFleet(expected: fleetID, got: reply.fleetID) }
        guard reply.deviceID == deviceID else { throw HeartbeatReplyError.wrongDevice(expected: deviceID, got: reply.deviceID) }
        guard Secrets.constantTimeEquals(reply.nonce, nonce), !nonce.isEmpty else { throw HeartbeatReplyError.wrongNonce }
        guard requestAge <= replayWindow else { throw HeartbeatReplyError.late(seconds: requestAge) }
        guard reply.heartbeatInterval.isFinite else { throw HeartbeatReplyError.invalidInterval }
        guard reply.privacy.isValid else { throw HeartbeatReplyError.invalidPrivacy }
        return Verified(reply: reply, signingKey: signingKey)
    }
}
