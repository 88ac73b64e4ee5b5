import Foundation

/// Per-fleet privacy settings, applied by every agent to each aggregate window before it
/// leaves the device (see docs/PRIVACY.md).
public struct PrivacySettings: Codable, Sendable, Equatable {
    /// Class counts below this (after noise) are withheld and listed as suppressed; 0 = off.
    public var minCount: Int
    /// Per-window epsilon of the Laplace mechanism; nil = no noise.
    public var epsilon: Double?

    public init(minCount: Int = 0, epsilon: Double? = nil) {
        self.minCount = minCount
        self.epsilon = epsilon
    }

    public var isValid: Bool { minCount >= 0 && minCount <= 1_000_000 && (epsilon.map { $0 > 0 && $0 <= 100 && $0.isFinite } ?? true) }

    /// One inference changes four counts of a window by one each: the total, one class, one
    /// latency bucket and one confidence bucket, so the L1 sensitivity is 4.
    public static let sensitivity = 4.0

    /// A shadow report's L1 sensitivity, in units of each field's per-inference bound (see
    /// `PrivacyMechanism.protect(_: ShadowReport)`).
    public static let shadowSensitivity = 5.0

    /// Noise scale b of Laplace(b) added to every count: sensitivity / epsilon.
    public var laplaceScale: Double? { epsilon.map { Self.sensitivity / $0 } }
}

/// The mechanisms, with the random source injectable so tests are reproducible.
public struct PrivacyMechanism<Random: RandomNumberGenerator> {
    public var settings: PrivacySettings
    public var random: Random

    public init(settings: PrivacySettings, random: Random) {
        self.settings = settings
        self.random = random
    }

    /// A Laplace(0, b) sample by inverse CDF.
    public mutating func laplace(scale b: Double) -> Double {
        var u = Double.random(in: -0.5..<0.5, using: &random)
        while u == -0.5 { u = Double.random(in: -0.5..<0.5, using: &random) }
        return -b * (u < 0 ? -1 : 1) * Foundation.log(1 - 2 * abs(u))
    }

    /// Largest magnitude of a noisy count: the controller's `AggregateWindow.isWellFormed` bound.
    public static var maxNoisyMagnitude: Int { (1 << 40) - 1 }

    /// Noisy integer: x + Laplace(b), rounded (symmetric noise keeps the mean at x), clamped
    /// to what the controller accepts. A valid but tiny epsilon (say 1e-300) makes b so large
    /// that the sum is not representable as an Int (or is infinite, or NaN for b = inf);
    /// converting it trapped every agent on its next heartbeat.
    public mutating func noisy(_ value: Int, scale b: Double) -> Int {
        let limit = Self.maxNoisyMagnitude
        let sum = (Double(value) + laplace(scale: b)).rounded()
        guard !sum.isNaN else { return Int.random(in: -limit...limit, using: &random) }
        return Int(min(max(sum, -Double(limit)), Double(limit)))
    }

    /// Applies noise (if configured) and then suppression (post-processing keeps the
    /// guarantee) to a window about to leave the device. Call it once per window: the
    /// result is what the agent persists and resends (docs/PRIVACY.md, "Once per window").
    public mutating func protect(_ window: AggregateWindow) -> AggregateWindow {
        var out = window
        let k = settings.minCount
        if let b = settings.laplaceScale, let epsilon = settings.epsilon {
            out.inferences = noisy(window.inferences, scale: b)
            out.errors = noisy(window.errors, scale: b)
            out.classCounts = window.classCounts.map { noisy($0, scale: b) }
            out.latencyHistogram = window.latencyHistogram.map { noisy($0, scale: b) }
            out.confidenceHistogram = window.confidenceHistogram.map { noisy($0, scale: b) }
            out.privacy = "laplace epsilon=\(epsilon)"
            if k > 0 {
                // On noisy counts a difference (total - released classes) is itself noisy,
                // so zeroing small classes is enough: the noise protects the rest.
                out.suppressedClasses = out.classCounts.indices.filter { out.classCounts[$0] < k }
                for index in out.suppressedClasses! { out.classCounts[index] = 0 }
                if out.errors < k { out.errors = 0 }
            }
        } else if k > 0 {
            // Exact counts: every released total is the sum of released parts, so no withheld
            // count can be recovered by subtraction (Suppression).
            let classes = Suppression.partition(window.classCounts, total: window.inferences, k: k)
            out.classCounts = classes.cells
            out.suppressedClasses = classes.withheld
            out.suppressedCount = classes.other
            out.inferences = classes.total
            if classes.total == 0 {
                out.latencyHistogram = window.latencyHistogram.map { _ in 0 }
                out.confidenceHistogram = window.confidenceHistogram.map { _ in 0 }
            } else {
                out.latencyHistogram = Suppression.coarsen(window.latencyHistogram, k: k)
                out.confidenceHistogram = Suppression.coarsen(window.confidenceHistogram, k: k)
            }
            if window.errors < k { out.errors = 0 }
        }
        if k > 0 {
            out.privacy = [out.privacy, "suppressed below \(k)"].compactMap { $0 }.joined(separator: ", ")
        }
        return out
    }

    /// The same for a shadow report (docs/PRIVACY.md, "Shadow evaluation"). One inference
    /// changes `samples` by 1, `agreements` by at most 1, one confusion cell by 1, the
    /// confidence-delta sum by at most 1 and the latency-delta sum by at most
    /// `ShadowReport.latencyDeltaClampMs`: in units of those bounds the L1 sensitivity is 5.
    public mutating func protect(_ report: ShadowReport) -> ShadowReport {
        var out = report
        let k = settings.minCount
        if let epsilon = settings.epsilon {
            let b = PrivacySettings.shadowSensitivity / epsilon
            out.samples = noisy(report.samples, scale: b)
            out.agreements = noisy(report.agreements, scale: b)
            out.confusion = report.confusion.map { noisy($0, scale: b) }
            out.confidenceDeltaSum = noisySum(report.confidenceDeltaSum, scale: b)
            out.latencyDeltaSumMs = noisySum(report.latencyDeltaSumMs, scale: b * ShadowReport.latencyDeltaClampMs)
            out.privacy = "laplace epsilon=\(epsilon)"
            if k > 0 {
                out.suppressedCells = out.confusion.indices.filter { out.confusion[$0] < k }
                for index in out.suppressedCells! { out.confusion[index] = 0 }
            }
        } else if k > 0 {
            // Agreements are the diagonal's total and samples add the off-diagonal's, so each
            // part is suppressed as a partition of its own total.
            let n = report.classes
            let diagonal = (0..<n).map { $0 * n + $0 }.filter { report.confusion.indices.contains($0) }
            let diagonalSet = Set(diagonal)
            let offDiagonal = report.confusion.indices.filter { !diagonalSet.contains($0) }
            let agree = Suppression.partition(diagonal.map { report.confusion[$0] }, total: report.agreements, k: k)
            let disagree = Suppression.partition(offDiagonal.map { report.confusion[$0] }, total: report.samples - report.agreements, k: k)
            for (position, index) in diagonal.enumerated() { out.confusion[index] = agree.cells[position] }
            for (position, index) in offDiagonal.enumerated() { out.confusion[index] = disagree.cells[position] }
            out.suppressedCells = (agree.withheld.map { diagonal[$0] } + disagree.withheld.map { offDiagonal[$0] }).sorted()
            out.agreements = agree.total
            out.samples = agree.total + disagree.total
            if out.samples == 0 {
                out.confidenceDeltaSum = 0
                out.latencyDeltaSumMs = 0
            }
        }
        if k > 0 {
            out.privacy = [out.privacy, "suppressed below \(k)"].compactMap { $0 }.joined(separator: ", ")
        }
        return out
    }

    /// x + Laplace(b) for a real-valued sum, kept finite.
    mutating func noisySum(_ value: Double, scale b: Double) -> Double {
        let sum = value + laplace(scale: b)
        guard sum.isFinite else { return 0 }
        let limit = Double(Self.maxNoisyMagnitude)
        return min(max(sum, -limit), limit)
    }
}
