import Foundation
import NIOCore
import NIOPosix

/// Where the simulated devices find the controller, and the event loop they share.
struct ControllerLink: Sendable {
    var host: String
    var port: Int
    var group: EventLoopGroup
}

/// Counters and latency samples shared by all simulated devices.
final class SimulationStats: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [String: Int] = [:]
    private var latenciesMs: [Double] = []
    private var lagsMs: [Double] = []
    private var bytes = 0
    private var activations = 0
    private var lastActivation: ContinuousClock.Instant?

    func count(_ what: String) {
        lock.withLock { counts[String(what.prefix(160)), default: 0] += 1 }
    }

    /// `service`: request sent to answer received. `fromSchedule`: from when the heartbeat
    /// was due to the answer, which also counts any time the simulator fell behind (so a
    /// slow controller cannot hide behind a client that waits for it).
    func recordLatency(service: Duration, fromSchedule: Duration) {
        lock.withLock {
            latenciesMs.append(service.milliseconds)
            lagsMs.append(fromSchedule.milliseconds)
        }
    }

    func downloaded(_ count: Int) { lock.withLock { bytes += count } }

    func activated(at instant: ContinuousClock.Instant) {
        lock.withLock {
            activations += 1
            lastActivation = instant
        }
    }

    var activationCount: Int { lock.withLock { activations } }
    var lastActivationInstant: ContinuousClock.Instant? { lock.withLock { lastActivation } }
    var bytesDownloaded: Int { lock.withLock { bytes } }
    var counters: [String: Int] { lock.withLock { counts } }

    /// Takes the latency samples recorded so far (service, from schedule), leaving none.
    func drainLatencies() -> (service: [Double], fromSchedule: [Double]) {
        lock.withLock {
            defer {
                latenciesMs.removeAll(keepingCapacity: true)
                lagsMs.removeAll(keepingCapacity: true)
            }
            return (latenciesMs, lagsMs)
        }
    }
}

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}

/// Percentiles of a sample (nearest-rank).
struct LatencySummary: Codable, Sendable {
    var count: Int
    var p50: Double
    var p90: Double
    var p99: Double
    var max: Double

    init(_ samples: [Double]) {
        let sorted = samples.sorted()
        func rank(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return sorted[min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1)]
        }
        count = sorted.count
        p50 = rank(0.50)
        p90 = rank(0.90)
        p99 = rank(0.99)
        max = sorted.last ?? 0
    }

    var text: String {
        String(format: "p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms (%d samples)", p50, p90, p99, max, count)
    }
}
