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

    init(files: AgentFiles, windowLength: Double, maxWindows: Int) {
        self.files = files
        self.windowLength = windowLength
        self.maxWindows = max(2, maxWindows)
        windows = (try? files.load([AggregateWindow].self, from: files.aggregatesURL)) ?? []
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
        let needed = dirty
        dirty = false
        lock.unlock()
        if needed { try files.save(copy, to: files.aggregatesURL) }
    }
}
