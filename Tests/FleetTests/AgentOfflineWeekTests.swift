import BitModel
@testable import FleetAgent
import FleetKit
import Foundation
import Logging
import Testing

/// A clock a test moves by hand; the agent reads it for every timestamp.
final class SimulatedClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current: Date
    init(_ start: Date) { current = start }
    var now: Date { lock.lock(); defer { lock.unlock() }; return current }
    func advance(by seconds: TimeInterval) { lock.lock(); current += seconds; lock.unlock() }
}

/// An agent offline for a simulated week: the real AgentRuntime and AggregateBuffer, driven
/// by an injected clock, against a real controller process that is stopped for the week
/// and started again on the same port.
@Suite("Agent offline for a week", .serialized)
struct AgentOfflineWeekTests {
    @Test("a week offline: inference continues, the buffer stays bounded and persisted, totals arrive exactly")
    func offlineWeek() async throws {
        let started = Date()
        var random = SeededGenerator(seed: testSeed("BITFLEET_OFFLINE_SEED", test: "agent offline week"))
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        let model = try await fleet.uploadModel(try sampleCNNVariant("offline-week"), name: "week")
        let week: TimeInterval = 7 * 86_400
        // The week ends an hour before the controller's real now, so every window is in
        // the past for it and inside the metrics query below.
        let clock = SimulatedClock(Date().addingTimeInterval(-week - 3_600))
        let maxWindows = 48
        var configuration = AgentConfiguration(dataDirectory: fleet.agentDataDirectory("week"), controllerURL: fleet.controllerURL,
                                               enrollToken: try await fleet.enrollmentToken(), name: "week", aggregateWindow: 60,
                                               maxBufferedWindows: maxWindows)
        configuration.clock = { clock.now }
        var logger = Logger(label: "offline-week-agent")
        logger.logLevel = .warning
        var runtime = try AgentRuntime(configuration: configuration, logger: logger)
        try await runtime.enrollIfNeeded()
        let deviceID = try #require(await runtime.deviceID)
        _ = try await fleet.deploy("week", model.version, to: deviceID)
        try await runtime.heartbeat()  // receives the desired manifest and installs it
        #expect(await runtime.status().active?.sha256 == model.sha256)

        // Offline: the controller is gone for the week.
        let port = fleet.controllerPort
        fleet.controller!.stop()
        let images = try fashionImages(count: 64)
        var expectedInferences = 0
        var expectedErrors = 0
        var expectedClasses = [Int](repeating: 0, count: 10)
        var largestBuffer = 0
        var restarted = false
        var failedHeartbeats = 0
        let end = clock.now.addingTimeInterval(week)
        var step = 0
        while clock.now < end {
            // Bursty traffic, about 3,000 requests in the week: about one a minute while
            // busy, and 2 % of the time a quiet spell of one to three hours.
            let gap = Double.random(in: 0...1, using: &random) < 0.02 ? Double.random(in: 3_600...10_800, using: &random)
                : Double.random(in: 0...120, using: &random)
            clock.advance(by: gap)
            step += 1
            if Int.random(in: 0..<50, using: &random) == 0 {
                // A malformed input: counted as an error in the aggregates.
                #expect(throws: (any Error).self) { _ = try runtime.infer(body: Data([1, 2, 3])) }
                expectedErrors += 1
            } else {
                let result = try runtime.infer(body: images[step % images.count])
                expectedInferences += 1
                expectedClasses[result.topClass] += 1
            }
            let buffered = await runtime.status().bufferedWindows
            largestBuffer = max(largestBuffer, buffered)
            #expect(buffered <= maxWindows, "the buffer holds \(buffered) windows, bound \(maxWindows)")
            if step % 250 == 0 {
                // What the agent's loop does: try the controller (offline), persist.
                do { try await runtime.heartbeat() } catch { failedHeartbeats += 1 }
                await runtime.persistAggregates()
                let onDisk = try FleetJSON.decoder.decode(AggregateBuffer.Stored.self, from: Data(contentsOf:
                    configuration.dataDirectory.appendingPathComponent("aggregates.json")))
                #expect(onDisk.windows.count + (onDisk.released?.windows.count ?? 0) <= maxWindows)
            }
            if !restarted && clock.now > end.addingTimeInterval(-week / 2) {
                // The device reboots mid-week: buffered windows come back from disk.
                await runtime.persistAggregates()
                let before = runtime.aggregates.snapshot
                runtime = try AgentRuntime(configuration: configuration, logger: logger)
                await runtime.loadInstalledModel()
                #expect(runtime.aggregates.snapshot == before, "the buffer survives a restart")
                restarted = true
            }
        }
        #expect(restarted && failedHeartbeats > 0)
        // Close the last window, then compare the agent's own totals with what was served.
        clock.advance(by: 120)
        let buffered = runtime.aggregates.snapshot
        let agentTotals = buffered.reduce(into: (inferences: 0, errors: 0, classes: [Int](repeating: 0, count: 10))) { totals, window in
            totals.inferences += window.inferences
            totals.errors += window.errors
            for (i, count) in window.classCounts.enumerated() { totals.classes[i] += count }
        }
        #expect(agentTotals.inferences == expectedInferences && agentTotals.errors == expectedErrors && agentTotals.classes == expectedClasses)
        #expect(buffered.contains { $0.end.timeIntervalSince($0.start) > 60 }, "old windows were merged, not dropped")

        // Back online: every window is delivered and the controller's totals equal the agent's.
        try fleet.startController(port: port)
        try await eventually("the agent delivers its buffered windows", timeout: 60) {
            try await runtime.heartbeat()
            return await runtime.status().bufferedWindows == 0
        }
        let metrics = try await fleet.admin.json("GET", "/api/v1/metrics?since=\(Int(week) + 86_400)&model=week", as: MetricsSummary.self)
        let entry = try #require(metrics.entries.first { $0.version == model.version })
        #expect(entry.inferences == expectedInferences, "controller \(entry.inferences), agent \(expectedInferences)")
        #expect(entry.errors == expectedErrors, "controller \(entry.errors), agent \(expectedErrors)")
        #expect(entry.classCounts == expectedClasses, "controller \(entry.classCounts), agent \(expectedClasses)")
        #expect(entry.windows == buffered.count)
        print("agent offline week: \(expectedInferences) inferences and \(expectedErrors) errors over 7 simulated days, "
              + "buffer at most \(largestBuffer) of \(maxWindows) windows, \(buffered.count) merged windows delivered, "
              + "totals equal on the controller, in \(Int(Date().timeIntervalSince(started))) s")
    }
}
