import ArgumentParser
import BitModel
import FleetKit
import Foundation

@main
struct FleetSimulator: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet-sim",
        abstract: "Simulated devices against a real controller: the scale benchmark of docs/BENCHMARKS.md.",
        discussion: """
        Each simulated device speaks the real agent protocol over real HTTP (enrollment, \
        heartbeats, signed manifests, Range downloads checked against the signed SHA-256, \
        deployment reports) but keeps models in memory, so one process can be a thousand \
        devices. By default a fresh `fleet-controller` next to this binary is started in a \
        temporary data directory and its resident memory is read from /proc.

        Examples:
          fleet-sim rollout --agents 1000 --heartbeat-interval 5 --model-bytes 1500000
          fleet-sim heartbeats --agents 1000 --rate 2000 --duration 60
          fleet-sim heartbeats --controller http://10.0.0.2:8080 --admin-token adm_... --json
        """,
        subcommands: [Rollout.self, Heartbeats.self]
    )
}

struct FleetOptions: ParsableArguments {
    @Option(help: "Simulated devices.") var agents = 1000
    @Option(help: "Seconds between a device's heartbeats (also passed to a started controller).") var heartbeatInterval = 5.0
    @Option(help: "Use this controller instead of starting one (env BITFLEET_CONTROLLER_URL).") var controller: String?
    @Option(help: "Admin token for --controller (env BITFLEET_ADMIN_TOKEN).") var adminToken: String?
    @Option(help: "fleet-controller binary to start (default: next to fleet-sim).") var controllerBinary: String?
    @Option(help: "Extra `serve` arguments for the started controller, space-separated, e.g. \"--max-concurrent-transfers 32\".")
    var controllerArguments = ""
    @Option(help: "Event-loop threads the simulated devices share.") var clientThreads = 1
    @Flag(inversion: .prefixedNo, help: "Devices accept pushes; with --no-push they are behind NAT and learn of deployments from heartbeat replies only.")
    var push = true
    @Flag(help: "Print the result as JSON.") var json = false
}

/// What both benchmarks print.
struct SimulationReport: Codable {
    var benchmark: String
    var agents: Int
    var enrollSeconds: Double
    var figures: [String: Double]
    var heartbeatLatency: LatencySummary?
    var heartbeatLatencyFromSchedule: LatencySummary?
    var counters: [String: Int]

    func print(json: Bool) throws {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            Swift.print(String(decoding: try encoder.encode(self), as: UTF8.self))
            return
        }
        Swift.print("\(benchmark): \(agents) simulated devices, enrolled in \(String(format: "%.1f", enrollSeconds)) s")
        for (name, value) in figures.sorted(by: { $0.key < $1.key }) { Swift.print("  \(name): \(String(format: "%.2f", value))") }
        if let heartbeatLatency { Swift.print("  heartbeat latency: \(heartbeatLatency.text)") }
        if let heartbeatLatencyFromSchedule { Swift.print("  heartbeat latency from schedule: \(heartbeatLatencyFromSchedule.text)") }
        for (name, value) in counters.sorted(by: { $0.key < $1.key }) { Swift.print("  [\(value)] \(name)") }
    }
}

func megabytes(_ bytes: Int) -> Double { Double(bytes) / 1_048_576 }

extension FleetSimulator {
    struct Rollout: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enroll N devices heartbeating every few seconds, deploy one model to all, time until all are active.")

        @OptionGroup var fleet: FleetOptions
        @Option(help: "Approximate size of the deployed .bnn model in bytes.") var modelBytes = 1_500_000
        @Option(help: "Give up after this many seconds.") var timeout = 120.0

        func run() async throws {
            let simulation = try SimulatedFleet(options: fleet)
            defer { simulation.stop() }
            let enrollTime = try await simulation.enroll(count: fleet.agents, push: fleet.push)
            log("enrolled \(fleet.agents) devices in \(enrollTime)")
            let interval = Duration.milliseconds(Int(fleet.heartbeatInterval * 1000))
            let end = ContinuousClock.now + .seconds(timeout + fleet.heartbeatInterval * 2)
            let heartbeats = Task { await simulation.heartbeat(every: interval, until: end, aggregateEvery: 12) }
            defer { heartbeats.cancel() }
            try await Task.sleep(for: interval)  // one full round of heartbeats before deploying
            let modelData = try BenchmarkModel.data(approximateBytes: modelBytes)
            let (answer, _) = try await simulation.admin.send("POST", "/api/v1/models?name=sim-model&version=v1", body: modelData,
                                                               contentType: "application/octet-stream")
            let model = try FleetJSON.decoder.decode(ModelVersionInfo.self, from: answer)
            log("uploaded \(model.name) \(model.version): \(modelData.count) bytes")
            _ = simulation.stats.drainLatencies()
            var peakDuringRollout = simulation.controllerMemory?.current ?? 0
            let deployed = ContinuousClock.now
            let deployment = try await simulation.admin.json("POST", "/api/v1/deployments",
                                                             body: DeploymentRequest(model: "sim-model", version: "v1", target: DeploymentTarget()),
                                                             as: DeploymentInfo.self)
            var active = 0
            var lastProgress = ContinuousClock.now
            while active < fleet.agents {
                guard ContinuousClock.now - deployed < .seconds(timeout) else {
                    throw SimulationError("only \(active) of \(fleet.agents) devices active after \(timeout) s")
                }
                try await Task.sleep(for: .milliseconds(100))
                peakDuringRollout = max(peakDuringRollout, simulation.controllerMemory?.current ?? 0)
                let info = try await simulation.admin.json("GET", "/api/v1/deployments/\(deployment.id)", as: DeploymentInfo.self)
                active = info.counts["active"] ?? 0
                if ContinuousClock.now - lastProgress > .seconds(2) {
                    log("  \(active)/\(fleet.agents) active after \(ContinuousClock.now - deployed)")
                    lastProgress = ContinuousClock.now
                }
            }
            let allActive = ContinuousClock.now - deployed
            let latencies = simulation.stats.drainLatencies()
            var figures: [String: Double] = [
                "seconds until all active (controller's view)": allActive.milliseconds / 1000,
                "model bytes": Double(modelData.count),
                "MB downloaded": megabytes(simulation.stats.bytesDownloaded),
            ]
            if let last = simulation.stats.lastActivationInstant {
                figures["seconds until the last device activated (devices' view)"] = (last - deployed).milliseconds / 1000
            }
            if let memory = simulation.controllerMemory {
                figures["controller RSS MB, max sampled during rollout"] = megabytes(peakDuringRollout)
                figures["controller RSS MB, peak since start (VmHWM)"] = megabytes(memory.peak)
            }
            try SimulationReport(benchmark: "rollout", agents: fleet.agents, enrollSeconds: enrollTime.milliseconds / 1000, figures: figures,
                                 heartbeatLatency: LatencySummary(latencies.service),
                                 heartbeatLatencyFromSchedule: LatencySummary(latencies.fromSchedule),
                                 counters: simulation.stats.counters).print(json: fleet.json)
        }
    }

    struct Heartbeats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sustained heartbeat ingestion at a fixed rate (open loop): achieved rate and latency percentiles.")

        @OptionGroup var fleet: FleetOptions
        @Option(help: "Heartbeats per second across all devices.") var rate = 2000.0
        @Option(help: "Measured seconds (after a warm-up of --warmup seconds).") var duration = 60.0
        @Option(help: "Warm-up seconds, not measured.") var warmup = 5.0
        @Option(help: "Every Nth heartbeat of a device carries an aggregate window (0: never).") var aggregateEvery = 12
        @Flag(help: "Send no nonce, so replies are not signed (an agent before signed replies): the signing cost side by side.")
        var unsignedReplies = false

        func run() async throws {
            let simulation = try SimulatedFleet(options: fleet)
            defer { simulation.stop() }
            let enrollTime = try await simulation.enroll(count: fleet.agents, push: fleet.push)
            log("enrolled \(fleet.agents) devices in \(enrollTime)")
            let interval = Duration.seconds(Double(fleet.agents) / rate)
            let started = ContinuousClock.now
            let measureFrom = started + .seconds(warmup)
            let end = measureFrom + .seconds(duration)
            let signed = !unsignedReplies
            let load = Task { await simulation.heartbeat(every: interval, until: end, aggregateEvery: aggregateEvery, signedReplies: signed) }
            try await Task.sleep(until: measureFrom, clock: .continuous)
            _ = simulation.stats.drainLatencies()
            let cpuBefore = simulation.controllerCPUSeconds
            var maxResident = 0
            var lastProgress = ContinuousClock.now
            while ContinuousClock.now < end {
                try await Task.sleep(for: .milliseconds(500))
                maxResident = max(maxResident, simulation.controllerMemory?.current ?? 0)
                if ContinuousClock.now - lastProgress >= .seconds(10) {
                    log("  \(Int((ContinuousClock.now - measureFrom).milliseconds / 1000)) of \(Int(duration)) s measured")
                    lastProgress = ContinuousClock.now
                }
            }
            let latencies = simulation.stats.drainLatencies()
            let cpuAfter = simulation.controllerCPUSeconds
            await load.value
            var figures: [String: Double] = [
                "target heartbeats per second": rate,
                "achieved heartbeats per second": Double(latencies.service.count) / duration,
                "seconds between a device's heartbeats": interval.milliseconds / 1000,
            ]
            if let memory = simulation.controllerMemory {
                figures["controller RSS MB, max sampled"] = megabytes(maxResident)
                if let cpuBefore, let cpuAfter, !latencies.service.isEmpty {
                    figures["controller CPU microseconds per heartbeat"] = (cpuAfter - cpuBefore) * 1e6 / Double(latencies.service.count)
                    figures["controller CPU cores busy"] = (cpuAfter - cpuBefore) / duration
                }
                figures["controller RSS MB, peak since start (VmHWM)"] = megabytes(memory.peak)
            }
            try SimulationReport(benchmark: "heartbeats", agents: fleet.agents, enrollSeconds: enrollTime.milliseconds / 1000, figures: figures,
                                 heartbeatLatency: LatencySummary(latencies.service),
                                 heartbeatLatencyFromSchedule: LatencySummary(latencies.fromSchedule),
                                 counters: simulation.stats.counters).print(json: fleet.json)
        }
    }
}

func log(_ message: String) {
    FileHandle.standardError.write(Data("fleet-sim: \(message)\n".utf8))
}

/// A valid .bnn of about the requested size: one binary 3x3 convolution whose channel
/// count sets the weight bytes (channels^2 * 9 bits).
enum BenchmarkModel {
    static func data(approximateBytes: Int) throws -> Data {
        let channels = max(64, Int((Double(approximateBytes) * 8 / 9).squareRoot() / 64) * 64)
        var model = SyntheticModels.binaryConvLayer(size: 4, channels: channels, seed: 7)
        model.metadata.name = "sim-model"
        return try ModelWriter.data(for: model)
    }
}
