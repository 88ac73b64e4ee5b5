import BitModel
import FleetKit
import Foundation
import Testing

/// The privacy mechanisms: the Laplace noise has the right scale, sums over many windows
/// stay unbiased, suppression withholds small counts, and a heartbeat carries nothing but
/// aggregates and state.
@Suite("Privacy")
struct PrivacyTests {
    @Test("Laplace noise has mean 0 and variance 2b^2 (seeded)")
    func noiseScale() {
        let settings = PrivacySettings(epsilon: 0.5)
        let b = settings.laplaceScale!
        #expect(b == 8)
        var mechanism = PrivacyMechanism(settings: settings, random: SeededGenerator(seed: 42))
        let n = 40_000
        let samples = (0..<n).map { _ in mechanism.laplace(scale: b) }
        let mean = samples.reduce(0, +) / Double(n)
        let variance = samples.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n - 1)
        // Standard error of the mean: sqrt(2) b / sqrt(n) = 0.057; allow 4 of them.
        #expect(abs(mean) < 4 * (2.0).squareRoot() * b / Double(n).squareRoot(), "mean \(mean)")
        #expect(abs(variance / (2 * b * b) - 1) < 0.05, "variance \(variance), expected \(2 * b * b)")
        // Median absolute value of Laplace(b) is b ln 2.
        let median = samples.map(abs).sorted()[n / 2]
        #expect(abs(median / (b * log(2)) - 1) < 0.05)
    }

    @Test("noisy totals over many windows stay unbiased")
    func unbiasedTotals() {
        var mechanism = PrivacyMechanism(settings: PrivacySettings(epsilon: 1), random: SeededGenerator(seed: 7))
        let start = Date(timeIntervalSince1970: 0)
        var exact = 0, noisy = 0, noisyClass3 = 0, exactClass3 = 0
        for w in 0..<2000 {
            var window = AggregateWindow(start: start.addingTimeInterval(Double(w) * 60), end: start.addingTimeInterval(Double(w + 1) * 60),
                                         model: "m", version: "v", classes: 10)
            for i in 0..<(w % 13) { window.record(predictedClass: i % 10, latencyMs: 1, confidence: 0.5) }
            let released = mechanism.protect(window)
            #expect(released.privacy == "laplace epsilon=1.0")
            #expect(released.isWellFormed)
            exact += window.inferences
            noisy += released.inferences
            exactClass3 += window.classCounts[3]
            noisyClass3 += released.classCounts[3]
        }
        // Each window adds Laplace(4) noise (sd 5.66); over 2000 windows the sum's sd is 253.
        #expect(abs(noisy - exact) < 4 * 253, "exact \(exact), noisy \(noisy)")
        #expect(abs(noisyClass3 - exactClass3) < 4 * 253)
    }

    @Test("class counts below the minimum are withheld, pooled in a suppressed count that is itself at least the minimum")
    func suppression() {
        var mechanism = PrivacyMechanism(settings: PrivacySettings(minCount: 5), random: SeededGenerator(seed: 1))
        var window = AggregateWindow(start: Date(), end: Date(), model: "m", version: "v", classes: 4)
        for (cls, count) in [(0, 12), (1, 4), (2, 5), (3, 1)] {
            for _ in 0..<count { window.record(predictedClass: cls, latencyMs: 1, confidence: 1) }
        }
        let released = mechanism.protect(window)
        #expect(released.classCounts == [12, 0, 5, 0])
        #expect(released.suppressedClasses == [1, 3])
        #expect(released.suppressedCount == 5)
        #expect(released.inferences == 22)
    }

    /// The subtraction attack of issue 14: 97 inferences of class 0, 3 of class 1, all in
    /// one latency and one confidence bucket. Releasing the total (100) or a histogram
    /// (whose sum is 100) next to class 0's 97 would give away class 1's 3.
    @Test("a withheld class cannot be recovered from the total, the histograms or the errors (exact numbers)")
    func suppressionResistsSubtraction() {
        var mechanism = PrivacyMechanism(settings: PrivacySettings(minCount: 5), random: SeededGenerator(seed: 1))
        var window = AggregateWindow(start: Date(), end: Date(), model: "m", version: "v", classes: 2)
        for _ in 0..<97 { window.record(predictedClass: 0, latencyMs: 3, confidence: 0.95) }
        for _ in 0..<3 { window.record(predictedClass: 1, latencyMs: 3, confidence: 0.95) }
        window.errors = 3
        let released = mechanism.protect(window)
        // The pool of class 1 alone (3) is below 5, so class 0 joins it: only "100 in all".
        #expect(released.classCounts == [0, 0])
        #expect(released.suppressedClasses == [0, 1])
        #expect(released.suppressedCount == 100)
        #expect(released.inferences == 100)
        #expect(released.latencyHistogram[5] == 100 && released.latencyHistogram.reduce(0, +) == 100)
        #expect(released.confidenceHistogram[9] == 100 && released.confidenceHistogram.reduce(0, +) == 100)
        #expect(released.errors == 0, "3 errors are below the minimum")
        #expect(released.privacy == "suppressed below 5")

        // Fewer than k inferences in all: not even the total leaves.
        var tiny = AggregateWindow(start: Date(), end: Date(), model: "m", version: "v", classes: 3)
        for cls in [0, 0, 2] { tiny.record(predictedClass: cls, latencyMs: 0.2, confidence: 0.5) }
        let none = mechanism.protect(tiny)
        #expect(none.inferences == 0 && none.classCounts == [0, 0, 0] && none.suppressedCount == 0 && none.suppressedClasses == [0, 1, 2])
        #expect(none.latencyHistogram.allSatisfy { $0 == 0 } && none.confidenceHistogram.allSatisfy { $0 == 0 })
    }

    @Test("histogram buckets below the minimum merge upward; the sum stays the released total (exact numbers)")
    func histogramCoarsening() {
        #expect(Suppression.coarsen([3, 4, 60, 1, 27], k: 5) == [0, 7, 60, 0, 28])
        #expect(Suppression.coarsen([10, 2], k: 5) == [0, 12], "a tail below k joins the group before it")
        #expect(Suppression.coarsen([0, 6, 0, 0, 1, 0], k: 5) == [0, 0, 0, 0, 7, 0])
        #expect(Suppression.coarsen([2, 2], k: 5) == [0, 0], "fewer than k in all: withheld")
        #expect(Suppression.coarsen([1, 9], k: 1) == [1, 9])
        let partition = Suppression.partition([50, 40, 3, 2], total: 95, k: 5)
        #expect(partition == Suppression.Partition(cells: [50, 40, 0, 0], withheld: [2, 3], other: 5, total: 95))
        // Inferences no class counts (an out-of-range class) join the pool too.
        #expect(Suppression.partition([10, 10], total: 22, k: 5) == Suppression.Partition(cells: [0, 10], withheld: [0], other: 12, total: 22),
               "the 2 unclassified inferences need company: the smallest class (the first of equals) joins them")
    }

    /// For many random windows: every released non-zero count is at least k, and every
    /// total equals the sum of released parts, so a difference of released numbers is
    /// itself a sum of released parts and never a withheld count.
    @Test("suppressed releases are consistent sums of parts of at least k (seeded)")
    func suppressionInvariant() {
        let seed = UInt64(20_261_202)
        print("suppression invariant: seed \(seed)")
        var random = SeededGenerator(seed: seed)
        var mechanism = PrivacyMechanism(settings: PrivacySettings(minCount: 4), random: SeededGenerator(seed: seed + 1))
        for _ in 0..<500 {
            var window = AggregateWindow(start: Date(), end: Date(), model: "m", version: "v", classes: 6)
            for _ in 0..<Int.random(in: 0...40, using: &random) {
                window.record(predictedClass: Int.random(in: 0..<6, using: &random) % (Int.random(in: 1...6, using: &random)),
                              latencyMs: Double.random(in: 0...80, using: &random), confidence: Float.random(in: 0...1, using: &random))
            }
            window.errors = Int.random(in: 0...6, using: &random)
            let out = mechanism.protect(window)
            let numbers = out.classCounts + out.latencyHistogram + out.confidenceHistogram + [out.inferences, out.errors, out.suppressedCount ?? 0]
            #expect(numbers.allSatisfy { $0 == 0 || $0 >= 4 }, "\(out)")
            #expect(out.inferences == out.classCounts.reduce(0, +) + (out.suppressedCount ?? 0))
            #expect(out.latencyHistogram.reduce(0, +) == out.inferences && out.confidenceHistogram.reduce(0, +) == out.inferences)
            #expect(out.inferences == window.inferences || out.inferences == 0)
        }
    }

    @Test("shadow reports: Laplace noise of scale 5/e on every count and sum, then suppression (seeded)")
    func shadowNoise() {
        let seed = UInt64(5150)
        print("shadow noise: seed \(seed)")
        let settings = PrivacySettings(minCount: 0, epsilon: 2)
        var mechanism = PrivacyMechanism(settings: settings, random: SeededGenerator(seed: seed))
        var exact = ShadowReport(sequence: 9, classes: 2)
        for i in 0..<40 { exact.record(activeClass: i % 2, shadowClass: i % 3 == 0 ? 1 : 0, confidenceDelta: 0.5, latencyDeltaMs: 500) }
        #expect(exact.latencyDeltaSumMs == 40 * ShadowReport.latencyDeltaClampMs, "each latency difference is clamped to 100 ms")
        #expect(exact.confidenceDeltaSum == 20)
        let b = PrivacySettings.shadowSensitivity / 2
        let n = 20_000
        var deviations: [Double] = []
        var latencyDeviations: [Double] = []
        #expect(mechanism.protect(exact).privacy == "laplace epsilon=2.0")
        for _ in 0..<n {
            let noisy = mechanism.protect(exact)
            deviations.append(Double(noisy.samples - exact.samples))
            latencyDeviations.append((noisy.latencyDeltaSumMs - exact.latencyDeltaSumMs) / ShadowReport.latencyDeltaClampMs)
        }
        func variance(_ x: [Double]) -> Double {
            let mean = x.reduce(0, +) / Double(x.count)
            return x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count - 1)
        }
        // Var of a sample variance of Laplace: 20 b^4 / n, relative sd sqrt(5 / n) = 1.6 %; bound 4 of those.
        // Rounding adds 1/12 to the counts' variance.
        #expect(abs(variance(deviations) / (2 * b * b + 1.0 / 12) - 1) < 0.064, "\(variance(deviations)) vs \(2 * b * b)")
        #expect(abs(variance(latencyDeviations) / (2 * b * b) - 1) < 0.064)

        // Exact counts with k: agreements and samples are sums of released parts.
        var small = ShadowReport(sequence: 9, classes: 2)
        for (a, s, count) in [(0, 0, 30), (1, 1, 3), (0, 1, 12), (1, 0, 2)] {
            for _ in 0..<count { small.record(activeClass: a, shadowClass: s, confidenceDelta: 0, latencyDeltaMs: 0) }
        }
        var suppressing = PrivacyMechanism(settings: PrivacySettings(minCount: 5), random: SeededGenerator(seed: seed))
        let released = suppressing.protect(small)
        // Diagonal 30 and 3: the pool (3) is below 5, so 30 joins: agreements 33, no cell shown.
        // Off-diagonal 12 and 2: likewise: 14. Samples 47, every cell withheld.
        #expect(released.confusion == [0, 0, 0, 0])
        #expect(released.suppressedCells == [0, 1, 2, 3])
        #expect(released.agreements == 33 && released.samples == 47)
        #expect(released.isWellFormed)
    }
}
