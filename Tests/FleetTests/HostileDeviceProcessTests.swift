import FleetKit
import Foundation
import Testing

/// A device with a stolen credential, against a real controller process over HTTP: counts
/// that overflow, counts that are in range but impossible, and requests racing its
/// revocation. The controller stays up, the numbers stay bounded, and the stage decision is
/// the honest devices'.
@Suite("Hostile device against a real controller")
struct HostileDeviceProcessTests {
    func enroll(_ fleet: TestFleet, _ name: String) async throws -> FleetHTTPClient {
        let token = try await fleet.enrollmentToken()
        let enrolled = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: nil).json(
            "POST", "/api/v1/enroll", body: EnrollRequest(token: token, name: name, labels: [:], pushURL: "", agentVersion: "hostile"),
            as: EnrollResponse.self)
        return FleetHTTPClient(baseURL: fleet.controllerURL, token: enrolled.credential, timeout: 10)
    }

    func shadow(_ sequence: Int64, samples: Int, agreements: Int) -> ShadowReport {
        var report = ShadowReport(sequence: sequence, classes: 2)
        report.samples = samples
        report.agreements = agreements
        report.confusion = [agreements, 0, samples &- agreements, 0]
        return report
    }

    func beat(shadow: [ShadowReport] = [], aggregates: [AggregateWindow] = []) -> HeartbeatRequest {
        HeartbeatRequest(agentVersion: "hostile", pushURL: "", activeModel: nil, reports: [], aggregates: aggregates, events: [], shadow: shadow)
    }

    @Test("overflowing and implausible shadow and aggregate counts: refused or bounded, the controller stays up, the gate is the honest device's")
    func extremeCounts() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        let hostile = try await enroll(fleet, "hostile")
        let honest = try await enroll(fleet, "honest")
        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-cnn.bnn").path, "--name", "fashion"])
        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-mlp.bnn").path, "--name", "fashion"])
        let rollout = try FleetJSON.decoder.decode(RolloutInfo.self, from: Data(try fleet.fleetctl(
            ["deploy", "model", "v2", "--shadow", "--min-agreement", "90%", "--shadow-samples", "20", "--json"]).utf8))

        // Two reports near Int.max in one heartbeat: their sum trapped the controller.
        // Now refused whole as malformed (beyond 2^40), and when in the format but
        // impossible, report by report.
        let huge = shadow(rollout.sequence, samples: Int.max - 1, agreements: Int.max - 1)
        let (_, refusedWhole) = try await hostile.send("POST", "/api/v1/heartbeat", body: try FleetJSON.encoder.encode(beat(shadow: [huge, huge])),
                                                        acceptStatuses: [400])
        #expect(refusedWhole.statusCode == 400)
        let large = shadow(rollout.sequence, samples: (1 << 40) - 1, agreements: (1 << 40) - 1)
        _ = try await hostile.json("POST", "/api/v1/heartbeat", body: beat(shadow: [large, large]), as: HeartbeatResponse.self)
        // In range, plausible for a device enrolled seconds ago, and all agreeing.
        _ = try await hostile.json("POST", "/api/v1/heartbeat", body: beat(shadow: [shadow(rollout.sequence, samples: 100_000, agreements: 100_000)]),
                                   as: HeartbeatResponse.self)
        // The honest device disagrees on 8 of 10.
        _ = try await honest.json("POST", "/api/v1/heartbeat", body: beat(shadow: [shadow(rollout.sequence, samples: 10, agreements: 2)]),
                                  as: HeartbeatResponse.self)
        // Aggregates: one beyond the format's bound (refused whole), two in range but impossible.
        let now = Date()
        var window = AggregateWindow(start: now.addingTimeInterval(-30), end: now, model: "fashion", version: "v1", classes: 2)
        window.inferences = Int.max
        let (_, malformed) = try await hostile.send("POST", "/api/v1/heartbeat", body: try FleetJSON.encoder.encode(beat(aggregates: [window])),
                                                     acceptStatuses: [400])
        #expect(malformed.statusCode == 400)
        window.inferences = (1 << 40) - 1
        var second = window
        second.start = now.addingTimeInterval(-20)
        _ = try await hostile.json("POST", "/api/v1/heartbeat", body: beat(aggregates: [window, second]), as: HeartbeatResponse.self)

        // Still up, and the rollout's verdict: capped at 10 samples each, 12 agreements of 20.
        try await eventually("the gate halts the rollout on the honest device's disagreement") {
            try await fleet.admin.json("GET", "/api/v1/rollouts/\(rollout.id)", as: RolloutInfo.self).state == .halted
        }
        let halted = try await fleet.admin.json("GET", "/api/v1/rollouts/\(rollout.id)", as: RolloutInfo.self)
        let summary = try #require(halted.stages[0].shadow)
        #expect(summary.samples == 20 && summary.agreements == 12 && summary.perDeviceCap == 10, "\(summary)")
        let metrics = try await fleet.admin.json("GET", "/api/v1/metrics?since=3600", as: MetricsSummary.self)
        #expect(metrics.entries.isEmpty, "no impossible window was stored")
        let devices = try await fleet.devices()
        let hostileID = try #require(devices.first { $0.name == "hostile" }?.id)
        let events = try await fleet.admin.json("GET", "/api/v1/devices/\(hostileID)/events", as: [DeviceEvent].self)
        #expect(events.filter { $0.kind == "refused_shadow" }.count == 2 && events.filter { $0.kind == "refused_aggregate" }.count == 2,
                "\(events.map(\.kind))")
        let exposition = String(decoding: try await fleet.admin.send("GET", "/metrics").0, as: UTF8.self)
        #expect(exposition.contains("bitfleet_refused_device_counts_total 4"))
        #expect(fleet.controller?.process.isRunning == true)
    }

    @Test("revocation under concurrent requests: once the revoke answers, nothing the device sends is accepted")
    func revocationRace() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        fleet.controllerFlags = ["--auth-failure-limit", "100000"]
        try fleet.startController()
        let device = try await enroll(fleet, "racer")
        let deviceID = try #require(try await fleet.devices().first?.id)
        let revoked = RevokedFlag()
        let request = try FleetJSON.encoder.encode(beat())
        try await withThrowingTaskGroup(of: (accepted: Int, lateAccepted: Int).self) { group in
            for _ in 0..<6 {
                group.addTask {
                    var accepted = 0, late = 0
                    for _ in 0..<150 {
                        let startedAfter = revoked.isSet
                        let (_, response) = try await device.send("POST", "/api/v1/heartbeat", body: request, acceptStatuses: [200, 401])
                        if response.statusCode == 200 {
                            accepted += 1
                            if startedAfter { late += 1 }
                        }
                    }
                    return (accepted, late)
                }
            }
            try await Task.sleep(for: .milliseconds(150))
            _ = try await fleet.admin.send("POST", "/api/v1/devices/\(deviceID)/revoke")
            revoked.set()
            var accepted = 0
            for try await result in group {
                accepted += result.accepted
                #expect(result.lateAccepted == 0, "a heartbeat started after the revocation answered was accepted")
            }
            #expect(accepted > 0, "the race had requests before the revocation")
        }
        let (_, after) = try await device.send("POST", "/api/v1/heartbeat", body: request, acceptStatuses: [401])
        #expect(after.statusCode == 401)
    }
}

final class RevokedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
