import FleetKit
import Foundation

/// What a device's counts can honestly be, checked when they arrive. A stolen credential
/// must not let one device flood the fleet's metrics or a shadow gate with numbers that are
/// well formed but impossible: every count is bounded by the time it covers times a
/// generous maximum inference rate, plus the noise the fleet's privacy settings can add.
/// A window or shadow report that fails is refused on its own (not stored, a device event
/// and a counter say why); the rest of the heartbeat is applied, so an agent never retries
/// a refused item forever.
struct IngestionPlausibility: Sendable {
    /// Inferences per second one device can run at most (a Pi 5 runs a tiny MLP at about
    /// 25,000/s on four cores); configurable with `--max-inference-rate`.
    var maxInferencesPerSecond: Double
    /// Slack on the device's enrolled life (its first windows may start a little earlier).
    var clockSkew: TimeInterval = 300

    /// Laplace noise beyond 50 scales has probability e^-50: a noisy count may exceed the
    /// exact bound by that much and no more.
    static let noiseScales = 50.0

    /// Why `window` cannot be honest, or nil if it can. The bound uses the window's span,
    /// but never more than the device's enrolled life: device clocks are not trusted (a Pi
    /// without a real-time clock boots with a stale one), the controller's is.
    func refusal(of window: AggregateWindow, device: DeviceRecord, now: Date, privacy: PrivacySettings) -> String? {
        // Retention and every "since" query go by a window's end: one dated years ahead
        // would stay forever. A device clock a day fast is broken, not skewed.
        if window.end > now.addingTimeInterval(86_400) {
            return "the window ends \(Self.seconds(window.end.timeIntervalSince(now))) in the future (is the device clock wrong?)"
        }
        let noisy = window.privacy?.contains("laplace") == true
        let seconds = min(window.end.timeIntervalSince(window.start), life(of: device, now: now))
        let limit = countLimit(seconds: seconds, noisyCounts: noisy ? 1 : 0, privacy: privacy)
        let counts = [window.inferences, window.errors] + window.classCounts + window.latencyHistogram + window.confidenceHistogram
        if let worst = counts.max(by: { $0.magnitude < $1.magnitude }), Double(worst.magnitude) > limit {
            return "a count of \(worst) in a window of \(Self.seconds(seconds)) is above the plausible \(Int(limit))"
        }
        guard !noisy else { return nil }
        // Exact windows must add up: each inference lands in at most one class and one bucket.
        for (name, total) in [("class counts", window.classCounts.saturatingSum), ("latency histogram", window.latencyHistogram.saturatingSum),
                              ("confidence histogram", window.confidenceHistogram.saturatingSum)] where total > window.inferences {
            return "the \(name) add up to \(total), more than the window's \(window.inferences) inferences"
        }
        return nil
    }

    /// Why the windows of one heartbeat cannot all be honest together: many windows, each
    /// plausible alone, must not add up to more than the device could have run in its life.
    func refusal(ofTotal windows: [AggregateWindow], device: DeviceRecord, now: Date, privacy: PrivacySettings) -> String? {
        let noisy = windows.contains { $0.privacy?.contains("laplace") == true }
        let limit = countLimit(seconds: life(of: device, now: now), noisyCounts: noisy ? windows.count : 0, privacy: privacy)
        let total = windows.map(\.inferences).saturatingSum
        return Double(total.magnitude) > limit ? "\(windows.count) windows add up to \(total) inferences, above the plausible \(Int(limit)) for the device's life" : nil
    }

    /// Why `report` cannot be honest, or nil. Shadow reports carry no time range, so the
    /// bound is the device's whole enrolled life.
    func refusal(of report: ShadowReport, device: DeviceRecord, now: Date, privacy: PrivacySettings) -> String? {
        let noisy = privacy.epsilon != nil
        let limit = countLimit(seconds: life(of: device, now: now), noisyCounts: noisy ? 1 : 0, privacy: privacy)
        let counts = [report.samples, report.agreements] + report.confusion
        if let worst = counts.max(by: { $0.magnitude < $1.magnitude }), Double(worst.magnitude) > limit {
            return "a shadow count of \(worst) is above the plausible \(Int(limit)) for a device enrolled \(Self.seconds(life(of: device, now: now) - clockSkew)) ago"
        }
        if !noisy, report.confusion.saturatingSum > report.samples {
            return "the shadow confusion matrix adds up to \(report.confusion.saturatingSum), more than its \(report.samples) samples"
        }
        return nil
    }

    private func life(of device: DeviceRecord, now: Date) -> TimeInterval {
        max(now.timeIntervalSince(device.enrolledAt), 0) + clockSkew
    }

    /// The largest magnitude of an exact count over `seconds`, plus the noise of
    /// `noisyCounts` independent Laplace draws.
    private func countLimit(seconds: TimeInterval, noisyCounts: Int, privacy: PrivacySettings) -> Double {
        var limit = max(seconds, 1) * maxInferencesPerSecond
        // Windows noised before a settings change used the epsilon of that time; the
        // fleet's current epsilon, or 1 when noise is now off, sets the allowance.
        limit += Double(noisyCounts) * Self.noiseScales * (privacy.laplaceScale ?? PrivacySettings.sensitivity)
        return min(limit, Double(PrivacyMechanism<SystemRandomNumberGenerator>.maxNoisyMagnitude))
    }

    private static func seconds(_ interval: TimeInterval) -> String {
        let s = max(0, interval)
        return s < 120 ? "\(Int(s)) s" : s < 7200 ? "\(Int(s / 60)) min" : s < 172_800 ? "\(Int(s / 3600)) h" : "\(Int(s / 86_400)) days"
    }
}
