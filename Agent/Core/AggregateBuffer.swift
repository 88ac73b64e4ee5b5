import FleetKit
import Foundation

/// Per-window inference aggregates and shadow-evaluation counts, persisted, bounded while
/// offline by merging windows (totals are never dropped), and released to the controller
/// in batches (docs/PRIVACY.md, "Once per window"):
/// - raw counts accumulate and merge freely: nothing about them has left the device;
/// - a release draws the privacy noise once, charges its epsilon, and moves the noised
///   copies into the pending batch; the batch and the charge are written in one file
///   before a byte is sent, so every retry, and every retry after a restart, resends the
///   same noised counts instead of fresh noise an attacker could average away;
/// - while a batch is pending, nothing new is released (raw windows keep merging instead,
///   which costs no budget); the controller's acknowledgement clears it.
final class AggregateBuffer: @unchecked Sendable {
    /// Everything in one file, so a release and its charge are written atomically.
    struct Stored: Codable, Equatable {
        /// Raw windows not yet released, oldest first.
        var windows: [AggregateWindow] = []
        /// Raw shadow-evaluation counts not yet released, by shadow deployment sequence.
        var shadow: [ShadowReport] = []
        /// Released (noised, suppressed) counts awaiting the controller's acknowledgement.
        var released: Batch?
        /// Epsilon charged so far: every noised window and shadow report once, when drawn.
        var epsilonSpent: Double = 0
    }

    struct Batch: Codable, Equatable, Sendable {
        var windows: [AggregateWindow]
        var shadow: [ShadowReport]
    }

    /// What a heartbeat sends, and why the device holds counts back if it does.
    struct Release: Sendable {
        var batch: Batch
        var epsilonSpent: Double
        var withheld: String?
    }

    private let lock = NSLock()
    /// Serializes file writes, so an older snapshot never lands after a newer one.
    private let writeLock = NSLock()
    private var stored: Stored
    private let windowLength: Double
    private let maxWindows: Int
    private let files: AgentFiles
    private var dirty = false
    private var withheld: String?
    /// The noise source; tests pass a seeded one.
    private var random: AnyRandom

    /// `legacyEpsilonSpent`: what a state file of an older agent recorded as spent.
    init(files: AgentFiles, windowLength: Double, maxWindows: Int, legacyEpsilonSpent: Double = 0,
         random: any RandomNumberGenerator = SystemRandomNumberGenerator()) {
        self.files = files
        self.random = AnyRandom(random)
        self.windowLength = windowLength
        self.maxWindows = max(2, maxWindows)
        if let current = try? files.load(Stored.self, from: files.aggregatesURL) {
            stored = current
        } else {
            // An older agent's files: a bare array of windows and shadow.json.
            stored = Stored(windows: (try? files.load([AggregateWindow].self, from: files.aggregatesURL)) ?? [],
                            shadow: (try? files.load([ShadowReport].self, from: files.shadowStatsURL)) ?? [])
            dirty = true
        }
        stored.epsilonSpent = max(stored.epsilonSpent, legacyEpsilonSpent)
    }

    func recordShadow(sequence: Int64, classes: Int, activeClass: Int, shadowClass: Int, confidenceDelta: Double, latencyDeltaMs: Double) {
        lock.lock()
        defer { lock.unlock() }
        if !stored.shadow.contains(where: { $0.sequence == sequence }) {
            stored.shadow.append(ShadowReport(sequence: sequence, classes: classes))
        }
        let index = stored.shadow.firstIndex { $0.sequence == sequence }!
        stored.shadow[index].record(activeClass: activeClass, shadowClass: shadowClass, confidenceDelta: confidenceDelta, latencyDeltaMs: latencyDeltaMs)
        dirty = true
    }

    func record(model: String, version: String, classes: Int, predictedClass: Int?, latencyMs: Double, confidence: Float, now: Date) {
        lock.lock()
        defer { lock.unlock() }
        let start = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / windowLength).rounded(.down) * windowLength)
        var index = stored.windows.lastIndex { $0.start == start && $0.model == model && $0.version == version }
        if index == nil {
            stored.windows.append(AggregateWindow(start: start, end: start.addingTimeInterval(windowLength), model: model, version: version, classes: classes))
            index = stored.windows.count - 1
        }
        if let predictedClass {
            stored.windows[index!].record(predictedClass: predictedClass, latencyMs: latencyMs, confidence: confidence)
        } else {
            stored.windows[index!].errors += 1
        }
        dirty = true
        compact()
    }

    /// Raw windows may take what the pending batch leaves of the bound.
    private var rawBound: Int { max(1, maxWindows - (stored.released?.windows.count ?? 0)) }

    /// Merges windows until raw and released together are within `maxWindows`: first the
    /// two oldest of one model and version; when every window has its own, the two oldest
    /// of all, into one labelled "older" (a version, or also a model, that no longer tells
    /// them apart). Totals are always kept.
    private func compact() {
        while stored.windows.count > rawBound {
            stored.windows.sort { $0.start < $1.start }
            let windows = stored.windows
            if let first = windows.indices.first(where: { i in windows[(i + 1)...].contains { $0.key == windows[i].key } }),
               let second = windows[(first + 1)...].firstIndex(where: { $0.key == windows[first].key }) {
                stored.windows[first].merge(windows[second])
                stored.windows.remove(at: second)
                continue
            }
            var merged = windows[0]
            merged.merge(windows[1])
            if windows[0].model != windows[1].model { merged.model = Self.older }
            merged.version = Self.older
            stored.windows.removeFirst(2)
            // A window with the new label may exist already: they become one.
            if let same = stored.windows.firstIndex(where: { $0.key == merged.key }) {
                stored.windows[same].merge(merged)
            } else {
                stored.windows.insert(merged, at: 0)
            }
        }
    }

    /// Label of windows merged across models or versions to keep the bound.
    static let older = "older"

    /// The counts to send now: the pending batch if there is one (unchanged, whatever the
    /// settings are now), else a new release of every closed raw window and every shadow
    /// report with samples, noised and suppressed by `settings`, each charged its epsilon,
    /// as far as `budget` allows. Written to disk before it returns; if that write fails
    /// the release is undone and nothing new is sent.
    func release(now: Date, settings: PrivacySettings, budget: Double?) throws -> Release {
        writeLock.lock()
        defer { writeLock.unlock() }
        lock.lock()
        if let pending = stored.released {
            defer { lock.unlock() }
            return Release(batch: pending, epsilonSpent: stored.epsilonSpent, withheld: withheld)
        }
        let before = stored
        let cost = settings.epsilon ?? 0
        var reason: String?
        if budget != nil && settings.epsilon == nil {
            // Exact counts cost an unbounded epsilon: a device with a budget never sends them.
            reason = "this device has an epsilon budget and the fleet adds no noise: exact counts are never released"
        }
        var mechanism = PrivacyMechanism(settings: settings, random: random)
        defer { random = mechanism.random }
        var spent = stored.epsilonSpent
        /// Whether one more release fits the budget; if not, says so (also with nothing to send).
        func affordable() -> Bool {
            guard reason == nil else { return false }
            guard let budget, spent + cost > budget * (1 + 1e-9) else { return true }
            reason = "epsilon budget \(budget) spent (\(spent)): counts are kept on the device, not released"
            return false
        }
        _ = affordable()
        var batch = Batch(windows: [], shadow: [])
        let closed = stored.windows.filter { $0.end <= now }.sorted { $0.start < $1.start }
        var releasedKeys: [(Date, String)] = []
        for window in closed.prefix(max(1, maxWindows / 2)) {
            guard affordable() else { break }
            batch.windows.append(mechanism.protect(window))
            releasedKeys.append((window.start, window.key))
            spent += cost
        }
        var releasedShadow: Set<Int64> = []
        for report in stored.shadow.sorted(by: { $0.sequence < $1.sequence }) where report.samples > 0 {
            guard affordable() else { break }
            var released = mechanism.protect(report)
            released.releaseID = Secrets.randomToken(bytes: 12)
            batch.shadow.append(released)
            releasedShadow.insert(report.sequence)
            spent += cost
        }
        withheld = reason
        guard !batch.windows.isEmpty || !batch.shadow.isEmpty else {
            lock.unlock()
            return Release(batch: batch, epsilonSpent: spent, withheld: reason)
        }
        stored.windows.removeAll { window in releasedKeys.contains { $0.0 == window.start && $0.1 == window.key } }
        stored.shadow.removeAll { releasedShadow.contains($0.sequence) }
        stored.released = batch
        stored.epsilonSpent = spent
        let snapshot = stored
        dirty = false
        lock.unlock()
        do {
            try write(snapshot)
        } catch {
            // Undo: the raw counts go back, merged with whatever was recorded meanwhile.
            lock.lock()
            for window in before.windows where releasedKeys.contains(where: { $0.0 == window.start && $0.1 == window.key }) {
                stored.windows.append(window)
            }
            for report in before.shadow where releasedShadow.contains(report.sequence) {
                if let index = stored.shadow.firstIndex(where: { $0.sequence == report.sequence }) {
                    stored.shadow[index].merge(report)
                } else {
                    stored.shadow.append(report)
                }
            }
            stored.released = nil
            stored.epsilonSpent = before.epsilonSpent
            compact()
            dirty = true
            lock.unlock()
            throw error
        }
        return Release(batch: batch, epsilonSpent: spent, withheld: reason)
    }

    /// The controller acknowledged `batch`: it is forgotten, and the next heartbeat releases anew.
    func acknowledge(_ batch: Batch) {
        lock.lock()
        defer { lock.unlock() }
        if stored.released == batch {
            stored.released = nil
            dirty = true
        }
    }

    /// Windows buffered, raw and released (for status and tests).
    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return stored.windows.count + (stored.released?.windows.count ?? 0)
    }

    /// All buffered windows: the pending batch's (noised) first, then the raw ones.
    var snapshot: [AggregateWindow] {
        lock.lock()
        defer { lock.unlock() }
        return (stored.released?.windows ?? []) + stored.windows
    }

    /// The pending batch, if any (for tests).
    var pendingBatch: Batch? {
        lock.lock()
        defer { lock.unlock() }
        return stored.released
    }

    var epsilonSpent: Double {
        lock.lock()
        defer { lock.unlock() }
        return stored.epsilonSpent
    }

    /// Why the last release held counts back (nil: it did not).
    var releasesWithheld: String? {
        lock.lock()
        defer { lock.unlock() }
        return withheld
    }

    func persist() throws {
        writeLock.lock()
        defer { writeLock.unlock() }
        lock.lock()
        let copy = stored
        let needed = dirty
        dirty = false
        lock.unlock()
        if needed {
            do {
                try write(copy)
            } catch {
                lock.lock()
                dirty = true
                lock.unlock()
                throw error
            }
        }
    }

    private func write(_ value: Stored) throws {
        try files.save(value, to: files.aggregatesURL)
        // shadow.json of an older agent is now inside aggregates.json.
        try? FileManager.default.removeItem(at: files.shadowStatsURL)
    }
}

/// Any generator behind one concrete type, so the buffer can hold a seeded one in tests.
struct AnyRandom: RandomNumberGenerator {
    private var base: any RandomNumberGenerator
    init(_ base: any RandomNumberGenerator) { self.base = base }
    mutating func next() -> UInt64 { base.next() }
}
