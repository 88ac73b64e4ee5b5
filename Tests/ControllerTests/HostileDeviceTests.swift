import Crypto
import FleetKit
import Foundation
import Testing
@testable import FleetController

/// One device with a valid credential, behaving as an attacker would: numbers that overflow,
/// numbers that are in range but impossible, labels it should not have, a push URL aimed
/// elsewhere, floods. The controller stays up, refuses or bounds what it must, and no stage
/// decision moves. On a real SQLite database through FleetService.
@Suite("Hostile devices")
struct HostileDeviceTests {
    let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Models/fashion-mnist")

    func enroll(_ harness: ServiceHarness, _ name: String, tokenLabels: [String: String] = [:],
                asking: [String: String] = [:]) async throws -> DeviceRecord {
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600, labels: tokenLabels))
        let enrolled = try await harness.service.enroll(EnrollRequest(token: token.token, name: name, labels: asking, pushURL: "", agentVersion: "t"))
        return try #require(try await harness.store.device(id: enrolled.deviceID))
    }

    func beat(shadow: [ShadowReport] = [], aggregates: [AggregateWindow] = []) -> HeartbeatRequest {
        HeartbeatRequest(agentVersion: "t", pushURL: "", activeModel: nil, reports: [], aggregates: aggregates, events: [], shadow: shadow)
    }

    /// Three devices, v1 deployed everywhere, then v2 in shadow with a 90 % agreement gate
    /// over 30 samples in one stage.
    func shadowRollout(_ harness: ServiceHarness) async throws -> (RolloutService, RolloutInfo, [DeviceRecord]) {
        var devices: [DeviceRecord] = []
        for name in ["a", "b", "c"] { devices.append(try await enroll(harness, name)) }
        let file = try Data(contentsOf: samples.appendingPathComponent("bnn-cnn.bnn"))
        for version in ["v1", "v2"] { _ = try await harness.service.uploadModel(file, name: "fashion", version: version, createdBy: "admin") }
        _ = try await harness.service.deploy(DeploymentRequest(model: "fashion", version: "v1", target: DeploymentTarget()), createdBy: "admin")
        let rollouts = RolloutService(service: harness.service, logger: .init(label: "test"))
        let info = try await rollouts.start(RolloutRequest(model: "fashion", version: "v2", target: DeploymentTarget(), stages: [100],
                                                           soakSeconds: 0, maxFailureFraction: 0.5, minDevices: 1, autoRollback: false,
                                                           shadow: ShadowGate(minAgreement: 0.9, minSamples: 30)),
                                            createdBy: "admin")
        return (rollouts, info, try await harness.store.devices())
    }

    func stored(_ harness: ServiceHarness, _ id: Int64) async throws -> RolloutRecord {
        try #require(try await harness.store.rollout(id: id))
    }

    func report(sequence: Int64, samples: Int, agreements: Int) -> ShadowReport {
        var report = ShadowReport(sequence: sequence, classes: 2)
        report.samples = samples
        report.agreements = agreements
        report.confusion = [agreements, 0, samples - agreements, 0]
        return report
    }

    @Test("shadow reports near Int.max or 2^40 in one heartbeat are refused; the controller and the rollout evaluation keep running")
    func overflowingShadowReports() async throws {
        let harness = try ServiceHarness()
        let (rollouts, info, devices) = try await shadowRollout(harness)
        // Beyond the format's bound for any count (2^40): the whole heartbeat is malformed.
        let huge = report(sequence: info.sequence, samples: Int.max - 1, agreements: Int.max - 1)
        let malformed = await #expect(throws: APIError.self) { _ = try await harness.service.heartbeat(device: devices[0], beat(shadow: [huge, huge]), bytes: 100) }
        #expect(malformed?.code == "invalid_shadow")
        // Within the format, far beyond what the device can have run: refused one by one.
        let large = report(sequence: info.sequence, samples: (1 << 40) - 1, agreements: (1 << 40) - 1)
        _ = try await harness.service.heartbeat(device: devices[0], beat(shadow: [large, large]), bytes: 100)
        #expect(try await harness.store.shadowStats(deploymentID: info.deploymentID).isEmpty, "nothing of it is stored")
        let events = try await harness.store.events(deviceID: devices[0].id, limit: 10)
        #expect(events.filter { $0.kind == "refused_shadow" }.count == 2)
        #expect(events.first?.message.contains("above the plausible") == true, "\(events.first?.message ?? "")")
        try await rollouts.tick()
        #expect(try await rollouts.info(try await stored(harness, info.id)).state == .running)
    }

    @Test("values already stored near Int.max (from an older controller) neither trap the evaluation nor the views")
    func storedExtremes() async throws {
        let harness = try ServiceHarness()
        let (rollouts, info, devices) = try await shadowRollout(harness)
        let huge = report(sequence: info.sequence, samples: Int.max - 1, agreements: Int.max - 1)
        // Straight into the store, past the ingestion checks, as an older build stored them.
        for device in devices {
            try await harness.store.addShadowReport(deviceID: device.id, report: huge)
            try await harness.store.addShadowReport(deviceID: device.id, report: huge)
        }
        var window = AggregateWindow(start: Date().addingTimeInterval(-60), end: Date(), model: "fashion", version: "v1", classes: 2)
        window.inferences = Int.max
        window.classCounts = [Int.max, Int.max]
        window.latencyHistogram[3] = Int.max
        for device in devices { try await harness.store.mergeAggregates(deviceID: device.id, windows: [window]) }
        try await rollouts.tick()
        let stage = try #require(try await rollouts.info(try await stored(harness, info.id)).stages[0].shadow)
        #expect(stage.samples == 30 && stage.cappedDevices == 3, "each device counts for its cap of 10 samples")
        let metrics = try await harness.service.metrics(since: .distantPast, model: nil)
        #expect(metrics.entries.first?.inferences == Int.max, "sums saturate")
        #expect(metrics.entries.first?.latencyP50Ms == AggregateWindow.latencyBucketsMs[3])
    }

    @Test("one device reporting many agreeing samples cannot promote a candidate the other devices disagree with")
    func oneDeviceCannotDecideAStage() async throws {
        let harness = try ServiceHarness()
        let (rollouts, info, devices) = try await shadowRollout(harness)
        // Plausible for a device enrolled a moment ago (life 300 s x 50,000/s), far above the others.
        _ = try await harness.service.heartbeat(device: devices[0], beat(shadow: [report(sequence: info.sequence, samples: 100_000, agreements: 100_000)]), bytes: 100)
        for device in devices[1...] {
            _ = try await harness.service.heartbeat(device: device, beat(shadow: [report(sequence: info.sequence, samples: 10, agreements: 2)]), bytes: 100)
        }
        let summary = try await rollouts.shadowSummary(try await stored(harness, info.id))
        // Uncapped: 100,004 agreements of 100,020 samples (99.98 %), a promotion.
        #expect(summary.samples == 30 && summary.agreements == 14 && summary.perDeviceCap == 10)
        try await rollouts.tick()
        let after = try await rollouts.info(try await stored(harness, info.id))
        #expect(after.state == .halted, "the stage's agreement is 14 of 30, below 90 %")
    }

    @Test("a shadow report resent after a lost reply (same release id) is added once; a new release is added")
    func shadowResendIsIdempotent() async throws {
        let harness = try ServiceHarness()
        let (_, info, devices) = try await shadowRollout(harness)
        var first = report(sequence: info.sequence, samples: 10, agreements: 7)
        first.releaseID = "r1"
        for _ in 0..<3 { _ = try await harness.service.heartbeat(device: devices[0], beat(shadow: [first]), bytes: 100) }
        var second = report(sequence: info.sequence, samples: 5, agreements: 5)
        second.releaseID = "r2"
        _ = try await harness.service.heartbeat(device: devices[0], beat(shadow: [second, first]), bytes: 100)
        let stored = try #require(try await harness.store.shadowStats(deploymentID: info.deploymentID).first?.report)
        #expect(stored.samples == 15 && stored.agreements == 12)
    }

    @Test("aggregate windows with impossible counts are refused one by one, the rest of the heartbeat is applied")
    func implausibleWindows() async throws {
        let harness = try ServiceHarness()
        let device = try await enroll(harness, "a")
        let now = Date()
        var honest = AggregateWindow(start: now.addingTimeInterval(-60), end: now, model: "m", version: "v", classes: 2)
        honest.record(predictedClass: 1, latencyMs: 2, confidence: 0.8)
        var flood = honest
        flood.start = now.addingTimeInterval(-120)
        flood.inferences = (1 << 40) - 1  // well formed, but 120 s at 50,000/s is 6,000,000
        var inconsistent = honest
        inconsistent.start = now.addingTimeInterval(-180)
        inconsistent.classCounts = [5, 5]  // ten classes counted for one inference
        var future = honest
        future.start = now.addingTimeInterval(-240)
        future.end = now.addingTimeInterval(86_400 * 400)
        _ = try await harness.service.heartbeat(device: device, beat(aggregates: [honest, flood, inconsistent, future]), bytes: 100)
        let stored = try await harness.store.metricWindows(since: .distantPast, model: nil)
        #expect(stored.count == 1 && stored.first?.inferences == 1)
        let reasons = try await harness.store.events(deviceID: device.id, limit: 10).filter { $0.kind == "refused_aggregate" }.map(\.message)
        #expect(reasons.count == 3)
        #expect(reasons.contains { $0.contains("above the plausible 6000000") }, "\(reasons)")
        #expect(reasons.contains { $0.contains("class counts add up to 10") }, "\(reasons)")
        #expect(reasons.contains { $0.contains("in the future") }, "\(reasons)")
        #expect(try await harness.store.device(id: device.id)?.lastSeen != nil)
    }

    @Test("many windows, each plausible alone, cannot add up to more than the device could have run")
    func implausibleTotal() async throws {
        let harness = try ServiceHarness()
        let device = try await enroll(harness, "a")
        let now = Date()
        // 1,000 windows of 299 s with 14,000,000 inferences each: each under its own bound
        // (299 s x 50,000/s), together 47 times what 300 s of life allow.
        let windows = (0..<1000).map { index -> AggregateWindow in
            var window = AggregateWindow(start: now.addingTimeInterval(-299 - Double(index)), end: now, model: "m", version: "v", classes: 1)
            window.inferences = 14_000_000
            return window
        }
        _ = try await harness.service.heartbeat(device: device, beat(aggregates: windows), bytes: 100)
        #expect(try await harness.store.metricWindows(since: .distantPast, model: nil).isEmpty)
        #expect(try await harness.store.events(deviceID: device.id, limit: 10).first?.message.contains("windows add up to") == true)
    }

    @Test("a device's labels are its token's; what it asks for is kept apart and never targeted")
    func labelsComeFromTheToken() async throws {
        let harness = try ServiceHarness()
        let device = try await enroll(harness, "a", tokenLabels: ["site": "berlin"], asking: ["ring": "canary", "site": "paris"])
        #expect(device.labels == ["site": "berlin"])
        #expect(device.proposedLabels == ["ring": "canary", "site": "paris"])
        let info = try await harness.service.deviceInfo(device)
        #expect(info.labels == ["site": "berlin"] && info.proposedLabels == ["ring": "canary", "site": "paris"])
        let refused = await #expect(throws: APIError.self) { _ = try await harness.service.targetDevices(DeploymentTarget(labels: ["ring": "canary"])) }
        #expect(refused?.code == "no_devices")
        #expect(try await harness.service.targetDevices(DeploymentTarget(labels: ["site": "berlin"])).map(\.id) == [device.id])
        // Too many proposals are refused with the reason, before the token is used up.
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        let flood = Dictionary(uniqueKeysWithValues: (0..<51).map { ("k\($0)", "v") })
        let refusedLabels = await #expect(throws: APIError.self) {
            _ = try await harness.service.enroll(EnrollRequest(token: token.token, name: "b", labels: flood, pushURL: "", agentVersion: "t"))
        }
        #expect(refusedLabels?.code == "invalid_labels")
        _ = try await harness.service.enroll(EnrollRequest(token: token.token, name: "b", labels: [:], pushURL: "", agentVersion: "t"))
    }

    @Test("push URLs are http(s) with a host and nothing the controller has no use for")
    func pushURLs() throws {
        for good in ["http://10.0.0.7:7070", "https://pi.lan/agent", "http://[fe80::1]:7070/", ""] {
            #expect(try FleetService.validatedPushURL(good) == good)
        }
        for bad in ["ftp://10.0.0.7/", "file:///etc/passwd", "gopher://x:70/", "http://10.0.0.7:7070/?next=http://169.254.169.254/",
                    "http://10.0.0.7/#frag", "http://user:pass@10.0.0.7/", "http:///path", "http://a b/", "http://x/\u{0}", "10.0.0.7:7070",
                    "http://" + String(repeating: "a", count: 600)] {
            #expect(throws: APIError.self, "\(bad.prefix(60))") { try FleetService.validatedPushURL(bad) }
            #expect((try? FleetService.validatedPushURL(bad)) == nil)
        }
        // The same check guards the heartbeat, which refuses before writing anything.
    }

    @Test("a device past its ingestion budget gets 429 with Retry-After, and nothing of that heartbeat is stored")
    func ingestionBudget() async throws {
        let clock = TestClock()
        var configuration = ControllerConfiguration(dataDirectory: FileManager.default.temporaryDirectory)
        configuration.deviceIngestBurst = 10
        configuration.deviceIngestPerMinute = 60
        let base = try ServiceHarness(now: { clock.now })
        let service = FleetService(store: base.store, blobs: base.service.blobs, signer: base.service.signer, fleetID: base.service.fleetID,
                                   configuration: configuration, clock: { clock.now })
        let token = try await service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        let enrolled = try await service.enroll(EnrollRequest(token: token.token, name: "a", labels: [:], pushURL: "", agentVersion: "t"))
        let device = try #require(try await base.store.device(id: enrolled.deviceID))
        let events = (0..<4).map { DeviceEvent(at: clock.now, kind: "k", message: "\($0)") }
        let heavy = HeartbeatRequest(agentVersion: "t", pushURL: "", activeModel: nil, reports: [], aggregates: [], events: events)
        _ = try await service.heartbeat(device: device, heavy, bytes: 10)  // 5 of 10
        _ = try await service.heartbeat(device: device, heavy, bytes: 10)  // 10 of 10
        let refused = await #expect(throws: APIError.self) { _ = try await service.heartbeat(device: device, heavy, bytes: 10) }
        #expect(refused?.status == .tooManyRequests && refused?.code == "device_rate_limited" && refused?.retryAfter == 5)
        #expect(try await base.store.events(deviceID: device.id, limit: 100).count == 8, "the refused heartbeat stored nothing")
        clock.advance(5)  // 5 items regained at 60 a minute
        _ = try await service.heartbeat(device: device, heavy, bytes: 10)
        #expect(try await base.store.events(deviceID: device.id, limit: 100).count == 12)
    }
}

@Suite("Audit of refused requests")
struct AuditRefusalLimiterTests {
    @Test("refusals from one address are audited up to the limit a minute, then counted and reported with the next entry")
    func limited() async {
        let limiter = AuditRefusalLimiter(perMinute: 3)
        let start = Date()
        var written = 0
        for index in 0..<10 where await limiter.admit("10.0.0.9", now: start.addingTimeInterval(Double(index))).write { written += 1 }
        #expect(written == 3)
        #expect(await limiter.admit("10.0.0.8", now: start).write, "another address has its own budget")
        let next = await limiter.admit("10.0.0.9", now: start.addingTimeInterval(61))
        #expect(next.write && next.suppressedBefore == 7)
    }
}
