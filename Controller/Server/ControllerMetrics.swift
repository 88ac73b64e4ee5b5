import FleetKit
import Foundation
import Hummingbird
import Prometheus

/// The controller's Prometheus metrics (`GET /metrics`, text exposition format). Counters
/// and histograms live in a swift-prometheus registry owned by this object (no process-
/// global bootstrap, so tests can run several controllers); fleet gauges are computed from
/// the database at scrape time, so every replica reports the same fleet.
final class ControllerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let heartbeats: Counter
    let pushesDelivered: Counter
    let pushesFailed: Counter
    let heartbeatDuration: DurationHistogram
    let blobRequestsShed: Counter
    /// Aggregate windows and shadow reports refused as implausible (IngestionPlausibility).
    let refusedCounts: Counter
    /// Devices that proved a sequence above the controller's counter (SequenceResync).
    let sequenceResyncs: Counter
    private static let latencyBuckets: [Duration] = [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                                                     .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                                                     .milliseconds(500), .seconds(1), .seconds(5)]

    init() {
        heartbeats = registry.makeCounter(descriptor: Self.name("heartbeats", "total", "Heartbeats received from agents"))
        pushesDelivered = registry.makeCounter(descriptor: Self.name("pushes", "total", "Manifest pushes to agents"),
                                               labels: [("result", "delivered")])
        pushesFailed = registry.makeCounter(descriptor: Self.name("pushes", "total", "Manifest pushes to agents"),
                                            labels: [("result", "failed")])
        blobRequestsShed = registry.makeCounter(descriptor: Self.name("blob_requests_shed", "total",
                                                                              "Blob requests answered 503 because the download queue was full"))
        refusedCounts = registry.makeCounter(descriptor: Self.name("refused_device_counts", "total",
                                                                   "Aggregate windows and shadow reports refused as implausible"))
        sequenceResyncs = registry.makeCounter(descriptor: Self.name("sequence_resyncs", "total",
                                                                     "Devices that had accepted a manifest sequence above the controller's counter"))
        heartbeatDuration = registry.makeDurationHistogram(descriptor: Self.name("heartbeat_db", "seconds", "Database time spent on one heartbeat"),
                                                           buckets: Self.latencyBuckets)
    }

    /// `bitfleet_<metric>_<unit>`, the names the dashboards and alerts use.
    private static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "bitfleet", metricName: metric, unitName: unit, helpText: help)
    }

    func requestHistogram(route: String, method: String, status: Int) -> DurationHistogram {
        registry.makeDurationHistogram(descriptor: Self.name("http_request_duration", "seconds", "HTTP request latency by route"),
                                       labels: [("route", route), ("method", method), ("status", "\(status / 100)xx")],
                                       buckets: Self.latencyBuckets)
    }

    /// The registry's metrics followed by fleet gauges computed from the store.
    func exposition(service: FleetService, rollouts: RolloutService) async throws -> String {
        var lines = [registry.emitToString()]
        func gauge(_ name: String, _ help: String, _ samples: [(labels: [(String, String)], value: Double)]) {
            lines.append("# HELP \(name) \(help)\n# TYPE \(name) gauge")
            for sample in samples {
                let labels = sample.labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",")
                lines.append("\(name)\(labels.isEmpty ? "" : "{\(labels)}") \(sample.value)")
            }
        }
        let devices = try await service.store.devices()
        let now = service.clock()
        var byStatus: [String: Int] = ["online": 0, "stale": 0, "offline": 0, "revoked": 0]
        var byVersion: [String: Int] = [:]
        for device in devices {
            byStatus[service.status(of: device, now: now), default: 0] += 1
            if !device.revoked, let active = device.activeModel { byVersion["\(active.name)\u{1F}\(active.version)", default: 0] += 1 }
        }
        gauge("bitfleet_devices", "Enrolled devices by status", byStatus.sorted { $0.key < $1.key }.map { ([("status", $0.key)], Double($0.value)) })
        gauge("bitfleet_devices_running", "Devices by the model version they run", byVersion.sorted { $0.key < $1.key }.map {
            let parts = $0.key.split(separator: "\u{1F}").map(String.init)
            return ([("model", parts[0]), ("version", parts.count > 1 ? parts[1] : "")], Double($0.value))
        })
        var rolloutSamples: [(labels: [(String, String)], value: Double)] = []
        for rollout in try await service.store.rollouts().prefix(20) {
            let info = try await rollouts.info(rollout)
            for (index, stage) in info.stages.enumerated() {
                for (state, count) in stage.counts.sorted(by: { $0.key < $1.key }) {
                    rolloutSamples.append(([("rollout", "\(info.id)"), ("version", info.version), ("stage", "\(index + 1)"), ("state", state)], Double(count)))
                }
            }
        }
        gauge("bitfleet_rollout_devices", "Devices per rollout stage and state (20 newest rollouts)", rolloutSamples)
        // This process's downloads, not the fleet's: each replica admits its own.
        let queued = service.transfers.waiting
        gauge("bitfleet_blob_transfers", "Model downloads admitted by this controller: streaming (active) or waiting for a slot (queued)",
              [([("state", "active")], Double(max(0, service.transfers.admitted - queued))), ([("state", "queued")], Double(queued))])
        return lines.joined(separator: "\n") + "\n"
    }

    private func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}

/// Times every request into `bitfleet_http_request_duration_seconds` by route pattern.
struct MetricsMiddleware: RouterMiddleware {
    let metrics: ControllerMetrics

    func handle(_ request: Request, context: FleetRequestContext,
                next: (Request, FleetRequestContext) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var status = 500
        defer {
            metrics.requestHistogram(route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: status)
                .record(ContinuousClock.now - start)
        }
        do {
            let response = try await next(request, context)
            status = Int(response.status.code)
            return response
        } catch let error as HTTPResponseError {
            status = Int(error.status.code)
            throw error
        }
    }
}
