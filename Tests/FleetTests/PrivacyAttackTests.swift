import BitModel
@testable import FleetAgent
import FleetKit
import Foundation
import Logging
import Testing

/// The differential privacy against an attacker on the network who can make sends fail:
/// the real AgentRuntime (simulated clock) behind an `InterceptingProxy` in front of a
/// real controller process. Every copy of every request the attacker sees is kept.
@Suite("Privacy under attack", .serialized)
struct PrivacyAttackTests {
    /// A controller with `privacy`, and an agent enrolled through the proxy, running a model.
    struct Setup {
        let fleet: TestFleet
        let proxy: InterceptingProxy
        let clock: SimulatedClock
        var configuration: AgentConfiguration
        var runtime: AgentRuntime
        let deviceID: String
        let logger: Logger

        init(privacy: PrivacySettings, epsilonBudget: Double? = nil, name: String) async throws {
            fleet = try TestFleet()
            try fleet.startController()
            _ = try await fleet.admin.json("PUT", "/api/v1/privacy", body: privacy, as: PrivacySettings.self)
            proxy = try InterceptingProxy(upstreamPort: fleet.controllerPort)
            clock = SimulatedClock(Date().addingTimeInterval(-3_600))
            configuration = AgentConfiguration(dataDirectory: fleet.agentDataDirectory(name), controllerURL: proxy.url,
                                               enrollToken: try await fleet.enrollmentToken(), name: name, aggregateWindow: 60)
            configuration.epsilonBudget = epsilonBudget
            let clock = clock
            configuration.clock = { clock.now }
            var logger = Logger(label: "privacy-attack-agent")
            logger.logLevel = .warning
            self.logger = logger
            runtime = try AgentRuntime(configuration: configuration, logger: logger)
            try await runtime.enrollIfNeeded()
            deviceID = try #require(await runtime.deviceID)
            let model = try await fleet.uploadModel(try sampleCNNVariant(name), name: name)
            _ = try await fleet.deploy(name, model.version, to: deviceID)
            try await runtime.heartbeat()  // installs the model and learns the privacy settings
            try #require(await runtime.status().active?.sha256 == model.sha256)
        }

        func shutdown() {
            proxy.stop()
            fleet.shutdown()
        }

        /// Runs `count` inferences and returns the predicted classes.
        func infer(_ count: Int) throws -> [Int] {
            try fashionImages(count: count).map { try runtime.infer(body: $0).topClass }
        }

        /// The heartbeats the proxy saw, decoded.
        func heartbeats() throws -> [(request: HeartbeatRequest, captured: InterceptingProxy.Captured)] {
            try proxy.requests.filter { $0.path == "/api/v1/heartbeat" }.map { (try FleetJSON.decoder.decode(HeartbeatRequest.self, from: $0.body), $0) }
        }
    }

    /// The `aggregates` array exactly as serialized in a captured body.
    static func aggregatesJSON(_ body: Data) throws -> Data {
        let object = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        return try JSONSerialization.data(withJSONObject: object["aggregates"] ?? [], options: [.sortedKeys])
    }

    @Test("the averaging attacker: every retry, also after a restart, carries the same noised counts; epsilon is charged once")
    func averagingAttacker() async throws {
        var setup = try await Setup(privacy: PrivacySettings(epsilon: 1), name: "avg")
        defer { setup.shutdown() }
        let classes = try setup.infer(30)
        setup.clock.advance(by: 120)  // the window closes
        let before = try setup.heartbeats().count
        let failures = 6
        setup.proxy.fail(next: failures, path: "/api/v1/heartbeat")
        for _ in 0..<4 { await #expect(throws: (any Error).self) { try await setup.runtime.heartbeat() } }
        // The device reboots in the middle of the attack: the noised copy comes back from disk.
        setup.runtime = try AgentRuntime(configuration: setup.configuration, logger: setup.logger)
        await setup.runtime.loadInstalledModel()
        for _ in 0..<2 { await #expect(throws: (any Error).self) { try await setup.runtime.heartbeat() } }
        #expect(setup.proxy.remainingFailures(path: "/api/v1/heartbeat") == 0)
        try await setup.runtime.heartbeat()  // gets through

        let copies = Array(try setup.heartbeats().dropFirst(before))
        #expect(copies.count == failures + 1)
        #expect(copies.prefix(failures).allSatisfy { $0.captured.dropped } && !copies.last!.captured.dropped)
        let first = try Self.aggregatesJSON(copies[0].captured.body)
        for copy in copies {
            #expect(try Self.aggregatesJSON(copy.captured.body) == first, "a retry carried different noised counts")
            #expect(copy.request.aggregates.count == 1)
            #expect(copy.request.epsilonSpent == 1, "one window released: epsilon 1, whatever the number of sends")
        }
        let released = try #require(copies[0].request.aggregates.first)
        #expect(released.privacy == "laplace epsilon=1.0")
        // What the attacker can average is one release: the noise is that of a single draw.
        var exact = [Int](repeating: 0, count: 10)
        for c in classes { exact[c] += 1 }
        let deviations = zip(released.classCounts, exact).map { $0 - $1 } + [released.inferences - 30]
        #expect(deviations.contains { $0 != 0 }, "noise was drawn")
        // |Laplace(4)| > 80 has probability e^-20 per count.
        #expect(deviations.allSatisfy { abs($0) <= 80 }, "\(deviations)")
        #expect(await setup.runtime.status().epsilonSpent == 1)
        #expect(setup.runtime.aggregates.pendingBatch == nil, "the acknowledged batch is forgotten")

        // The next window is a new release: charged once more, with fresh noise.
        _ = try setup.infer(5)
        setup.clock.advance(by: 120)
        try await setup.runtime.heartbeat()
        let last = try #require(try setup.heartbeats().last)
        #expect(last.request.epsilonSpent == 2 && last.request.aggregates.count == 1)
    }

    /// The statistics of the same attack over many windows, on the agent's real buffer with
    /// seeded noise: averaging k copies of a window gives an estimate whose error variance
    /// is one release's 2b^2 (plus 1/12 from rounding), not 2b^2 / k as fresh copies would.
    @Test("averaging retried copies leaves the variance of one release, 2b^2 (seeded)")
    func averagingVariance() throws {
        let seed = testSeed("BITFLEET_PRIVACY_SEED", test: "averaging variance")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("privacy-variance-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let files = try AgentFiles(directory)
        let buffer = AggregateBuffer(files: files, windowLength: 60, maxWindows: 10, random: SeededGenerator(seed: seed))
        let settings = PrivacySettings(epsilon: 1)
        let b = settings.laplaceScale!
        let windows = 2_000, copies = 5
        var errors: [Double] = []
        var start = Date(timeIntervalSince1970: 1_000_000)
        for w in 0..<windows {
            let count = w % 17
            for i in 0..<count {
                buffer.record(model: "m", version: "v", classes: 3, predictedClass: i % 3, latencyMs: 1, confidence: 0.5, now: start)
            }
            if count == 0 { buffer.record(model: "m", version: "v", classes: 3, predictedClass: nil, latencyMs: 0, confidence: 0, now: start) }
            start += 60
            var seen: [AggregateWindow] = []
            for _ in 0..<copies {
                let release = try buffer.release(now: start, settings: settings, budget: nil)
                seen.append(try #require(release.batch.windows.first))
            }
            #expect(Set(seen.map(\.inferences)).count == 1 && seen.allSatisfy { $0 == seen[0] })
            let average = Double(seen.map(\.inferences).reduce(0, +)) / Double(copies)
            errors.append(average - Double(count))
            buffer.acknowledge(try buffer.release(now: start, settings: settings, budget: nil).batch)
        }
        #expect(buffer.epsilonSpent == Double(windows), "epsilon charged once per window, not per copy")
        let mean = errors.reduce(0, +) / Double(windows)
        let variance = errors.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(windows - 1)
        let single = 2 * b * b + 1.0 / 12
        // The sample variance of Laplace noise has relative sd sqrt(5 / n) = 5 % at n = 2000;
        // 4 of those is 20 %. Fresh noise per copy would give single / 5, 80 % below.
        print("averaging variance: \(variance), one release \(single), fresh copies would give \(single / Double(copies))")
        #expect(abs(variance / single - 1) < 0.2, "variance \(variance), expected \(single)")
    }

    @Test("an epsilon budget: releases stop once it is spent, inference goes on, and the device says so")
    func budget() async throws {
        let setup = try await Setup(privacy: PrivacySettings(epsilon: 1), epsilonBudget: 2.5, name: "budget")
        defer { setup.shutdown() }
        for _ in 0..<3 {
            _ = try setup.infer(4)
            setup.clock.advance(by: 60)
            try await setup.runtime.heartbeat()
        }
        let sent = try setup.heartbeats()
        let released = sent.flatMap(\.request.aggregates)
        #expect(released.count == 2, "budget 2.5 at epsilon 1 per window: two windows")
        let last = try #require(sent.last?.request)
        #expect(last.aggregates.isEmpty && last.epsilonSpent == 2 && last.epsilonBudget == 2.5)
        #expect(last.releasesWithheld?.contains("epsilon budget 2.5 spent") == true, "\(String(describing: last.releasesWithheld))")
        let status = await setup.runtime.status()
        #expect(status.epsilonSpent == 2 && status.epsilonBudget == 2.5 && status.releasesWithheld?.contains("spent") == true)
        #expect(status.bufferedWindows == 1, "the unreleased window stays on the device")
        // Inference goes on.
        #expect(try setup.infer(2).count == 2)
        // The controller shows it in the device's ledger (API and fleetctl device show).
        let ledger = try await setup.fleet.admin.json("GET", "/api/v1/devices/\(setup.deviceID)/uploads", as: [UploadRecord].self)
        #expect(ledger.first?.fields.contains { $0.hasPrefix("counts withheld: epsilon budget 2.5 spent") } == true, "\(ledger.first?.fields ?? [])")
        let shown = try setup.fleet.fleetctl(["device", "show", setup.deviceID])
        #expect(shown.contains("counts withheld: epsilon budget 2.5 spent"), "\(shown)")
    }

    @Test("shadow counts are noised once and reach the rollout's gate, which copes with noisy counts")
    func shadowNoise() async throws {
        let setup = try await Setup(privacy: PrivacySettings(epsilon: 0.5), name: "shadow")
        defer { setup.shutdown() }
        let candidate = try await setup.fleet.uploadModel(try sampleCNNVariant("shadow-candidate"), name: "shadow")
        let rollout = try await setup.fleet.admin.json("POST", "/api/v1/rollouts", body: RolloutRequest(
            model: "shadow", version: candidate.version, target: DeploymentTarget(devices: [setup.deviceID]), stages: [100], soakSeconds: 0,
            maxFailureFraction: 0, minDevices: 1, autoRollback: false, shadow: ShadowGate(minAgreement: 0.5, minSamples: 1_000_000)),
            as: RolloutInfo.self)
        try await setup.runtime.heartbeat()  // installs the shadow model
        #expect(await setup.runtime.status().shadow?.sha256 == candidate.sha256)
        _ = try setup.infer(40)
        setup.clock.advance(by: 120)
        setup.proxy.fail(next: 2, path: "/api/v1/heartbeat")
        for _ in 0..<2 { await #expect(throws: (any Error).self) { try await setup.runtime.heartbeat() } }
        try await setup.runtime.heartbeat()
        let copies = try setup.heartbeats().suffix(3).map(\.request)
        let report = try #require(copies.last?.shadow.first)
        #expect(copies.allSatisfy { $0.shadow == [report] }, "retries resend the same noised shadow report")
        #expect(report.privacy == "laplace epsilon=0.5")
        // 40 samples, all agreeing (the same network); noise of scale 5 / 0.5 = 10.
        let deviations = [report.samples - 40, report.agreements - 40]
        #expect(deviations.allSatisfy { abs($0) <= 200 }, "|Laplace(10)| > 200 has probability e^-20: \(deviations)")
        #expect(report.confusion.count == 100 && report.confusion.contains { $0 != 0 && $0 != 40 }, "every cell is noised")
        // Window and shadow report: two releases of epsilon 0.5.
        #expect(copies.last?.epsilonSpent == 1)
        let info = try await setup.fleet.admin.json("GET", "/api/v1/rollouts/\(rollout.id)", as: RolloutInfo.self)
        let summary = try #require(info.stages.first?.shadow)
        // The gate clamps a device's noised counts (agreements within 0...samples) before it
        // weighs them (ShadowGateWeighting); one device, under its cap.
        let samples = max(report.samples, 0)
        #expect(summary.samples == samples && summary.agreements == min(max(report.agreements, 0), samples), "\(summary) from \(report)")
        if let agreement = summary.agreement { #expect((0...1).contains(agreement)) }
    }

    @Test("the agent's real bytes on the wire: only allow-listed fields, no input as bytes, numbers or base64")
    func wire() async throws {
        let setup = try await Setup(privacy: PrivacySettings(minCount: 2, epsilon: 1), name: "wire")
        defer { setup.shutdown() }
        let images = try fashionImages(count: 12)
        for image in images { _ = try setup.runtime.infer(body: image) }
        _ = try? setup.runtime.infer(body: Data([1, 2, 3]))  // an error, counted
        setup.clock.advance(by: 120)
        try await setup.runtime.heartbeat()
        let requests = setup.proxy.requests
        #expect(Set(requests.map(\.path)).isSuperset(of: ["/api/v1/enroll", "/api/v1/heartbeat", "/api/v1/reports"]), "\(Set(requests.map(\.path)))")
        for request in requests {
            let problems = WireAudit.problems(request, images: images)
            #expect(problems.isEmpty, "\(problems)")
        }
        // The allow-list is exercised, not vacuous: the heartbeats carried windows.
        let heartbeatKeys = try requests.filter { $0.path == "/api/v1/heartbeat" }.reduce(into: Set<String>()) {
            $0.formUnion(WireAudit.keyPaths(try JSONSerialization.jsonObject(with: $1.body)))
        }
        #expect(heartbeatKeys.isSuperset(of: [".aggregates[].classCounts", ".aggregates[].latencyHistogram", ".aggregates[].suppressedClasses", ".epsilonSpent"]))
        // The detectors find what they look for.
        let pixels = [UInt8](images[3].suffix(784))
        let leak = InterceptingProxy.Captured(method: "POST", path: "/api/v1/heartbeat", head: "POST /api/v1/heartbeat HTTP/1.1", body: try JSONSerialization.data(
            withJSONObject: ["agentVersion": "1", "pushURL": "", "events": [["kind": "x", "message": Data(pixels[100..<400]).base64EncodedString()]],
                             "aggregates": [["classCounts": pixels[300..<500].map(Int.init)]]]), dropped: false)
        let found = WireAudit.problems(leak, images: images)
        #expect(found.contains { $0.contains("JSON numbers") } && found.contains { $0.contains("base64") }, "\(found)")
        let scaled = InterceptingProxy.Captured(method: "POST", path: "/api/v1/reports", head: "", body: try JSONSerialization.data(
            withJSONObject: [["sequence": 1, "state": "active", "reason": "x", "scores": pixels[350..<420].map { Double($0) / 255 }]]), dropped: false)
        #expect(WireAudit.problems(scaled, images: images).contains { $0.contains("allow-list") || $0.contains("JSON numbers") })
    }
}
