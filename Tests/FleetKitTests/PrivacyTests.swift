import BitModel
import FleetKit
import Foundation
import Testing

/// The privacy mechanisms: the Laplace noise has the right scale, sums over many windows
/// stay unbiased, suppression withholds small counts, and a heartbeat carries nothing but
/// aggregates and state.
@Suite("Privacy")
struct PrivacyTests {
    @Test("Laplace noise has mean 0 and variance 2b^2 (seeded)")
    func noiseScale() {
        let settings = PrivacySettings(epsilon: 0.5)
        let b = settings.laplaceScale!
        #expect(b == 8)
        var mechanism = PrivacyMechanism(settings: settings, random: SeededGenerator(seed: 42))
        let n = 40_000
        let samples = (0..<n).map { _ in mechanism.laplace(scale: b) }
        let mean = samples.reduce(0, +) / Double(n)
        let variance = samples.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n - 1)
        // Standard error of the mean: sqrt(2) b / sqrt(n) = 0.057; allow 4 of them.
        #expect(abs(mean) < 4 * (2.0).squareRoot() * b / Double(n).squareRoot(), "mean \(mean)")
        #expect(abs(variance / (2 * b * b) - 1) < 0.05, "variance \(variance), expected \(2 * b * b)")
        // Median absolute value of Laplace(b) is b ln 2.
        let median = samples.map(abs).sorted()[n / 2]
        #expect(abs(median / (b * log(2)) - 1) < 0.05)
    }

    @Test("noisy totals over many windows stay unbiased")
    func unbiasedTotals() {
        var mechanism = PrivacyMechanism(settings: PrivacySettings(epsilon: 1), random: SeededGenerator(seed: 7))
        let start = Date(timeIntervalSince1970: 0)
        var exact = 0, noisy = 0, noisyClass3 = 0, exactClass3 = 0
        for w in 0..<2000 {
            var window = AggregateWindow(start: start.addingTimeInterval(Double(w) * 60), end: start.addingTimeInterval(Double(w + 1) * 60),
                                         model: "m", version: "v", classes: 10)
            for i in 0..<(w % 13) { window.record(predictedClass: i % 10, latencyMs: 1, confidence: 0.5) }
            let released = mechanism.protect(window)
            #expect(released.privacy == "laplace epsilon=1.0")
            #expect(released.isWellFormed)
            exact += window.inferences
            noisy += released.inferences
            exactClass3 += window.classCounts[3]
            noisyClass3 += released.classCounts[3]
        }
        // Each window adds Laplace(4) noise (sd 5.66); over 2000 windows the sum's sd is 253.
        #expect(abs(noisy - exact) < 4 * 253, "exact \(exact), noisy \(noisy)")
        #expect(abs(noisyClass3 - exactClass3) < 4 * 253)
    }

    @Test("class counts below the minimum are withheld")
    func suppression() {
        var mechanism = PrivacyMechanism(settings: PrivacySettings(minCount: 5), random: SeededGenerator(seed: 1))
        var window = AggregateWindow(start: Date(), end: Date(), model: "m", version: "v", classes: 4)
        for (cls, count) in [(0, 12), (1, 4), (2, 5), (3, 1)] {
            for _ in 0..<count { window.record(predictedClass: cls, latencyMs: 1, confidence: 1) }
        }
        let released = mechanism.protect(window)
        #expect(released.classCounts == [12, 0, 5, 0])
        #expect(released.suppressedClasses == [1, 3])
        #expect(released.inferences == 22)
    }

    /// Every key a heartbeat can carry, recursively: anything new must be added here on
    /// purpose (and to docs/PRIVACY.md), so no field can start leaking data by accident.
    @Test("a heartbeat carries only state and aggregates")
    func heartbeatSchema() throws {
        var window = AggregateWindow(start: Date(), end: Date(), model: "m", version: "v", classes: 3)
        window.record(predictedClass: 1, latencyMs: 2, confidence: 0.7)
        var mechanism = PrivacyMechanism(settings: PrivacySettings(minCount: 2, epsilon: 1), random: SeededGenerator(seed: 3))
        var shadow = ShadowReport(sequence: 4, classes: 3)
        shadow.record(activeClass: 1, shadowClass: 2, confidenceDelta: 0.1, latencyDeltaMs: 0.2)
        var request = HeartbeatRequest(agentVersion: "1", pushURL: "http://x", activeModel: ActiveModel(name: "m", version: "v", sha256: "s", sequence: 1),
                                       reports: [DeploymentReport(sequence: 1, state: .active, reason: "r")], aggregates: [mechanism.protect(window)],
                                       events: [DeviceEvent(at: Date(), kind: "k", message: "m")], shadow: [shadow])
        request.epsilonSpent = 1
        let object = try JSONSerialization.jsonObject(with: try FleetJSON.encoder.encode(request))
        var keys = Set<String>()
        func collect(_ value: Any, _ path: String) {
            if let dictionary = value as? [String: Any] {
                for (key, inner) in dictionary { keys.insert(path + "." + key); collect(inner, path + "." + key) }
            } else if let array = value as? [Any] {
                for inner in array { collect(inner, path + "[]") }
            }
        }
        collect(object, "")
        let allowed: Set<String> = [
            ".agentVersion", ".pushURL", ".epsilonSpent",
            ".activeModel", ".activeModel.name", ".activeModel.version", ".activeModel.sha256", ".activeModel.sequence",
            ".reports", ".reports[].sequence", ".reports[].state", ".reports[].reason",
            ".events", ".events[].at", ".events[].kind", ".events[].message",
            ".aggregates", ".aggregates[].start", ".aggregates[].end", ".aggregates[].model", ".aggregates[].version",
            ".aggregates[].inferences", ".aggregates[].errors", ".aggregates[].classCounts", ".aggregates[].latencyHistogram",
            ".aggregates[].confidenceHistogram", ".aggregates[].privacy", ".aggregates[].suppressedClasses",
            ".shadow", ".shadow[].sequence", ".shadow[].samples", ".shadow[].agreements", ".shadow[].confusion", ".shadow[].classes",
            ".shadow[].confidenceDeltaSum", ".shadow[].latencyDeltaSumMs",
        ]
        #expect(keys == allowed, "unexpected: \(keys.subtracting(allowed).sorted()), missing: \(allowed.subtracting(keys).sorted())")
    }
}
