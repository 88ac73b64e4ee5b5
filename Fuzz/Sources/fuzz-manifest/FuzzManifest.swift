import Crypto
import FleetKit
import Foundation
import FuzzSupport

// Fuzzes what an agent does with manifests it is handed. The first byte picks the path,
// the rest is its input:
//   0: the body of `POST /v1/push` (AgentServer): FleetJSON-decoded SignedManifest, then
//      ManifestVerifier.verify against a pinned key, for fleet_fuzz/dev_fuzz, last
//      accepted sequence 4;
//   1: a manifest payload that the harness signs with the pinned key before verifying, so
//      the fuzzer reaches the decoding and checks behind a valid signature (what a
//      controller, or someone holding its key, can send);
//   2: a key-rotation chain as a heartbeat response carries it (KeyRotation.follow): up to
//      8 announcement payloads separated by zero bytes, each signed by the fixed key named as
//      its previousPublicKey (so chains verify), followed from the pinned key.
// Keys are fixed (Ed25519 from fixed 32-byte seeds; signing is deterministic), so seeds
// hold validly signed manifests and every run is reproducible. Any refusal is fine; a
// crash, trap, hang or an accepted manifest that breaks the verifier's promises is a bug.

enum Keys {
    /// Key 0 is the pinned controller key; 1 and 2 are rotation targets.
    static let privateKeys: [Curve25519.Signing.PrivateKey] = (0..<3).map { index in
        try! Curve25519.Signing.PrivateKey(rawRepresentation: Data((0..<32).map { UInt8(truncatingIfNeeded: $0 * 7 + index * 64 + 1) }))
    }
    static let publicKeys = privateKeys.map { $0.publicKey.rawRepresentation.base64EncodedString() }
    static let signers = privateKeys.map { ManifestSigner(privateKey: $0) }
    static let fleetID = "fleet_fuzz"
    static let deviceID = "dev_fuzz"
    static let lastAccepted: Int64 = 4
    static let verifier = try! ManifestVerifier(publicKeyBase64: publicKeys[0], fleetID: fleetID, deviceID: deviceID)
}

/// One input (libFuzzer calls this through Fuzz.main in main.swift).
func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = Fuzz.data(start, count)
    guard let mode = input.first else { return 0 }
    let body = input.dropFirst()
    switch mode % 3 {
    case 0: push(Data(body))
    case 1: signedPayload(Data(body))
    default: rotation(Data(body))
    }
    return 0
}

func push(_ body: Data) {
    // The agent collects at most 64 KiB of a push body.
    guard body.count <= 64 * 1024 else { return }
    guard let signed = try? FleetJSON.decoder.decode(SignedManifest.self, from: body) else { return }
    verify(signed)
}

func signedPayload(_ payload: Data) {
    guard let signature = try? Keys.privateKeys[0].signature(for: payload) else { Fuzz.fail("signing failed") }
    verify(SignedManifest(payload: payload.base64EncodedString(), signature: signature.base64EncodedString()))
}

func verify(_ signed: SignedManifest) {
    let manifest: DeploymentManifest
    do {
        manifest = try Keys.verifier.verify(signed, lastAccepted: Keys.lastAccepted)
    } catch is ManifestError {
        return
    } catch {
        Fuzz.fail("verify threw \(type(of: error)), not ManifestError: \(error)")
    }
    // What the agent relies on once verify returns.
    guard manifest.fleetID == Keys.fleetID, manifest.deviceID == Keys.deviceID, manifest.sequence > Keys.lastAccepted,
          manifest.size > 0, manifest.sha256.count == 64, manifest.sha256.lowercased().allSatisfy({ "0123456789abcdef".contains($0) })
    else { Fuzz.fail("verify accepted a manifest that breaks its checks: \(manifest)") }
    guard let payload = Data(base64Encoded: signed.payload),
          Keys.privateKeys[0].publicKey.isValidSignature(Data(base64Encoded: signed.signature) ?? Data(), for: payload)
    else { Fuzz.fail("verify accepted a manifest whose signature does not verify") }
    // The agent logs and stores refusal reasons; descriptions must render.
    _ = ManifestError.notNewer(sequence: manifest.sequence, lastAccepted: Keys.lastAccepted).description
}

func rotation(_ input: Data) {
    var chain: [SignedKeyAnnouncement] = []
    var rest = input[...]
    while chain.count < 8, !rest.isEmpty {
        let end = rest.firstIndex(of: 0) ?? rest.endIndex
        let payload = Data(rest[rest.startIndex..<end])
        rest = end < rest.endIndex ? rest[(end + 1)...] : rest[rest.endIndex...]
        // Sign with the fixed key the payload names as previous, if any, else key 0.
        let previous = (try? ManifestCoding.decoder.decode(KeyAnnouncement.self, from: payload))?.previousPublicKey
        let key = Keys.publicKeys.firstIndex(of: previous ?? "") ?? 0
        guard let signature = try? Keys.privateKeys[key].signature(for: payload) else { Fuzz.fail("signing failed") }
        chain.append(SignedKeyAnnouncement(payload: payload.base64EncodedString(), signature: signature.base64EncodedString()))
    }
    let newest = KeyRotation.follow(chain, from: Keys.publicKeys[0], fleetID: Keys.fleetID)
    // The result is the pinned key or a key some announcement introduced.
    let introduced = chain.compactMap { Data(base64Encoded: $0.payload) }
        .compactMap { try? ManifestCoding.decoder.decode(KeyAnnouncement.self, from: $0).newPublicKey }
    guard newest == Keys.publicKeys[0] || introduced.contains(newest) else {
        Fuzz.fail("KeyRotation.follow returned a key no announcement introduced")
    }
}

enum ManifestSeeds {
    static let issued = Date(timeIntervalSince1970: 1_800_000_000)

    static func manifest(sequence: Int64 = 5, fleet: String = Keys.fleetID, device: String = Keys.deviceID,
                         sha256: String = String(repeating: "ab", count: 32), size: Int = 1000, shadow: Bool? = nil) -> DeploymentManifest {
        DeploymentManifest(fleetID: fleet, deviceID: device, sequence: sequence, model: "fashion", version: "v2", sha256: sha256,
                           size: size, issuedAt: issued, blobPath: "/api/v1/blobs/\(sha256)", shadow: shadow)
    }

    static func write(_ seeds: SeedWriter) throws {
        let cases: [(String, DeploymentManifest)] = [
            ("valid", manifest()),
            ("valid-shadow", manifest(sequence: 6, shadow: true)),
            ("valid-max-sequence", manifest(sequence: .max, size: .max)),
            ("wrong-fleet", manifest(fleet: "fleet_other")),
            ("wrong-device", manifest(device: "dev_other")),
            ("replayed", manifest(sequence: 4)),
            ("bad-sha", manifest(sha256: "xyz")),
            ("zero-size", manifest(size: 0)),
        ]
        for (name, value) in cases {
            let signed = try Keys.signers[0].sign(value)
            try seeds.write("push-\(name).json", Data([0]) + FleetJSON.encoder.encode(signed))
            try seeds.write("payload-\(name).json", Data([1]) + Data(base64Encoded: signed.payload)!)
        }
        // Signed by another key; tampered signature; not base64; not JSON.
        let foreign = try Keys.signers[1].sign(manifest())
        try seeds.write("push-foreign-key.json", Data([0]) + FleetJSON.encoder.encode(foreign))
        var tampered = try Keys.signers[0].sign(manifest())
        tampered.signature = String(tampered.signature.reversed())
        try seeds.write("push-tampered.json", Data([0]) + FleetJSON.encoder.encode(tampered))
        try seeds.write("push-not-base64.json", Data([0]) + Data(#"{"payload":"%%%","signature":"x"}"#.utf8))
        try seeds.write("push-garbage", Data([0]) + Data("not json".utf8))
        try seeds.write("payload-dates.json", Data([1]) + Data(#"{"blobPath":"b","deviceID":"dev_fuzz","fleetID":"fleet_fuzz","issuedAt":"2027-01-15T08:00:00.123Z","model":"m","sequence":9,"sha256":"ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB","size":1,"version":"v"}"#.utf8))

        func announcement(_ from: Int, _ to: Int, fleet: String = Keys.fleetID) throws -> Data {
            try ManifestCoding.encoder.encode(KeyAnnouncement(fleetID: fleet, previousPublicKey: Keys.publicKeys[from],
                                                              newPublicKey: Keys.publicKeys[to], issuedAt: issued))
        }
        try seeds.write("rotation-one.json", Data([2]) + announcement(0, 1))
        try seeds.write("rotation-two.json", Data([2]) + announcement(1, 2) + Data([0]) + announcement(0, 1))
        try seeds.write("rotation-wrong-fleet.json", Data([2]) + announcement(0, 1, fleet: "fleet_other"))
    }
}
