import Crypto
import Foundation

/// The fingerprint of a controller's Ed25519 signing key: SHA-256 of the raw 32-byte public
/// key, written `sha256:<64 hex>` (as `kubeadm join --discovery-token-ca-cert-hash`). An
/// enrollment token carries it, so an agent pins only a key its token vouches for.
public enum ControllerKeyFingerprint {
    public static let prefix = "sha256:"

    /// `sha256:<hex>` of a base64 raw Ed25519 public key; nil if it is not one.
    public static func of(publicKeyBase64: String) -> String? {
        guard let raw = Data(base64Encoded: publicKeyBase64), (try? Curve25519.Signing.PublicKey(rawRepresentation: raw)) != nil else {
            return nil
        }
        return prefix + Secrets.sha256Hex(raw)
    }

    /// The normalised form (`sha256:` + lowercase hex) of `sha256:<hex>` or bare `<hex>`;
    /// nil unless it names exactly 64 hex digits.
    public static func parse(_ text: String) -> String? {
        var hex = Substring(text.trimmingCharacters(in: .whitespaces))
        if hex.lowercased().hasPrefix(prefix) { hex = hex.dropFirst(prefix.count) }
        guard hex.count == 64, hex.allSatisfy(\.isHexDigit) else { return nil }
        return prefix + hex.lowercased()
    }
}

/// Enrollment tokens as people copy them: `enr_<secret>.<64 hex fingerprint>`. The secret
/// (base64url, never a '.') proves the device to the controller, which stores only its hash;
/// the fingerprint part is public and tells the agent which controller key to pin. A token
/// without the suffix (made by an older controller) is just the secret.
public struct EnrollmentToken: Sendable, Equatable {
    public var secret: String
    /// `sha256:<hex>`, or nil for a token that carries none.
    public var fingerprint: String?

    public init(secret: String, fingerprint: String?) {
        self.secret = secret
        self.fingerprint = fingerprint
    }

    public init(parsing text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let dot = trimmed.lastIndex(of: "."), let fingerprint = ControllerKeyFingerprint.parse(String(trimmed[trimmed.index(after: dot)...])) {
            secret = String(trimmed[..<dot])
            self.fingerprint = fingerprint
        } else {
            secret = trimmed
            fingerprint = nil
        }
    }

    /// The text to hand out: the secret, then the fingerprint's hex after a '.'.
    public var text: String {
        guard let fingerprint else { return secret }
        return secret + "." + fingerprint.dropFirst(ControllerKeyFingerprint.prefix.count)
    }
}

/// Why an agent refuses to enroll: it pins nothing in each case.
public enum EnrollmentTrustError: Error, CustomStringConvertible, Equatable {
    case noFingerprint
    case conflictingFingerprints(token: String, flag: String)
    case keyMismatch(expected: String, answered: String)
    case malformedKey
    case badReceipt(String)

    public var description: String {
        switch self {
        case .noFingerprint:
            return "refusing to enroll: neither the enrollment token nor --controller-key-fingerprint names the controller's key "
                + "fingerprint, so the answering controller cannot be authenticated (create the token with a current "
                + "`fleetctl enroll-token create`, or pass --controller-key-fingerprint sha256:...)"
        case .conflictingFingerprints(let token, let flag):
            return "refusing to enroll: the enrollment token vouches for controller key \(token) but --controller-key-fingerprint says \(flag)"
        case .keyMismatch(let expected, let answered):
            return "refusing to enroll: the controller answered with signing key \(answered), but the enrollment token vouches for \(expected); "
                + "nothing was pinned (a spoofed controller, or a token of another fleet)"
        case .malformedKey:
            return "refusing to enroll: the controller's public key is not a base64 Ed25519 key; nothing was pinned"
        case .badReceipt(let why):
            return "refusing to enroll: the enrollment answer's receipt \(why); nothing was pinned (an answer altered on the way)"
        }
    }
}

public enum EnrollmentTrust {
    /// The fingerprint to check an enrollment answer against: the token's, the configured
    /// one, or both when they agree.
    public static func expectedFingerprint(token: EnrollmentToken, configured: String?) throws -> String {
        switch (token.fingerprint, configured) {
        case (let fromToken?, let flag?) where fromToken != flag:
            throw EnrollmentTrustError.conflictingFingerprints(token: fromToken, flag: flag)
        case (let fromToken?, _): return fromToken
        case (nil, let flag?): return flag
        case (nil, nil): throw EnrollmentTrustError.noFingerprint
        }
    }

    /// Accepts `publicKey` if its fingerprint is `expected`, or if a chain of rotation
    /// announcements, each signed by the key before it, leads from the vouched key to it (a
    /// token made before `rotate-signing-key` still enrolls). Throws otherwise.
    public static func check(publicKey: String, fleetID: String, expected: String, announcements: [SignedKeyAnnouncement]) throws {
        guard let answered = ControllerKeyFingerprint.of(publicKeyBase64: publicKey) else { throw EnrollmentTrustError.malformedKey }
        if answered == expected { return }
        for signed in announcements {
            guard let payload = Data(base64Encoded: signed.payload),
                  let announcement = try? ManifestCoding.decoder.decode(KeyAnnouncement.self, from: payload),
                  ControllerKeyFingerprint.of(publicKeyBase64: announcement.previousPublicKey) == expected else { continue }
            if KeyRotation.follow(announcements, from: announcement.previousPublicKey, fleetID: fleetID) == publicKey { return }
        }
        throw EnrollmentTrustError.keyMismatch(expected: expected, answered: answered)
    }
}

/// What the controller signs in its enrollment answer: the device and credential it issued
/// for this token. With it a man in the middle who passes the real key through cannot swap
/// in the credential of a device of their own.
public struct EnrollmentReceipt: Codable, Sendable, Equatable {
    public var fleetID: String
    public var deviceID: String
    /// SHA-256 hex of the token secret the answer is for.
    public var tokenSHA256: String
    /// SHA-256 hex of the whole credential (`deviceID.secret`) it hands out.
    public var credentialSHA256: String

    public init(fleetID: String, deviceID: String, tokenSHA256: String, credentialSHA256: String) {
        self.fleetID = fleetID
        self.deviceID = deviceID
        self.tokenSHA256 = tokenSHA256
        self.credentialSHA256 = credentialSHA256
    }
}

public struct SignedEnrollmentReceipt: Codable, Sendable, Equatable {
    public var payload: String
    public var signature: String

    public init(payload: String, signature: String) {
        self.payload = payload
        self.signature = signature
    }
}

extension ManifestSigner {
    public func sign(_ receipt: EnrollmentReceipt) throws -> SignedEnrollmentReceipt {
        let payload = try ManifestCoding.encoder.encode(receipt)
        return SignedEnrollmentReceipt(payload: payload.base64EncodedString(), signature: try signature(for: payload).base64EncodedString())
    }
}

extension EnrollmentTrust {
    /// Checks that `response` is what the holder of its (already vouched-for) key issued for
    /// the token secret this agent sent.
    public static func checkReceipt(_ response: EnrollResponse, tokenSecret: String) throws {
        guard let signed = response.receipt else { throw EnrollmentTrustError.badReceipt("is missing") }
        guard let payload = Data(base64Encoded: signed.payload), let signature = Data(base64Encoded: signed.signature),
              let raw = Data(base64Encoded: response.publicKey), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw),
              key.isValidSignature(signature, for: payload) else {
            throw EnrollmentTrustError.badReceipt("is not signed by the controller's key")
        }
        guard let receipt = try? ManifestCoding.decoder.decode(EnrollmentReceipt.self, from: payload) else {
            throw EnrollmentTrustError.badReceipt("is malformed")
        }
        guard receipt.fleetID == response.fleetID, receipt.deviceID == response.deviceID,
              receipt.tokenSHA256 == Secrets.hash(tokenSecret), receipt.credentialSHA256 == Secrets.hash(response.credential) else {
            throw EnrollmentTrustError.badReceipt("does not match the answer (fleet, device, token or credential differ)")
        }
    }
}
