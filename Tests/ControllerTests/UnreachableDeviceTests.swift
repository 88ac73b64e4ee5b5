import FleetKit
import Foundation
import Testing
@testable import FleetController

/// Pushes that fail are retried on the documented schedule, and devices that neither answer
/// nor heartbeat end as reported failures (docs/ROLLOUTS.md, "Unreachable devices"), on a
/// real SQLite database with an injected clock.
@Suite("Pushes and unreachable devices")
struct UnreachableDeviceTests {
    let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Models/fashion-mnist")

    func enroll(_ harness: ServiceHarness, _ name: String, pushURL: String = "") async throws -> String {
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        return try await harness.service.enroll(EnrollRequest(token: token.token, name: name, labels: [:], pushURL: pushURL, agentVersion: "t")).deviceID
    }

    func deployV1(_ harness: ServiceHarness) async throws -> DeploymentInfo {
        _ = try await harness.service.uploadModel(try Data(contentsOf: samples.appendingPathComponent("bnn-cnn.bnn")),
                                                  name: "fashion", version: "v1", createdBy: "admin")
        return try await harness.service.deploy(DeploymentRequest(model: "fashion", version: "v1", target: DeploymentTarget()), createdBy: "admin")
    }

    /// Polls `condition` every 20 ms for up to `seconds` of real time.
    func waitFor(_ what: String, seconds: Double = 10, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("timed out waiting for \(what)")
        throw CancellationError()
    }

    @Test("the backoff after n failed pushes is 2^n s, with 25 % jitter, capped by --push-max-backoff")
    func backoffSchedule() {
        let expected: [(attempts: Int, seconds: Double)] = [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (7, 60), (40, 60)]
        for (attempts, base) in expected {
            let draws = (0..<400).map { _ in PushService.backoff(afterAttempts: attempts, max: 60) }
            #expect(draws.allSatisfy { $0 >= base * 0.75 && $0 <= base * 1.25 }, "after \(attempts): \(draws.min()!)...\(draws.max()!)")
            // Jittered, so a fleet that failed together does not retry in lockstep.
            #expect(draws.min()! < base * 0.9 && draws.max()! > base * 1.1, "after \(attempts): \(draws.min()!)...\(draws.max()!)")
        }
        #expect((0..<100).allSatisfy { _ in (0.75...1.25).contains(PushService.backoff(afterAttempts: 5, max: 1)) })
    }

    @Test("the push loop records each failure and schedules the next attempt on that schedule")
    func pushLoopFollowsSchedule() async throws {
        let clock = TestClock()
        let harness = try ServiceHarness(now: { clock.now }) { $0.pushInterval = 0.02 }
        // Nothing listens on port 1: every push is refused at once.
        let device = try await enroll(harness, "unreachable", pushURL: "http://127.0.0.1:1")
        let deployment = try await deployV1(harness)
        let pushes = PushService(service: harness.service, logger: .init(label: "test"))
        let loop = Task { await pushes.run() }
        defer { loop.cancel() }
        for (attempt, base) in [(1, 2.0), (2, 4.0), (3, 8.0)] {
            var row: DeviceDeploymentRecord?
            try await waitFor("push attempt \(attempt)") {
                row = try await harness.store.deviceDeployment(deploymentID: deployment.id, deviceID: device)
                return row?.pushAttempts == attempt
            }
            let delay = try #require(row?.nextPushAt).timeIntervalSince(clock.now)
            #expect(delay >= base * 0.75 - 0.002 && delay <= base * 1.25 + 0.002, "attempt \(attempt): next in \(delay) s")
            #expect(row?.state == "pending" && row?.reason?.hasPrefix("push failed: ") == true, "\(row?.reason ?? "nil")")
            // Not retried before its time...
            try await Task.sleep(for: .milliseconds(150))
            #expect(try await harness.store.deviceDeployment(deploymentID: deployment.id, deviceID: device)?.pushAttempts == attempt)
            clock.advance(delay + 0.01)  // ...and retried once it has come
        }
        #expect(harness.manifestsSigned() == 1, "every attempt sends the one manifest signed for this device and deployment")
    }

    @Test("a device stuck in notified, downloading or installed and silent for --unreachable-after fails; one that heartbeats does not")
    func stuckDevicesFail() async throws {
        let clock = TestClock()
        let harness = try ServiceHarness(now: { clock.now }) { $0.unreachableAfter = 300 }
        var devices: [String: String] = [:]
        for name in ["notified", "downloading", "installed", "heartbeating"] { devices[name] = try await enroll(harness, name) }
        let deployment = try await deployV1(harness)
        for (name, state) in [("notified", DeploymentState.notified), ("downloading", .downloading), ("installed", .installed),
                              ("heartbeating", .downloading)] {
            try await harness.store.applyReport(deviceID: devices[name]!, report: DeploymentReport(sequence: deployment.sequence, state: state),
                                                now: clock.now)
        }
        let sweeper = UnreachableDevices(service: harness.service, logger: .init(label: "test"))
        clock.advance(299)
        try await sweeper.sweep()
        for (name, id) in devices {
            #expect(try await harness.store.deviceDeployment(deploymentID: deployment.id, deviceID: id)?.state == name.replacingOccurrences(of: "heartbeating", with: "downloading"),
                    "\(name): not yet silent for 300 s")
        }
        let beating = try #require(try await harness.store.device(id: devices["heartbeating"]!))
        _ = try await harness.service.heartbeat(device: beating, HeartbeatRequest(agentVersion: "t", pushURL: "", activeModel: nil, reports: [],
                                                                                   aggregates: [], events: []), bytes: 10)
        clock.advance(2)
        try await sweeper.sweep()
        for name in ["notified", "downloading", "installed"] {
            let row = try #require(try await harness.store.deviceDeployment(deploymentID: deployment.id, deviceID: devices[name]!))
            #expect(row.state == "failed" && row.reason == "unreachable: no heartbeat for 300s since the device reported \(name)",
                    "\(name): \(row.state) \(row.reason ?? "nil")")
        }
        #expect(try await harness.store.deviceDeployment(deploymentID: deployment.id, deviceID: devices["heartbeating"]!)?.state == "downloading",
                "a device that heartbeats is never unreachable")
    }

    @Test("the unreachable check starts only after the controller itself was up for --unreachable-after")
    func waitsForOwnUptime() async throws {
        let clock = TestClock()
        // 8 s of own uptime against a check after 1 s: a busy CI machine that oversleeps by
        // a few seconds still checks inside the wait (it failed at 1 s against 0.6 s).
        let harness = try ServiceHarness(now: { clock.now }) { $0.unreachableAfter = 8 }
        let device = try await enroll(harness, "silent")
        let deployment = try await deployV1(harness)
        try await harness.store.applyReport(deviceID: device, report: DeploymentReport(sequence: deployment.sequence, state: .downloading),
                                            now: clock.now)
        clock.advance(3600)  // silent for an hour, as if the controller had been down that long
        let sweeper = Task { await UnreachableDevices(service: harness.service, logger: .init(label: "test")).run() }
        defer { sweeper.cancel() }
        let started = ContinuousClock.now
        try await Task.sleep(for: .seconds(1))
        let checkedAfter = ContinuousClock.now - started
        #expect(checkedAfter < .seconds(8), "the check itself came late: \(checkedAfter)")
        #expect(try await harness.store.deviceDeployment(deploymentID: deployment.id, deviceID: device)?.state == "downloading",
                "\(checkedAfter) after the start nothing is blamed yet")
        try await waitFor("the silent device marked unreachable", seconds: 30) {
            try await harness.store.deviceDeployment(deploymentID: deployment.id, deviceID: device)?.state == "failed"
        }
    }
}
