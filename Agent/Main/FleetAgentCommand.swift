import ArgumentParser
import BitEngine
import FleetAgent
import FleetKit
import Foundation
import Logging

@main
struct FleetAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet-agent",
        abstract: "The BitFleet device agent: installs signed models, infers offline, reports aggregates.",
        discussion: """
        Examples:
          fleet-agent run --data-dir /var/lib/bitfleet-agent --controller http://controller:8080 --enroll-token enr_...
          fleet-agent infer --data-dir /var/lib/bitfleet-agent shoe.pgm
        """,
        subcommands: [Run.self, Infer.self]
    )
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Enroll (once), then serve pushes and local inference and send heartbeats.")

    @Option(help: "Data directory (env BITFLEET_AGENT_DATA_DIR).")
    var dataDir: String = ProcessInfo.processInfo.environment["BITFLEET_AGENT_DATA_DIR"] ?? "/var/lib/bitfleet-agent"
    @Option(help: "Controller URL (env FLEET_CONTROLLER).")
    var controller: String = ProcessInfo.processInfo.environment["FLEET_CONTROLLER"] ?? "http://127.0.0.1:8080"
    @Option(help: "One-time enrollment token (first start only; env BITFLEET_ENROLL_TOKEN).")
    var enrollToken: String? = environment("BITFLEET_ENROLL_TOKEN")
    @Option(help: "Listen address HOST:PORT for pushes and local inference; port 0 picks a free one (env BITFLEET_AGENT_LISTEN).")
    var listen = environment("BITFLEET_AGENT_LISTEN") ?? "127.0.0.1:7070"
    @Option(help: "URL the controller pushes to (default: http://<listen address>; env BITFLEET_AGENT_ADVERTISE).")
    var advertise: String? = environment("BITFLEET_AGENT_ADVERTISE")
    @Option(help: "Device name shown in the fleet (default: host name; env BITFLEET_AGENT_NAME).")
    var name: String = environment("BITFLEET_AGENT_NAME") ?? ProcessInfo.processInfo.hostName
    @Option(help: "Label key=value the device proposes at enrollment (repeatable; env BITFLEET_AGENT_LABELS, comma-separated). Shown as proposedLabels; deployments target only the enrollment token's labels.")
    var label: [String] = environment("BITFLEET_AGENT_LABELS")?.split(separator: ",").map(String.init) ?? []
    @Option(help: "Heartbeat interval in seconds (default: what the controller says).")
    var heartbeatInterval: Double?
    @Option(help: "Aggregate window in seconds.")
    var aggregateWindow: Double = 60
    @Option(help: "Most aggregate windows buffered while offline (older ones merge).")
    var maxBufferedWindows = 1000
    @Option(help: "Inference threads (env BITFLEET_AGENT_THREADS).")
    var threads = environment("BITFLEET_AGENT_THREADS").flatMap(Int.init) ?? 1
    @Option(help: "Largest model (bytes) this device accepts; larger ones fail to install.")
    var maxModelBytes = 512 << 20
    @Option(help: "Free bytes that must remain on the data directory's file system after a download; a deployment that needs more is refused as 'disk full' (env BITFLEET_AGENT_MIN_FREE_BYTES).")
    var minFreeBytes: Int64 = environment("BITFLEET_AGENT_MIN_FREE_BYTES").flatMap { Int64($0) } ?? 64 << 20
    @Option(help: "Bytes per Range request when downloading a model (small values make resumption finer and downloads slower).")
    var chunkBytes = 256 * 1024
    @Option(help: "Seconds a newly activated model is on probation (reverted if it misbehaves).")
    var probation: Double = 60
    @Option(help: "Problems during probation (failed inferences, latency over 10x budget) that trigger a revert.")
    var probationViolations = 3
    @Option(help: "PEM file of the private CA that issued the controller's HTTPS certificate; only it is trusted (env BITFLEET_CA_CERTIFICATE).")
    var caCertificate: String?
    @Option(help: "sha256:<hex> fingerprint of the controller's signing key, for an enrollment token that does not carry one (env BITFLEET_CONTROLLER_KEY_FINGERPRINT). Without it or a token that carries it, the agent refuses to enroll.")
    var controllerKeyFingerprint: String? = environment("BITFLEET_CONTROLLER_KEY_FINGERPRINT")
    @Option(help: "Also serve /metrics and /v1/status on HOST:PORT to anyone who reaches it (default: only loopback clients of --listen get them; env BITFLEET_AGENT_METRICS_LISTEN).")
    var metricsListen: String? = environment("BITFLEET_AGENT_METRICS_LISTEN")
    @Option(help: "Seconds an idle connection to the agent's listeners stays open.")
    var idleTimeout: Double = 10
    @Option(help: "Refused pushes logged and reported as events per minute; the rest are counted in one summary event.")
    var refusedPushEventsPerMinute = 30
    @Option(help: "Most differential-privacy epsilon this device releases over its life; once spent it keeps inferring but sends no more counts, and says so in its status (default: no limit).")
    var epsilonBudget: Double?
    @Option(help: "Log level (trace ... error).")
    var logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"] ?? "info"

    func run() async throws {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
            throw ValidationError("--listen must be HOST:PORT")
        }
        if let heartbeatInterval, !NetworkBounds.heartbeatInterval.contains(heartbeatInterval) {
            throw ValidationError("--heartbeat-interval must be between 1 and 86400 seconds, got \(heartbeatInterval)")
        }
        var fingerprint: String?
        if let controllerKeyFingerprint {
            guard let parsed = ControllerKeyFingerprint.parse(controllerKeyFingerprint) else {
                throw ValidationError("--controller-key-fingerprint must be sha256:<64 hex digits>, got '\(controllerKeyFingerprint)'")
            }
            fingerprint = parsed
        }
        var metricsAddress: (String, Int)?
        if let metricsListen {
            guard let colon = metricsListen.lastIndex(of: ":"), let port = Int(metricsListen[metricsListen.index(after: colon)...]),
                  (0...65535).contains(port) else {
                throw ValidationError("--metrics-listen must be HOST:PORT, got '\(metricsListen)'")
            }
            metricsAddress = (String(metricsListen[..<colon]), port)
        }
        guard let controllerURL = URL(string: controller), controllerURL.scheme != nil else {
            throw ValidationError("--controller must be a URL such as http://controller:8080")
        }
        var labels: [String: String] = [:]
        for entry in label {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--label takes key=value, got '\(entry)'") }
            labels[parts[0]] = parts[1]
        }
        var logger = Logger(label: "bitfleet.agent")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let configuration = AgentConfiguration(
            dataDirectory: URL(fileURLWithPath: dataDir), controllerURL: controllerURL, enrollToken: enrollToken, name: name,
            labels: labels, host: String(listen[..<colon]), port: port, advertisedURL: advertise, heartbeatInterval: heartbeatInterval,
            aggregateWindow: aggregateWindow, maxBufferedWindows: maxBufferedWindows, threads: threads)
        var limited = configuration
        limited.maxModelBytes = maxModelBytes
        limited.probationSeconds = probation
        limited.probationViolations = probationViolations
        limited.minFreeBytes = max(0, minFreeBytes)
        limited.chunkBytes = max(1024, chunkBytes)
        limited.caCertificatePath = caCertificate ?? environment("BITFLEET_CA_CERTIFICATE")
        guard idleTimeout > 0, idleTimeout.isFinite else { throw ValidationError("--idle-timeout must be positive") }
        limited.listenerIdleTimeout = idleTimeout
        guard refusedPushEventsPerMinute >= 1 else { throw ValidationError("--refused-push-events-per-minute must be at least 1") }
        limited.refusedPushEventsPerMinute = refusedPushEventsPerMinute
        limited.controllerKeyFingerprint = fingerprint
        limited.metricsHost = metricsAddress?.0
        limited.metricsPort = metricsAddress?.1
        if let epsilonBudget {
            guard epsilonBudget.isFinite, epsilonBudget >= 0 else {
                throw ValidationError("--epsilon-budget must be a finite number >= 0, got \(epsilonBudget)")
            }
            limited.epsilonBudget = epsilonBudget
        }
        if limited.caCertificatePath != nil, controllerURL.scheme != "https" {
            throw ValidationError("--ca-certificate is for an https:// controller, got \(controller)")
        }
        let runtime = try AgentRuntime(configuration: limited, logger: logger)
        // Refused before listening: an agent that would have to pin whatever key answers
        // never starts enrolling (an enrolled agent needs no token any more).
        let enrolled = await runtime.isEnrolled
        if !enrolled, let token = enrollToken {
            do {
                _ = try EnrollmentTrust.expectedFingerprint(token: EnrollmentToken(parsing: token), configured: fingerprint)
            } catch {
                FileHandle.standardError.write(Data("fleet-agent: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        await runtime.loadInstalledModel()
        let serverConfiguration = limited
        let advertised = advertise
        let directory = dataDir
        let log = logger
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await AgentServer.run(runtime, configuration: serverConfiguration, logger: log) { url in
                    await runtime.setPushURL(advertised ?? url)
                    try? Data(url.utf8).write(to: URL(fileURLWithPath: directory).appendingPathComponent("agent.url"))
                    print("BitFleet agent listening on \(url)")
                    fflush(nil)
                    // Heartbeats start once the push address is known.
                    Task { await runtime.run() }
                }
            }
            try await group.next()
            group.cancelAll()
        }
        await runtime.persistAggregates()
    }
}

struct Infer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify files with the active model, through the local agent (so aggregates count them).",
        discussion: """
        Files: .npy, PGM images or raw float32 tensors in the model's input layout. --idx \
        sends images from an IDX file (e.g. Fashion-MNIST's test set) as PGM images.

        Examples:
          fleet-agent infer --data-dir /var/lib/bitfleet-agent shoe.pgm
          fleet-agent infer --idx /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --limit 200
        """
    )

    @Option(help: "The agent's data directory (to find its local address).")
    var dataDir: String = ProcessInfo.processInfo.environment["BITFLEET_AGENT_DATA_DIR"] ?? "/var/lib/bitfleet-agent"
    @Flag(help: "Print JSON lines.") var json = false
    @Option(help: "IDX image file (plain or .gz) to send image by image.") var idx: String?
    @Option(help: "With --idx: how many images.") var limit = 100
    @Option(help: "With --idx: index of the first image.") var offset = 0
    @Argument(help: "Input files.") var files: [String] = []

    func validate() throws {
        guard !files.isEmpty || idx != nil else { throw ValidationError("give input files or --idx") }
    }

    func run() async throws {
        guard let address = try? String(contentsOfFile: URL(fileURLWithPath: dataDir).appendingPathComponent("agent.url").path, encoding: .utf8),
              let url = URL(string: address.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ValidationError("no running agent found in \(dataDir) (agent.url missing); start `fleet-agent run` first")
        }
        let client = FleetHTTPClient(baseURL: url, token: nil, timeout: 30)
        var failures = 0
        var inputs: [(String, Data?)] = files.map { ($0, FileManager.default.contents(atPath: $0)) }
        if let idx {
            let images = try IDXFile(contentsOf: URL(fileURLWithPath: idx))
            guard images.dimensions.count == 3 else { throw ValidationError("\(idx) is not an IDX image file") }
            for index in offset..<min(images.count, offset + limit) {
                let pgm = PGMImage(width: images.dimensions[2], height: images.dimensions[1], pixels: images.item(index).map(Int.init))
                inputs.append(("\(URL(fileURLWithPath: idx).lastPathComponent)#\(index)", pgm.data))
            }
        }
        for (file, contents) in inputs {
            guard let body = contents else {
                print("\(file): cannot read")
                failures += 1
                continue
            }
            do {
                let (data, _) = try await client.send("POST", "/v1/infer", body: body, contentType: "application/octet-stream")
                let result = try FleetJSON.decoder.decode(InferenceResponse.self, from: data)
                if json {
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    print("\(file): class \(result.topClass)\(result.label.map { " \($0)" } ?? "") (confidence \(String(format: "%.3f", result.confidence)), \(result.model) \(result.version), \(String(format: "%.2f", result.latencyMs)) ms)")
                }
            } catch {
                print("\(file): \(error)")
                failures += 1
            }
        }
        if failures > 0 { throw ExitCode(1) }
    }
}

/// A non-empty environment variable (systemd EnvironmentFile keys may be present but empty).
func environment(_ key: String) -> String? {
    guard let value = ProcessInfo.processInfo.environment[key], !value.isEmpty else { return nil }
    return value
}
