import FleetAgent
import FleetKit
import Foundation
import Testing

/// Fleet privacy settings reach real agent processes, shape what leaves them, and every
/// upload is in the device's ledger.
@Suite("Privacy end to end", .serialized)
struct PrivacyEndToEndTests {
    static func agentStatus(_ fleet: TestFleet, _ name: String) async throws -> AgentRuntime.Status {
        try await FleetHTTPClient(baseURL: fleet.agentURLs[name]!, token: nil).json("GET", "/v1/status", as: AgentRuntime.Status.self)
    }

    /// Waits until the agent has sent every window and the controller has some.
    static func delivered(_ fleet: TestFleet, _ name: String) async throws -> MetricsSummary.Entry {
        var entry: MetricsSummary.Entry?
        try await eventually("the agent's windows arrive") {
            let metrics = try await fleet.admin.json("GET", "/api/v1/metrics?since=3600", as: MetricsSummary.self)
            entry = metrics.entries.first
            guard entry != nil else { return false }
            return try await agentStatus(fleet, name).bufferedWindows == 0
        }
        return entry!
    }

    static func infer(_ fleet: TestFleet, _ name: String, _ images: [Data]) async throws -> [Int] {
        let local = FleetHTTPClient(baseURL: fleet.agentURLs[name]!, token: nil)
        var classes: [Int] = []
        for image in images {
            let (data, _) = try await local.send("POST", "/v1/infer", body: image, contentType: "application/octet-stream")
            classes.append(try FleetJSON.decoder.decode(InferenceResponse.self, from: data).topClass)
        }
        return classes
    }

    @Test("suppression set with fleetctl applies on the device: fewer than k inferences leave nothing, not even the total; the ledger lists the uploads")
    func privacy() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        let settings = try fleet.fleetctl(["privacy", "--min-count", "1000", "--json"])
        #expect(settings.contains("\"minCount\" : 1000"))
        try fleet.startAgent("q", token: try await fleet.enrollmentToken())
        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-cnn.bnn").path, "--name", "fashion"])
        try fleet.fleetctl(["deploy", "model", "v1", "--wait", "--timeout", "60s"])
        _ = try await Self.infer(fleet, "q", try fashionImages(count: 6))
        let entry = try await Self.delivered(fleet, "q")
        // A total of 6 next to withheld classes would give them away: 6 < 1000, so it is withheld too.
        #expect(entry.windows >= 1 && entry.inferences == 0 && entry.classCounts.allSatisfy { $0 == 0 }, "\(entry)")
        let (deviceID, _) = try fleet.agentIdentity("q")
        let ledger = try await fleet.admin.json("GET", "/api/v1/devices/\(deviceID)/uploads", as: [UploadRecord].self)
        #expect(ledger.count >= 2)
        #expect(ledger.allSatisfy { $0.bytes > 0 && $0.fields.first?.hasPrefix("state") == true })
        #expect(ledger.contains { $0.fields.contains { $0.hasPrefix("aggregates: ") } })
        let shown = try fleet.fleetctl(["device", "show", deviceID])
        #expect(shown.contains("privacy ledger"))
    }

    @Test("noise end to end: with epsilon the controller's totals differ from the exact ones by Laplace amounts; without, they are equal")
    func noise() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        try fleet.fleetctl(["privacy", "--epsilon", "1"])
        try fleet.startAgent("n", token: try await fleet.enrollmentToken())
        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-cnn.bnn").path, "--name", "fashion"])
        try fleet.fleetctl(["deploy", "model", "v1", "--wait", "--timeout", "60s"])
        let images = try fashionImages(count: 40)
        let first = try await Self.infer(fleet, "n", Array(images.prefix(30)))
        let noisy = try await Self.delivered(fleet, "n")
        var exact = [Int](repeating: 0, count: 10)
        for c in first { exact[c] += 1 }
        let deviations = zip(noisy.classCounts, exact).map { $0 - $1 } + [noisy.inferences - 30]
        // Each of the w windows adds Laplace(4) to each count; |Laplace(4)| > 80 has
        // probability e^-20, so a sum over w windows stays within 80 w.
        #expect(deviations.contains { $0 != 0 }, "noise on, yet every total is exact: \(deviations)")
        #expect(deviations.allSatisfy { abs($0) <= 80 * noisy.windows }, "\(deviations) over \(noisy.windows) windows")
        // Epsilon is charged once per released window, and the device says what it spent.
        let (deviceID, _) = try fleet.agentIdentity("n")
        let ledger = try await fleet.admin.json("GET", "/api/v1/devices/\(deviceID)/uploads", as: [UploadRecord].self)
        #expect(ledger.first?.epsilonSpent == Double(noisy.windows), "\(String(describing: ledger.first?.epsilonSpent)) for \(noisy.windows) windows")
        #expect(try await Self.agentStatus(fleet, "n").epsilonSpent == Double(noisy.windows))

        // Noise off: what arrives from now on is exact.
        try fleet.fleetctl(["privacy", "--no-noise"])
        try await Task.sleep(for: .seconds(3))  // a few heartbeats: the agent has the new settings
        let before = try await Self.delivered(fleet, "n")
        let second = try await Self.infer(fleet, "n", Array(images.suffix(10)))
        var after = before
        try await eventually("the exact windows arrive") {
            after = try await Self.delivered(fleet, "n")
            return after.windows > before.windows
        }
        var added = [Int](repeating: 0, count: 10)
        for c in second { added[c] += 1 }
        #expect(after.inferences - before.inferences == 10)
        #expect(zip(after.classCounts, before.classCounts).map { $0 - $1 } == added)
    }
}
