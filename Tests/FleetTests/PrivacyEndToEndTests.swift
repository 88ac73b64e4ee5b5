import FleetKit
import Foundation
import Testing

/// Fleet privacy settings reach agents, shape what leaves them, and every upload is in
/// the device's ledger.
@Suite("Privacy end to end")
struct PrivacyEndToEndTests {
    @Test("suppression set with fleetctl applies on the device; the ledger lists the uploads")
    func privacy() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        let settings = try fleet.fleetctl(["privacy", "--min-count", "1000", "--json"])
        #expect(settings.contains("\"minCount\" : 1000"))
        try fleet.startAgent("q", token: try await fleet.enrollmentToken())
        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-cnn.bnn").path, "--name", "fashion"])
        try fleet.fleetctl(["deploy", "model", "v1", "--wait", "--timeout", "60s"])
        let local = FleetHTTPClient(baseURL: fleet.agentURLs["q"]!, token: nil)
        for image in try fashionImages(count: 6) {
            _ = try await local.send("POST", "/v1/infer", body: image, contentType: "application/octet-stream")
        }
        try await eventually("the 6 inferences arrive with every class count withheld") {
            let metrics = try await fleet.admin.json("GET", "/api/v1/metrics?since=3600", as: MetricsSummary.self)
            guard let entry = metrics.entries.first else { return false }
            return entry.inferences == 6 && entry.classCounts.allSatisfy { $0 == 0 }
        }
        let (deviceID, _) = try fleet.agentIdentity("q")
        let ledger = try await fleet.admin.json("GET", "/api/v1/devices/\(deviceID)/uploads", as: [UploadRecord].self)
        #expect(ledger.count >= 2)
        #expect(ledger.allSatisfy { $0.bytes > 0 && $0.fields.first?.hasPrefix("state") == true })
        #expect(ledger.contains { $0.fields.contains { $0.hasPrefix("aggregates: ") } })
        let shown = try fleet.fleetctl(["device", "show", deviceID])
        #expect(shown.contains("privacy ledger"))
    }
}
