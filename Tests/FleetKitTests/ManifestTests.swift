import Crypto
import FleetKit
import Foundation
import Testing

/// The manifest tamper matrix: every flipped byte, other keys, other fleets and devices,
/// older or equal sequences. None verifies; each says why.
@Suite("Signed manifests")
struct ManifestTests {
    let key = Curve25519.Signing.PrivateKey()
    var signer: ManifestSigner { ManifestSigner(privateKey: key) }
    let manifest = DeploymentManifest(fleetID: "fleet_1", deviceID: "dev_1", sequence: 5, model: "m", version: "v2",
                                      sha256: String(repeating: "ab", count: 32), size: 1000, issuedAt: Date(timeIntervalSince1970: 1_800_000_000),
                                      blobPath: "/api/v1/blobs/x")

    var verifier: ManifestVerifier {
        try! ManifestVerifier(publicKeyBase64: signer.publicKeyBase64, fleetID: "fleet_1", deviceID: "dev_1")
    }

    @Test("a valid manifest verifies and round-trips")
    func valid() throws {
        #expect(try verifier.verify(try signer.sign(manifest), lastAccepted: 4) == manifest)
    }

    @Test("every flipped byte of payload or signature is refused")
    func flippedBytes() throws {
        let signed = try signer.sign(manifest)
        for field in ["payload", "signature"] {
            let original = Data(base64Encoded: field == "payload" ? signed.payload : signed.signature)!
            for index in original.indices {
                var bytes = original
                bytes[index] ^= 0x01
                var tampered = signed
                if field == "payload" { tampered.payload = bytes.base64EncodedString() } else { tampered.signature = bytes.base64EncodedString() }
                #expect(throws: ManifestError.badSignature, "\(field) byte \(index)") { try verifier.verify(tampered, lastAccepted: 0) }
            }
        }
    }

    @Test("another controller's key, fleet or device, and old sequences are refused with the reason")
    func wrongContext() throws {
        let other = ManifestSigner(privateKey: Curve25519.Signing.PrivateKey())
        #expect(throws: ManifestError.badSignature) { try verifier.verify(try other.sign(manifest), lastAccepted: 0) }
        var wrongFleet = manifest
        wrongFleet.fleetID = "fleet_2"
        #expect(throws: ManifestError.wrongFleet(expected: "fleet_1", got: "fleet_2")) { try verifier.verify(try signer.sign(wrongFleet), lastAccepted: 0) }
        var wrongDevice = manifest
        wrongDevice.deviceID = "dev_2"
        #expect(throws: ManifestError.wrongDevice(expected: "dev_1", got: "dev_2")) { try verifier.verify(try signer.sign(wrongDevice), lastAccepted: 0) }
        #expect(throws: ManifestError.notNewer(sequence: 5, lastAccepted: 5)) { try verifier.verify(try signer.sign(manifest), lastAccepted: 5) }
        #expect(throws: ManifestError.notNewer(sequence: 5, lastAccepted: 9)) { try verifier.verify(try signer.sign(manifest), lastAccepted: 9) }
        #expect(throws: ManifestError.self) { try verifier.verify(SignedManifest(payload: "%%%", signature: "x"), lastAccepted: 0) }
        #expect(ManifestError.notNewer(sequence: 5, lastAccepted: 9).description.contains("not newer"))
    }
}

@Suite("Aggregate windows")
struct AggregateTests {
    @Test("merging adds every count, so totals survive compaction")
    func merge() {
        let t = Date(timeIntervalSince1970: 0)
        var a = AggregateWindow(start: t, end: t.addingTimeInterval(60), model: "m", version: "v1", classes: 3)
        var b = AggregateWindow(start: t.addingTimeInterval(60), end: t.addingTimeInterval(120), model: "m", version: "v1", classes: 3)
        for i in 0..<10 { a.record(predictedClass: i % 3, latencyMs: Double(i), confidence: 0.1 * Float(i)) }
        for _ in 0..<7 { b.record(predictedClass: 1, latencyMs: 0.2, confidence: 1) }
        b.errors = 2
        a.merge(b)
        #expect(a.inferences == 17 && a.errors == 2)
        #expect(a.classCounts == [4, 10, 3])
        #expect(a.latencyHistogram.reduce(0, +) == 17)
        #expect(a.confidenceHistogram.reduce(0, +) == 17)
        #expect(a.start == t && a.end == t.addingTimeInterval(120))
        // 17 latencies: 0, 7 x 0.2, 1, 2, ..., 9 ms; the 9th smallest is 1 ms, in the <= 1 ms bucket.
        #expect(AggregateWindow.latencyPercentile(a.latencyHistogram, 0.5) == 1)
        #expect(a.isWellFormed)
    }
}

@Suite("Metrics summaries")
struct MetricsSummaryTests {
    @Test("the top classes are named by the model's labels, most frequent first, ties by class index, unnamed ones as class N")
    func topClasses() {
        var entry = MetricsSummary.Entry(model: "m", version: "v", devices: 1, windows: 1, inferences: 10, errors: 0, classCounts: [3, 0, 3, 4],
                                         latencyP50Ms: nil, latencyP95Ms: nil, latencyP99Ms: nil, meanConfidence: nil)
        #expect(entry.topClasses(3).map(\.name) == ["class 3", "class 0", "class 2"])
        entry.classLabels = ["T-shirt/top", "Trouser", "Pullover"]
        #expect(entry.topClasses(3).map { "\($0.name):\($0.count)" } == ["class 3:4", "T-shirt/top:3", "Pullover:3"])
    }
}
