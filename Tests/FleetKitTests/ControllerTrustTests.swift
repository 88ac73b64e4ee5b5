import Crypto
import FleetKit
import Foundation
import Testing

/// Enrollment tokens that vouch for the controller's key, and heartbeat replies signed for
/// one device and one heartbeat: every field an attacker could change is refused.
@Suite("Controller trust")
struct ControllerTrustTests {
    let key = Curve25519.Signing.PrivateKey()
    var signer: ManifestSigner { ManifestSigner(privateKey: key) }
    var publicKey: String { key.publicKey.rawRepresentation.base64EncodedString() }
    var fingerprint: String { ControllerKeyFingerprint.of(publicKeyBase64: publicKey)! }

    // MARK: Enrollment

    @Test("a token carries the fingerprint after its secret, and parses back")
    func tokenFormat() throws {
        #expect(fingerprint.hasPrefix("sha256:") && fingerprint.count == 7 + 64)
        let token = EnrollmentToken(secret: "enr_abc-DEF_123", fingerprint: fingerprint)
        #expect(token.text == "enr_abc-DEF_123." + fingerprint.dropFirst(7))
        #expect(EnrollmentToken(parsing: token.text) == token)
        #expect(EnrollmentToken(parsing: "  \(token.text)\n") == token)
        // Older tokens (no suffix) are only a secret; a suffix that is no fingerprint stays part of it.
        #expect(EnrollmentToken(parsing: "enr_abc") == EnrollmentToken(secret: "enr_abc", fingerprint: nil))
        #expect(EnrollmentToken(parsing: "enr_abc.1234").fingerprint == nil)
        #expect(ControllerKeyFingerprint.parse(fingerprint.uppercased().replacingOccurrences(of: "SHA256:", with: "sha256:")) == fingerprint)
        #expect(ControllerKeyFingerprint.parse(String(fingerprint.dropFirst(7))) == fingerprint)
        #expect(ControllerKeyFingerprint.parse("sha256:xyz") == nil)
        #expect(ControllerKeyFingerprint.of(publicKeyBase64: "bm90IGEga2V5") == nil)
    }

    @Test("the fingerprint comes from the token or the flag; neither, or two that disagree, refuse")
    func expectedFingerprint() throws {
        let other = ControllerKeyFingerprint.of(publicKeyBase64: Curve25519.Signing.PrivateKey().publicKey.rawRepresentation.base64EncodedString())!
        let carrying = EnrollmentToken(secret: "enr_x", fingerprint: fingerprint)
        let bare = EnrollmentToken(secret: "enr_x", fingerprint: nil)
        #expect(try EnrollmentTrust.expectedFingerprint(token: carrying, configured: nil) == fingerprint)
        #expect(try EnrollmentTrust.expectedFingerprint(token: carrying, configured: fingerprint) == fingerprint)
        #expect(try EnrollmentTrust.expectedFingerprint(token: bare, configured: other) == other)
        #expect(throws: EnrollmentTrustError.noFingerprint) { try EnrollmentTrust.expectedFingerprint(token: bare, configured: nil) }
        #expect(throws: EnrollmentTrustError.conflictingFingerprints(token: fingerprint, flag: other)) {
            try EnrollmentTrust.expectedFingerprint(token: carrying, configured: other)
        }
    }

    @Test("an enrollment answer with another key is refused, naming both fingerprints")
    func answerKeyChecked() throws {
        try EnrollmentTrust.check(publicKey: publicKey, fleetID: "f", expected: fingerprint, announcements: [])
        let impostor = Curve25519.Signing.PrivateKey().publicKey.rawRepresentation.base64EncodedString()
        let impostorPrint = ControllerKeyFingerprint.of(publicKeyBase64: impostor)!
        do {
            try EnrollmentTrust.check(publicKey: impostor, fleetID: "f", expected: fingerprint, announcements: [])
            Issue.record("an impostor's key was accepted")
        } catch let error as EnrollmentTrustError {
            #expect(error == .keyMismatch(expected: fingerprint, answered: impostorPrint))
            #expect(error.description.contains(fingerprint) && error.description.contains(impostorPrint))
        }
        #expect(throws: EnrollmentTrustError.malformedKey) {
            try EnrollmentTrust.check(publicKey: "AAAA", fleetID: "f", expected: fingerprint, announcements: [])
        }
    }

    @Test("a token made before a rotation enrolls through the signed chain, a forged chain does not")
    func rotatedKeyThroughChain() throws {
        let new = Curve25519.Signing.PrivateKey()
        let newKey = new.publicKey.rawRepresentation.base64EncodedString()
        let announcement = try signer.announce(KeyAnnouncement(fleetID: "f", previousPublicKey: publicKey, newPublicKey: newKey, issuedAt: Date()))
        try EnrollmentTrust.check(publicKey: newKey, fleetID: "f", expected: fingerprint, announcements: [announcement])
        // The same announcement signed by the impostor itself proves nothing.
        let forged = try ManifestSigner(privateKey: new).announce(KeyAnnouncement(fleetID: "f", previousPublicKey: publicKey, newPublicKey: newKey, issuedAt: Date()))
        #expect(throws: EnrollmentTrustError.self) {
            try EnrollmentTrust.check(publicKey: newKey, fleetID: "f", expected: fingerprint, announcements: [forged])
        }
        // Another fleet's chain does not count.
        #expect(throws: EnrollmentTrustError.self) {
            try EnrollmentTrust.check(publicKey: newKey, fleetID: "g", expected: fingerprint, announcements: [announcement])
        }
    }

    @Test("the enrollment answer's signed receipt binds device and credential to the token; a swapped one is refused")
    func receipt() throws {
        let credential = "dev_a.secret"
        let receipt = EnrollmentReceipt(fleetID: "f", deviceID: "dev_a", tokenSHA256: Secrets.hash("enr_x"), credentialSHA256: Secrets.hash(credential))
        let answer = EnrollResponse(deviceID: "dev_a", credential: credential, fleetID: "f", publicKey: publicKey, receipt: try signer.sign(receipt))
        try EnrollmentTrust.checkReceipt(answer, tokenSecret: "enr_x")
        var swappedCredential = answer
        swappedCredential.credential = "dev_b.other"
        var swappedDevice = answer
        swappedDevice.deviceID = "dev_b"
        var otherFleet = answer
        otherFleet.fleetID = "g"
        var missing = answer
        missing.receipt = nil
        var otherKey = answer
        otherKey.receipt = try ManifestSigner(privateKey: Curve25519.Signing.PrivateKey()).sign(receipt)
        for (what, altered, token) in [("credential", swappedCredential, "enr_x"), ("device", swappedDevice, "enr_x"), ("fleet", otherFleet, "enr_x"),
                                       ("token", answer, "enr_y"), ("missing", missing, "enr_x"), ("key", otherKey, "enr_x")] {
            #expect(throws: EnrollmentTrustError.self, "\(what)") { try EnrollmentTrust.checkReceipt(altered, tokenSecret: token) }
        }
    }

    // MARK: Heartbeat replies

    func reply(nonce: String = "n0nce", issuedAt: Date = Date(timeIntervalSince1970: 1_800_000_000), interval: Double = 30,
               privacy: PrivacySettings = PrivacySettings(minCount: 5, epsilon: 1), announcements: [SignedKeyAnnouncement] = []) throws -> HeartbeatReply {
        let manifest = try signer.sign(DeploymentManifest(fleetID: "fleet_a", deviceID: "dev_a", sequence: 7, model: "m", version: "v",
                                                          sha256: String(repeating: "a", count: 64), size: 10, issuedAt: issuedAt, blobPath: "/b"))
        return HeartbeatReply(fleetID: "fleet_a", deviceID: "dev_a", nonce: nonce, issuedAt: issuedAt, desired: manifest,
                              heartbeatInterval: interval, keyAnnouncements: announcements, privacy: privacy)
    }

    func verify(_ signed: SignedHeartbeatReply?, nonce: String = "n0nce", requestAge: TimeInterval = 0.2) throws -> HeartbeatReplyVerifier.Verified {
        try HeartbeatReplyVerifier.verify(signed, pinnedKey: publicKey, fleetID: "fleet_a", deviceID: "dev_a", nonce: nonce, requestAge: requestAge)
    }

    @Test("a reply signed for this device and nonce verifies; every field changed after signing is refused")
    func everyFieldTampered() throws {
        let original = try reply()
        let signed = try signer.sign(original)
        let verified = try verify(signed)
        #expect(verified.reply == original && verified.signingKey == publicKey)

        let payload = try #require(Data(base64Encoded: signed.payload))
        let fields = try #require(try JSONSerialization.jsonObject(with: payload) as? [String: Any])
        let other = try signer.sign(DeploymentManifest(fleetID: "fleet_a", deviceID: "dev_a", sequence: 8, model: "evil", version: "v",
                                                        sha256: String(repeating: "b", count: 64), size: 10, issuedAt: Date(), blobPath: "/evil"))
        let changes: [String: Any] = [
            "fleetID": "fleet_b", "deviceID": "dev_b", "nonce": "other", "issuedAt": "2031-01-01T00:00:00Z",
            "desired": ["payload": other.payload, "signature": other.signature], "heartbeatInterval": 1e300,
            "keyAnnouncements": [["payload": "e30=", "signature": String(repeating: "A", count: 86) + "=="]],
            "privacy": ["minCount": 0],
        ]
        #expect(Set(changes.keys) == Set(fields.keys), "every signed field is tampered with once")
        for (field, value) in changes.sorted(by: { $0.key < $1.key }) {
            var edited = fields
            edited[field] = value
            let bytes = try JSONSerialization.data(withJSONObject: edited, options: [.sortedKeys])
            let tampered = SignedHeartbeatReply(payload: bytes.base64EncodedString(), signature: signed.signature)
            #expect(throws: HeartbeatReplyError.badSignature(pinned: fingerprint), "\(field) changed after signing") { try verify(tampered) }
        }
        // Dropping the desired manifest (a MITM withholding a deployment) breaks it too.
        var withoutDesired = fields
        withoutDesired["desired"] = nil
        let dropped = try JSONSerialization.data(withJSONObject: withoutDesired, options: [.sortedKeys])
        #expect(throws: HeartbeatReplyError.badSignature(pinned: fingerprint)) {
            try verify(SignedHeartbeatReply(payload: dropped.base64EncodedString(), signature: signed.signature))
        }
        var signature = try #require(Data(base64Encoded: signed.signature))
        signature[3] ^= 0x40
        #expect(throws: HeartbeatReplyError.badSignature(pinned: fingerprint)) {
            try verify(SignedHeartbeatReply(payload: signed.payload, signature: signature.base64EncodedString()))
        }
        #expect(throws: HeartbeatReplyError.unsigned) { try verify(nil) }
        #expect(throws: HeartbeatReplyError.self) { try verify(SignedHeartbeatReply(payload: "%%%", signature: signed.signature)) }
        #expect(throws: HeartbeatReplyError.self) { try verify(SignedHeartbeatReply(payload: signed.payload, signature: "AAAA")) }
        // Another key (an impostor controller) signing the same content.
        let impostor = try ManifestSigner(privateKey: Curve25519.Signing.PrivateKey()).sign(original)
        #expect(throws: HeartbeatReplyError.badSignature(pinned: fingerprint)) { try verify(impostor) }
    }

    @Test("correctly signed replies for another fleet, device or heartbeat, or held back too long, are refused")
    func bindingAndFreshness() throws {
        var otherFleet = try reply()
        otherFleet.fleetID = "fleet_b"
        #expect(throws: HeartbeatReplyError.wrongFleet(expected: "fleet_a", got: "fleet_b")) { try verify(try signer.sign(otherFleet)) }
        var otherDevice = try reply()
        otherDevice.deviceID = "dev_b"
        #expect(throws: HeartbeatReplyError.wrongDevice(expected: "dev_a", got: "dev_b")) { try verify(try signer.sign(otherDevice)) }
        // A replay: an authentic reply to an earlier heartbeat.
        #expect(throws: HeartbeatReplyError.wrongNonce) { try verify(try signer.sign(try reply(nonce: "earlier")), nonce: "now") }
        #expect(throws: HeartbeatReplyError.wrongNonce) { try verify(try signer.sign(try reply(nonce: "")), nonce: "") }
        // The replay window: the right reply held back too long by a man in the middle.
        let held = HeartbeatReplyVerifier.replayWindow + 1
        #expect(throws: HeartbeatReplyError.late(seconds: held)) { try verify(try signer.sign(try reply()), requestAge: held) }
        #expect(try verify(try signer.sign(try reply()), requestAge: HeartbeatReplyVerifier.replayWindow).reply.nonce == "n0nce")
        // The device's clock does not judge the signed issue time (a Pi boots without one).
        #expect(try verify(try signer.sign(try reply(issuedAt: Date(timeIntervalSince1970: 0)))).reply.issuedAt == Date(timeIntervalSince1970: 0))
        // Signed but invalid privacy settings are refused, not applied.
        #expect(throws: HeartbeatReplyError.invalidPrivacy) { try verify(try signer.sign(try reply(privacy: PrivacySettings(minCount: -1)))) }
        #expect(throws: HeartbeatReplyError.invalidPrivacy) { try verify(try signer.sign(try reply(privacy: PrivacySettings(epsilon: 1e300)))) }
    }

    @Test("a reply signed with a rotated key verifies through its own announcement chain only")
    func rotation() throws {
        let new = Curve25519.Signing.PrivateKey()
        let newKey = new.publicKey.rawRepresentation.base64EncodedString()
        let announcement = try signer.announce(KeyAnnouncement(fleetID: "fleet_a", previousPublicKey: publicKey, newPublicKey: newKey, issuedAt: Date()))
        let rotated = try ManifestSigner(privateKey: new).sign(try reply(announcements: [announcement]))
        #expect(try verify(rotated).signingKey == newKey)
        let unannounced = try ManifestSigner(privateKey: new).sign(try reply())
        #expect(throws: HeartbeatReplyError.badSignature(pinned: fingerprint)) { try verify(unannounced) }
        let selfSigned = try ManifestSigner(privateKey: new).announce(KeyAnnouncement(fleetID: "fleet_a", previousPublicKey: publicKey, newPublicKey: newKey, issuedAt: Date()))
        let forged = try ManifestSigner(privateKey: new).sign(try reply(announcements: [selfSigned]))
        #expect(throws: HeartbeatReplyError.badSignature(pinned: fingerprint)) { try verify(forged) }
    }

    @Test("heartbeat intervals are clamped to 1 s ... 24 h")
    func intervalBounds() {
        #expect(NetworkBounds.clampedHeartbeatInterval(1e300) == 86_400)
        #expect(NetworkBounds.clampedHeartbeatInterval(.greatestFiniteMagnitude) == 86_400)
        #expect(NetworkBounds.clampedHeartbeatInterval(0) == 1)
        #expect(NetworkBounds.clampedHeartbeatInterval(-5) == 1)
        #expect(NetworkBounds.clampedHeartbeatInterval(.leastNonzeroMagnitude) == 1)
        #expect(NetworkBounds.clampedHeartbeatInterval(30) == 30)
        // What the agent then does with it must not trap.
        #expect(Int(NetworkBounds.clampedHeartbeatInterval(1e300) * 1.1 * 1000) == 95_040_000)
    }
}
