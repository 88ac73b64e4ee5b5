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
    /// guarantee) to a window about to leave the device.
    public mutating func protect(_ window: AggregateWindow) -> AggregateWindow {
        var out = window
        if let b = settings.laplaceScale, let epsilon = settings.epsilon {
            out.inferences = noisy(window.inferences, scale: b)
            out.errors = noisy(window.errors, scale: b)
            out.classCounts = window.classCounts.map { noisy($0, scale: b) }
            out.latencyHistogram = window.latencyHistogram.map { noisy($0, scale: b) }
            out.confidenceHistogram = window.confidenceHistogram.map { noisy($0, scale: b) }
            out.privacy = "laplace epsilon=\(epsilon)"
        }
        if settings.minCount > 0 {
            var suppressed: [Int] = []
            for index in out.classCounts.indices where out.classCounts[index] < settings.minCount {
                suppressed.append(index)
                out.classCounts[index] = 0
            }
            out.suppressedClasses = suppressed
            out.privacy = [out.privacy, "suppressed below \(settings.minCount)"].compactMap { $0 }.joined(separator: ", ")
        }
        return out
    }
}
