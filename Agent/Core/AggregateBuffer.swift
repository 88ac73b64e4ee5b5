import FleetKit
import Foundation

/// Per-window inference aggregates, persisted, bounded while offline by merging the oldest
/// windows (totals are never dropped). Only closed windows leave the device, so a window
/// is sent exactly once and the controller can simply add what it receives.
final class AggregateBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private var windows: [AggregateWindow]
    private let windowLength: Double
    private let maxWindows: Int
    private let files: AgentFiles
    private var dirty = false
    /// Shadow-evaluation counts not yet sent, by shadow deployment sequence.
    private var shadow: [Int64: ShadowReport]

    init(files: AgentFiles, windowLength: Double, maxWindows: Int) {
        self.files = files
        self.windowLength = windowLength
        self.maxWindows = max(2, maxWindows)
        windows = (try? files.load([AggregateWindow].self, from: files.aggregatesURL)) ?? []
        shadow = Dictionary(((try? files.load([ShadowReport].self, from: files.shadowStatsURL)) ?? []).map { ($0.sequence, $0) },
                            uniquingKeysWith: { first, _ in first })
    }

    func recordShadow(sequence: Int64, classes: Int, activeClass: Int, shadowClass: Int, confidenceDelta: Double, latencyDeltaMs: Double) {
        lock.lock()
        defer { lock.unlock() }
        var report = shadow[sequence] ?? ShadowReport(sequence: sequence, classes: classes)
        report.record(activeClass: activeClass, shadowClass: shadowClass, confidenceDelta: confidenceDelta, latencyDeltaMs: latencyDeltaMs)
        shadow[sequence] = report
        dirty = true
    }

    var pendingShadow: [ShadowReport] {
        lock.lock()
        defer { lock.unlock() }
        return Array(shadow.values)
    }

    /// Subtracts what was sent (counts may have grown since).
    func acknowledgeShadow(_ sent: [ShadowReport]) {
        lock.lock()
        defer { lock.unlock() }
        for report in sent {
            guard var current = shadow[report.sequence] else { continue }
            if current.samples == report.samples {
                shadow[report.sequence] = nil
            } else {
                current.samples -= report.samples
                current.agreements -= report.agreements
                for i in current.confusion.indices where i < report.confusion.count { current.confusion[i] -= report.confusion[i] }
                current.confidenceDeltaSum -= report.confidenceDeltaSum
                current.latencyDeltaSumMs -= report.latencyDeltaSumMs
                shadow[report.sequence] = current
            }
        }
        dirty = true
    }

    func record(model: String, version: String, classes: Int, predictedClass: Int?, latencyMs: Double, confidence: Float, now: Date) {
        lock.lock()
        defer { lock.unlock() }
        let start = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / windowLength).rounded(.down) * windowLength)
        var index = windows.lastIndex { $0.start == start && $0.model == model && $0.version == version }
        if index == nil {
            windows.append(AggregateWindow(start: start, end: start.addingTimeInterval(windowLength), model: model, version: version, classes: classes))
            index = windows.count - 1
        }
        if let predictedClass {
            windows[index!].record(predictedClass: predictedClass, latencyMs: latencyMs, confidence: confidence)
        } else {
            windows[index!].errors += 1
        }
        dirty = true
        compact()
    }

    /// Merges the two oldest windows of the same model/version until within the bound.
    private func compact() {
        while windows.count > maxWindows {
            windows.sort { $0.start < $1.start }
            guard let first = windows.indices.first(where: { i in windows[(i + 1)...].contains { $0.key == windows[i].key } }),
                  let second = windows[(first + 1)...].firstIndex(where: { $0.key == windows[first].key }) else { return }
            windows[first].merge(windows[second])
            windows.remove(at: second)
        }
    }

    /// Closed windows, to send.
    func closedWindows(now: Date) -> [AggregateWindow] {
        lock.lock()
        defer { lock.unlock() }
        return windows.filter { $0.end <= now }
    }

    /// Forgets windows the controller acknowledged.
    func acknowledge(_ sent: [AggregateWindow]) {
        lock.lock()
        defer { lock.unlock() }
        windows.removeAll { window in sent.contains { $0.start == window.start && $0.key == window.key && $0.inferences == window.inferences } }
        dirty = true
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return windows.count
    }

    /// All buffered windows (for status and tests).
    var snapshot: [AggregateWindow] {
        lock.lock()
        defer { lock.unlock() }
        return windows
    }

    func persist() throws {
        lock.lock()
        let copy = windows
        let shadowCopy = Array(shadow.values)
        let needed = dirty
        dirty = false
        lock.unlock()
        if needed {
            try files.save(copy, to: files.aggregatesURL)
            try files.save(shadowCopy, to: files.shadowStatsURL)
        }
    }
}
