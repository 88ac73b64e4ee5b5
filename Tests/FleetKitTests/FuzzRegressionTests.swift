import BitModel
import Crypto
import FleetKit
import Foundation
import Testing

/// Inputs that hung or crashed FleetKit under the fuzz-manifest and fuzz-api harnesses
/// (docs/FUZZING.md), kept in Tests/Fixtures/fuzz-regressions/manifest (and in the corpus).
@Suite("Fuzz regressions: manifests and key rotation")
struct FuzzRegressionTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz-regressions/manifest")

    /// fuzz-manifest's pinned key: Ed25519 from the fixed seed bytes i * 7 + 1.
    static let fuzzKey = try! Curve25519.Signing.PrivateKey(rawRepresentation: Data((0..<32).map { UInt8($0 * 7 + 1) }))

    func signed(_ payload: Data, by key: Curve25519.Signing.PrivateKey) throws -> SignedKeyAnnouncement {
        SignedKeyAnnouncement(payload: payload.base64EncodedString(), signature: try key.signature(for: payload).base64EncodedString())
    }

    /// The fuzzer's input: mode byte 2 (key rotation), then an announcement whose previous
    /// and new key are both the pinned key, which the harness signs with that key.
    /// KeyRotation.follow used to loop forever on it (an agent's heartbeat loop would spin).
    @Test("a key announced as its own successor ends the walk", .timeLimit(.minutes(1)))
    func selfAnnouncement() throws {
        let input = try Data(contentsOf: Self.directory.appendingPathComponent("rotation-self-announcement"))
        #expect(input.first == 2)
        let pinned = Self.fuzzKey.publicKey.rawRepresentation.base64EncodedString()
        let announcement = try ManifestCoding.decoder.decode(KeyAnnouncement.self, from: input.dropFirst())
        #expect(announcement.previousPublicKey == pinned && announcement.newPublicKey == pinned)
        let chain = [try signed(Data(input.dropFirst()), by: Self.fuzzKey)]
        #expect(KeyRotation.follow(chain, from: pinned, fleetID: announcement.fleetID) == pinned)
    }

    @Test("a rotation cycle A -> B -> A stops at B", .timeLimit(.minutes(1)))
    func cycle() throws {
        let a = Curve25519.Signing.PrivateKey(), b = Curve25519.Signing.PrivateKey()
        let keyA = a.publicKey.rawRepresentation.base64EncodedString(), keyB = b.publicKey.rawRepresentation.base64EncodedString()
        let date = Date(timeIntervalSince1970: 1_800_000_000)
        let forward = try ManifestCoding.encoder.encode(KeyAnnouncement(fleetID: "f", previousPublicKey: keyA, newPublicKey: keyB, issuedAt: date))
        let back = try ManifestCoding.encoder.encode(KeyAnnouncement(fleetID: "f", previousPublicKey: keyB, newPublicKey: keyA, issuedAt: date))
        let chain = [try signed(forward, by: a), try signed(back, by: b)]
        #expect(KeyRotation.follow(chain, from: keyA, fleetID: "f") == keyB)
        #expect(KeyRotation.follow(chain, from: keyB, fleetID: "f") == keyA)
    }
}

/// fuzz-api's seed `PUT /api/v1/privacy {"minCount":1000000,"epsilon":1e-300}`: the settings
/// are valid, and the Laplace noise they ask for (scale 4e300) made
/// `PrivacyMechanism.noisy` convert a non-representable Double to Int on every agent.
@Suite("Fuzz regressions: privacy")
struct PrivacyFuzzRegressionTests {
    @Test("tiny epsilons give clamped counts the controller accepts, not a trap")
    func tinyEpsilon() throws {
        let input = try Data(contentsOf: FuzzRegressionTests.directory.deletingLastPathComponent()
            .appendingPathComponent("api/privacy-tiny-epsilon.json"))
        #expect(input.first == 4)  // fuzz-api's selector for PrivacySettings
        let settings = try FleetJSON.decoder.decode(PrivacySettings.self, from: input.dropFirst())
        #expect(settings.isValid)
        var window = AggregateWindow(start: Date(timeIntervalSince1970: 0), end: Date(timeIntervalSince1970: 60), model: "m", version: "v", classes: 3)
        for i in 0..<20 { window.record(predictedClass: i % 3, latencyMs: Double(i), confidence: 0.5) }
        // Seeded and printed, as every randomized test (BITFLEET_TEST_SEED replays a run).
        let seed = ProcessInfo.processInfo.environment["BITFLEET_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64(UInt32.max))
        print("tiny epsilons: noise seed \(seed) (replay with BITFLEET_TEST_SEED=\(seed))")
        for epsilon in [1e-300, Double.leastNonzeroMagnitude, 1e-12] {  // down to the smallest subnormal
            var mechanism = PrivacyMechanism(settings: PrivacySettings(minCount: settings.minCount, epsilon: epsilon),
                                             random: SeededGenerator(seed: seed))
            let released = mechanism.protect(window)
            #expect(released.isWellFormed, "epsilon \(epsilon)")
            #expect(([released.inferences, released.errors] + released.latencyHistogram).allSatisfy { abs($0) <= PrivacyMechanism<SeededGenerator>.maxNoisyMagnitude })
        }
    }
}
