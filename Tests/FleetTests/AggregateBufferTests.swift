import BitModel
@testable import FleetAgent
import FleetKit
import Foundation
import Testing

/// The agent's aggregate buffer on its own: the bound holds whatever the windows are, and
/// a release is drawn once and survives a restart.
@Suite("Aggregate buffer")
struct AggregateBufferTests {
    static func directory() throws -> (AgentFiles, URL) {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("aggregate-buffer-\(UUID().uuidString)")
        return (try AgentFiles(url), url)
    }

    @Test("never more than --max-buffered-windows, even when no two windows share a model and version; totals kept")
    func boundAcrossVersions() throws {
        let (files, url) = try Self.directory()
        defer { try? FileManager.default.removeItem(at: url) }
        let buffer = AggregateBuffer(files: files, windowLength: 60, maxWindows: 4)
        var now = Date(timeIntervalSince1970: 6_000)
        var classes = [Int](repeating: 0, count: 3)
        for step in 0..<30 {
            // Every window its own version (a new deployment each minute), and two models.
            let model = step % 2 == 0 ? "a" : "b"
            for i in 0...(step % 3) {
                buffer.record(model: model, version: "v\(step)", classes: 3, predictedClass: i, latencyMs: 1, confidence: 0.5, now: now)
                classes[i] += 1
            }
            #expect(buffer.count <= 4, "\(buffer.count) windows buffered at step \(step), bound 4")
            now += 60
        }
        let windows = buffer.snapshot
        #expect(windows.reduce(0) { $0 + $1.inferences } == classes.reduce(0, +))
        #expect(windows.reduce(into: [0, 0, 0]) { sum, w in for (i, c) in w.classCounts.enumerated() { sum[i] += c } } == classes)
        #expect(windows.contains { $0.version == AggregateBuffer.older }, "old windows of different versions merged into 'older'")
        #expect(Set(windows.map { "\($0.key)@\($0.start)" }).count == windows.count, "no two windows share model, version and start")

        // A pending release counts toward the bound too.
        let release = try buffer.release(now: now, settings: PrivacySettings(), budget: nil)
        #expect(!release.batch.windows.isEmpty && release.batch.windows.count <= 2, "a batch takes at most half the bound")
        for step in 30..<40 {
            buffer.record(model: "c", version: "v\(step)", classes: 3, predictedClass: 0, latencyMs: 1, confidence: 0.5, now: now)
            #expect(buffer.count <= 4, "\(buffer.count) windows with a pending batch, bound 4")
            now += 60
        }
    }

    @Test("a release is drawn once: the same noised batch after a restart, charged once")
    func releaseSurvivesRestart() throws {
        let (files, url) = try Self.directory()
        defer { try? FileManager.default.removeItem(at: url) }
        let settings = PrivacySettings(epsilon: 0.5)
        let buffer = AggregateBuffer(files: files, windowLength: 60, maxWindows: 10, random: SeededGenerator(seed: 11))
        let start = Date(timeIntervalSince1970: 60_000)
        for i in 0..<25 { buffer.record(model: "m", version: "v", classes: 4, predictedClass: i % 4, latencyMs: 2, confidence: 0.9, now: start) }
        buffer.recordShadow(sequence: 3, classes: 4, activeClass: 1, shadowClass: 1, confidenceDelta: 0.1, latencyDeltaMs: 0.5)
        let first = try buffer.release(now: start + 120, settings: settings, budget: nil)
        #expect(first.batch.windows.count == 1 && first.batch.shadow.count == 1 && first.epsilonSpent == 1)
        // Another agent process on the same files (a restart), with other settings and other randomness.
        let restarted = AggregateBuffer(files: files, windowLength: 60, maxWindows: 10, random: SeededGenerator(seed: 99))
        let again = try restarted.release(now: start + 180, settings: PrivacySettings(epsilon: 5), budget: nil)
        #expect(again.batch == first.batch && again.epsilonSpent == 1)
        restarted.acknowledge(again.batch)
        #expect(restarted.pendingBatch == nil && restarted.count == 0)
        let nothing = try restarted.release(now: start + 240, settings: settings, budget: nil)
        #expect(nothing.batch.windows.isEmpty && nothing.epsilonSpent == 1)
    }

    @Test("an older agent's files (a bare array of windows, shadow.json) are read, and the epsilon it spent carries over")
    func legacyFiles() throws {
        let (files, url) = try Self.directory()
        defer { try? FileManager.default.removeItem(at: url) }
        var window = AggregateWindow(start: Date(timeIntervalSince1970: 600), end: Date(timeIntervalSince1970: 660), model: "m", version: "v", classes: 2)
        window.record(predictedClass: 1, latencyMs: 1, confidence: 0.5)
        var shadow = ShadowReport(sequence: 2, classes: 2)
        shadow.record(activeClass: 0, shadowClass: 1, confidenceDelta: 0, latencyDeltaMs: 0)
        try files.save([window], to: files.aggregatesURL)
        try files.save([shadow], to: files.shadowStatsURL)
        let buffer = AggregateBuffer(files: files, windowLength: 60, maxWindows: 10, legacyEpsilonSpent: 3)
        #expect(buffer.snapshot == [window] && buffer.epsilonSpent == 3)
        let release = try buffer.release(now: Date(timeIntervalSince1970: 700), settings: PrivacySettings(), budget: nil)
        #expect(release.batch.windows == [window] && release.batch.shadow == [shadow])
        #expect(!FileManager.default.fileExists(atPath: files.shadowStatsURL.path), "shadow.json now lives in aggregates.json")
    }
}
