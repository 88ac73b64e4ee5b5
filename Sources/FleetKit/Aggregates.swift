import Foundation

/// What an agent reports about inference in one time window: counts and histograms only.
/// Windows merge by addition, so an agent that is offline for long merges its oldest
/// windows instead of dropping any totals, and the controller can add windows from many
/// devices.
public struct AggregateWindow: Codable, Sendable, Equatable {
    /// Upper bounds (ms) of the latency buckets; the last bucket is open-ended.
    public static let latencyBucketsMs: [Double] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000]
    public static let confidenceBuckets = 10

    public var start: Date
    public var end: Date
    public var model: String
    public var version: String
    public var inferences: Int
    public var errors: Int
    public var classCounts: [Int]
    /// latencyBucketsMs.count + 1 counts.
    public var latencyHistogram: [Int]
    /// confidenceBuckets counts over [0, 1].
    public var confidenceHistogram: [Int]
    /// The privacy mechanisms applied on the device, e.g. "laplace epsilon=1.0"; noisy
    /// counts may be negative (that keeps sums over many windows unbiased).
    public var privacy: String?
    /// Classes whose count was below the fleet's minimum and is withheld (sent as 0).
    public var suppressedClasses: [Int]?
    /// With suppression of exact counts: the withheld classes' inferences together, itself
    /// 0 or at least the minimum, so `inferences` is the sum of the released parts.
    public var suppressedCount: Int?

    public init(start: Date, end: Date, model: String, version: String, classes: Int) {
        self.start = start
        self.end = end
        self.model = model
        self.version = version
        inferences = 0
        errors = 0
        classCounts = [Int](repeating: 0, count: classes)
        latencyHistogram = [Int](repeating: 0, count: Self.latencyBucketsMs.count + 1)
        confidenceHistogram = [Int](repeating: 0, count: Self.confidenceBuckets)
    }

    public mutating func record(predictedClass: Int, latencyMs: Double, confidence: Float) {
        inferences += 1
        if classCounts.indices.contains(predictedClass) { classCounts[predictedClass] += 1 }
        let bucket = Self.latencyBucketsMs.firstIndex { latencyMs <= $0 } ?? Self.latencyBucketsMs.count
        latencyHistogram[bucket] += 1
        let c = confidence.isFinite ? min(max(confidence, 0), 1) : 0
        confidenceHistogram[min(Self.confidenceBuckets - 1, Int(c * Float(Self.confidenceBuckets)))] += 1
    }

    public var key: String { "\(model)\u{1F}\(version)" }

    /// Adds `other`'s counts (same model and version) and widens the time range.
    public mutating func merge(_ other: AggregateWindow) {
        start = min(start, other.start)
        end = max(end, other.end)
        // Saturating: on the controller these are sums over devices (SaturatingCounts.swift).
        inferences.saturatingAdd(other.inferences)
        errors.saturatingAdd(other.errors)
        classCounts.saturatingAdd(other.classCounts)
        if privacy == nil { privacy = other.privacy }
        latencyHistogram.saturatingAdd(other.latencyHistogram)
        confidenceHistogram.saturatingAdd(other.confidenceHistogram)
    }

    /// Percentile of latency estimated from the histogram (upper bucket bound).
    public static func latencyPercentile(_ histogram: [Int], _ p: Double) -> Double? {
        // Noisy counts can be negative; they carry no mass here.
        let total = histogram.map { Swift.max($0, 0) }.saturatingSum
        guard total > 0 else { return nil }
        let rank = Int((Double(total) * p).rounded(.up).clamped(to: 1...Double(Int.max / 2)))
        var seen = 0
        for (index, count) in histogram.enumerated() {
            seen.saturatingAdd(Swift.max(count, 0))
            if seen >= rank {
                return index < latencyBucketsMs.count ? latencyBucketsMs[index] : latencyBucketsMs.last! * 2
            }
        }
        return nil
    }

    /// Structural sanity of a window received from a device.
    public var isWellFormed: Bool {
        let noisy = privacy?.contains("laplace") == true
        let counts = [inferences, errors] + classCounts + latencyHistogram + confidenceHistogram
        return (noisy || counts.allSatisfy { $0 >= 0 }) && counts.allSatisfy { abs($0) < 1 << 40 }
            && classCounts.count <= 100_000 && latencyHistogram.count == Self.latencyBucketsMs.count + 1
            && confidenceHistogram.count == Self.confidenceBuckets && start <= end && model.count <= 256 && version.count <= 256
            && (privacy?.count ?? 0) <= 200 && (suppressedClasses?.count ?? 0) <= classCounts.count
            && (suppressedCount.map { $0 >= 0 && $0 < 1 << 40 } ?? true)
    }
}

extension Double {
    func clamped(to range: ClosedRange<Double>) -> Double { Swift.min(Swift.max(self, range.lowerBound), range.upperBound) }
}
