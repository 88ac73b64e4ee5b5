import ArgumentParser
import FleetKit
import Foundation
import ModelImport
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct PushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Upload a .bnn (or ONNX) model to the controller's registry.",
        discussion: """
        The version label is assigned in order (v1, v2, ...) unless given. An ONNX model is \
        converted by the controller. If it keeps its weights in external data files beside \
        it (PyTorch's dynamo exporter writes model.onnx + model.onnx.data), those are read \
        (only from the model's folder) and sent inside the model.

        Examples:
          fleetctl model push Models/fashion-mnist/bnn-cnn.bnn --name fashion-cnn
          fleetctl model push model.onnx --name detector --version v7   # with model.onnx.data beside it
        """
    )

    @OptionGroup var options: ControllerOptions
    @Argument(help: "Model file.") var file: String
    @Option(help: "Model name (default: the name in the file).") var name: String?
    @Option(help: "Version label (default: next vN).") var version: String?

    func run() async throws {
        guard var data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read \(file)") }
        let external = data.starts(with: [0x89, 0x42, 0x4E, 0x4E]) ? [] : ONNXModelFile.externalDataLocations(data)
        if !external.isEmpty {
            do {
                let embedded = try ONNXModelFile.selfContained(contentsOf: URL(fileURLWithPath: file))
                data = embedded.data
                if !options.json { FileHandle.standardError.write(Data("sending \(file) with its external data \(embedded.embedded.joined(separator: ", ")) (\(formatBytes(data.count)))\n".utf8)) }
            } catch let error as ImportError {
                throw CLIError("cannot read the external data of \(file): \(error)")
            }
        }
        var query: [String] = []
        if let name { query.append("name=\(name.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? name)") }
        if let version { query.append("version=\(version.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? version)") }
        let progress = UploadProgress(total: data.count, enabled: !options.json && isatty(2) != 0)
        let client = try options.client(timeout: 300, progress: progress)
        progress.draw(sent: 0)
        let (body, _) = try await callController {
            try await client.send("POST", "/api/v1/models" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")), body: data,
                                  contentType: "application/octet-stream")
        }
        progress.draw(sent: data.count)
        progress.finish()
        let info = try FleetJSON.decoder.decode(ModelVersionInfo.self, from: body)
        try options.emit(info) {
            print("pushed \(info.name) \(info.version) (\(formatBytes(info.size)), sha256 \(info.sha256.prefix(12))…)")
        }
    }
}

/// A progress bar on stderr, fed by URLSession's upload callbacks or, over HTTPS with a
/// private CA, by `PinnedCATransport`'s.
final class UploadProgress: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    let total: Int
    let enabled: Bool
    private let lock = NSLock()
    private var last = -1

    init(total: Int, enabled: Bool) {
        self.total = total
        self.enabled = enabled
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didSendBodyData bytesSent: Int64, totalBytesSent: Int64,
                    totalBytesExpectedToSend: Int64) {
        draw(sent: Int(totalBytesSent))
    }

    func draw(sent: Int) {
        guard enabled, total > 0 else { return }
        let percent = min(100, sent * 100 / total)
        lock.lock()
        defer { lock.unlock() }
        guard percent != last else { return }
        last = percent
        let width = 30
        let filled = width * percent / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        FileHandle.standardError.write(Data("\rupload [\(bar)] \(percent)% of \(formatBytes(total))".utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

struct ListModelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List model versions in the registry.",
                                                    discussion: "Example:\n  fleetctl model list --json")
    @OptionGroup var options: ControllerOptions

    func run() async throws {
        let client = try options.client()
        let models = try await callController { try await client.json("GET", "/api/v1/models", as: [ModelVersionInfo].self) }
        try options.emit(models) {
            print(table([["NAME", "VERSION", "SIZE", "BINARY MACS", "SHA256", "CREATED", "BY"]] + models.map {
                [$0.name, $0.version, formatBytes($0.size), formatCount($0.binaryMACs), String($0.sha256.prefix(12)), ago($0.createdAt), $0.createdBy]
            }))
        }
    }
}

struct DeployCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy",
        abstract: "Deploy things to the fleet.",
        subcommands: [DeployModelCommand.self]
    )
}

struct DeployModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Make a model version the desired one for all devices, a label selector, or listed devices.",
        discussion: """
        Every targeted device gets a signed manifest (pushed at once, or in its next \
        heartbeat reply if it is offline). --wait shows progress until every device is active \
        or failed. With --stages the deployment is a staged rollout (docs/ROLLOUTS.md): \
        canaries first, each stage advancing after --soak when its success share is met, \
        halting when more than --max-failures of the finished devices failed.

        Examples:
          fleetctl deploy model v3                       # the only model, all devices
          fleetctl deploy model v3 --name fashion-cnn --label site=berlin
          fleetctl deploy model v2 --device dev_abc --device dev_def --wait
          fleetctl deploy model v3 --stages 5%,25%,100% --soak 10m --max-failures 5% --min-devices 3 --auto-rollback
          fleetctl deploy model v3 --shadow --min-agreement 97% --shadow-samples 500 --stages 10%,100%
        """
    )

    @OptionGroup var options: ControllerOptions
    @Argument(help: "Version label, e.g. v3.") var version: String
    @Option(help: "Model name (needed when several exist).") var name: String?
    @Option(help: "Only devices with this label, key=value (repeatable).") var label: [String] = []
    @Option(help: "Only these device ids (repeatable).") var device: [String] = []
    @Flag(help: "Wait until every targeted device is active or failed.") var wait = false
    @Option(help: "Give up waiting after this long.") var timeout = "10m"
    @Option(help: "Staged rollout: cumulative percentages, e.g. 5%,25%,100%.") var stages: String?
    @Option(help: "Rollout: time each stage must run before the next starts.") var soak = "0s"
    @Option(help: "Rollout: halt when more than this share of finished devices failed.") var maxFailures = "5%"
    @Option(help: "Rollout: devices that must finish before the failure share counts.") var minDevices = 3
    @Flag(help: "Rollout: roll back automatically when halted.") var autoRollback = false
    @Flag(help: "Shadow evaluation: devices run the new version next to the active one and report agreement; promote at the end.") var shadow = false
    @Option(help: "Shadow: required top-1 agreement with the active model.") var minAgreement = "97%"
    @Option(help: "Shadow: samples needed before a stage's agreement counts.") var shadowSamples = 500

    func run() async throws {
        let client = try options.client()
        if stages != nil || shadow {
            let gate = shadow ? ShadowGate(minAgreement: try parsePercent(minAgreement), minSamples: shadowSamples) : nil
            let request = RolloutRequest(model: name, version: version, target: DeploymentTarget(labels: try parseLabels(label), devices: device),
                                         stages: try RolloutPlan.parseStages(stages ?? "100%"), soakSeconds: soak == "0s" ? 0 : try parseDuration(soak),
                                         maxFailureFraction: try parsePercent(maxFailures), minDevices: minDevices, autoRollback: autoRollback,
                                         shadow: gate)
            let rollout = try await callController { try await client.json("POST", "/api/v1/rollouts", body: request, as: RolloutInfo.self) }
            try options.emit(rollout) {
                print("rollout \(rollout.id): \(rollout.model) \(rollout.version) in stages \(rollout.stages.map { "\(Int($0.percent))%" }.joined(separator: ", ")), sequence \(rollout.sequence)")
                print("follow it with: fleetctl rollout show \(rollout.id) --watch")
            }
            return
        }
        let request = DeploymentRequest(model: name, version: version, target: DeploymentTarget(labels: try parseLabels(label), devices: device))
        var info = try await callController { try await client.json("POST", "/api/v1/deployments", body: request, as: DeploymentInfo.self) }
        if !options.json {
            print("deployment \(info.id): \(info.model) \(info.version) to \(info.devices?.count ?? 0) device(s), sequence \(info.sequence)")
        }
        if wait {
            let deadline = Date().addingTimeInterval(try parseDuration(timeout))
            while true {
                info = try await callController { try await client.json("GET", "/api/v1/deployments/\(info.id)", as: DeploymentInfo.self) }
                let total = info.devices?.count ?? 0
                let done = (info.counts["active"] ?? 0) + (info.counts["failed"] ?? 0)
                if !options.json && isatty(2) != 0 {
                    FileHandle.standardError.write(Data("\r\(progressLine(info))".utf8))
                }
                if done >= total || Date() > deadline { break }
                try await Task.sleep(for: .milliseconds(500))
            }
            if !options.json && isatty(2) != 0 { FileHandle.standardError.write(Data("\n".utf8)) }
        }
        try options.emit(info) {
            if !wait { return }
            print(progressLine(info))
            for row in info.devices ?? [] where row.state == .failed {
                print("  \(row.deviceName) (\(row.deviceID)) failed: \(row.reason ?? "no reason")")
            }
        }
        if wait, (info.counts["failed"] ?? 0) > 0 || (info.counts["active"] ?? 0) < (info.devices?.count ?? 0) {
            throw ExitCode(1)
        }
    }

    func progressLine(_ info: DeploymentInfo) -> String {
        let total = info.devices?.count ?? 0
        let active = info.counts["active"] ?? 0
        let width = 30
        let filled = total == 0 ? 0 : width * active / total
        let states = DeploymentState.allCases.compactMap { state in info.counts[state.rawValue].flatMap { $0 > 0 ? "\(state.rawValue) \($0)" : nil } }
        return "[\(String(repeating: "#", count: filled))\(String(repeating: "-", count: width - filled))] \(active)/\(total) active (\(states.joined(separator: ", ")))"
    }
}

struct DevicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "devices", abstract: "List devices.", subcommands: [ListDevicesCommand.self],
                                                    defaultSubcommand: ListDevicesCommand.self)
}

struct ListDevicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List enrolled devices with status and running model.",
        discussion: "Examples:\n  fleetctl devices list\n  fleetctl devices list --label site=berlin --status online --json")
    @OptionGroup var options: ControllerOptions
    @Option(help: "Filter by label key=value (repeatable).") var label: [String] = []
    @Option(help: "Filter by status: online, stale, offline, revoked.") var status: String?

    func run() async throws {
        let client = try options.client()
        var query = label.map { "label=\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0)" }
        if let status { query.append("status=\(status)") }
        let devices = try await callController {
            try await client.json("GET", "/api/v1/devices" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")), as: [DeviceInfo].self)
        }
        try options.emit(devices) {
            print(table([["ID", "NAME", "STATUS", "MODEL", "DEPLOYMENT", "LAST SEEN", "LABELS"]] + devices.map { d in
                [d.id, d.name, d.status, d.activeModel.map { "\($0.name) \($0.version)" } ?? "-",
                 d.deploymentState.map { "\($0.rawValue)" + (d.desiredSequence.map { " #\($0)" } ?? "") } ?? "-",
                 ago(d.lastSeen), d.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")]
            }))
        }
    }
}

struct DeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "device", abstract: "Show or revoke one device.",
                                                    subcommands: [ShowDeviceCommand.self, RevokeDeviceCommand.self])
}

struct ShowDeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one device and its recent events.",
                                                    discussion: "Example:\n  fleetctl device show dev_Ab3x")
    @OptionGroup var options: ControllerOptions
    @Argument(help: "Device id.") var id: String

    struct Report: Encodable { var device: DeviceInfo; var events: [DeviceEvent]; var uploads: [UploadRecord] }

    func run() async throws {
        let client = try options.client()
        let device = try await callController { try await client.json("GET", "/api/v1/devices/\(id)", as: DeviceInfo.self) }
        let events = try await callController { try await client.json("GET", "/api/v1/devices/\(id)/events", as: [DeviceEvent].self) }
        let uploads = try await callController { try await client.json("GET", "/api/v1/devices/\(id)/uploads", as: [UploadRecord].self) }
        try options.emit(Report(device: device, events: events, uploads: uploads)) {
            print("\(device.name) (\(device.id)): \(device.status), last seen \(ago(device.lastSeen)), agent \(device.agentVersion)")
            print("labels: \(device.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))")
            print("push address: \(device.pushURL.isEmpty ? "-" : device.pushURL)")
            print("running: \(device.activeModel.map { "\($0.name) \($0.version) (sequence \($0.sequence), sha256 \($0.sha256.prefix(12))…)" } ?? "no model")")
            if let state = device.deploymentState {
                print("desired deployment #\(device.desiredSequence ?? 0): \(state.rawValue)\(device.deploymentReason.map { " - \($0)" } ?? "")")
            }
            for event in events.prefix(10) { print("event \(ago(event.at)): \(event.kind): \(event.message)") }
            print("privacy ledger (\(uploads.count) uploads, newest first):")
            for upload in uploads.prefix(5) {
                print("  \(ago(upload.at)): \(upload.bytes) bytes: \(upload.fields.joined(separator: "; "))\(upload.epsilonSpent.map { ", epsilon spent \($0)" } ?? "")")
            }
        }
    }
}

struct RevokeDeviceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a device's credential; it is refused at once.",
                                                    discussion: "Example:\n  fleetctl device revoke dev_Ab3x")
    @OptionGroup var options: ControllerOptions
    @Argument(help: "Device id.") var id: String

    func run() async throws {
        let client = try options.client()
        let device = try await callController { try await client.json("POST", "/api/v1/devices/\(id)/revoke", as: DeviceInfo.self) }
        try options.emit(device) { print("revoked \(device.name) (\(device.id))") }
    }
}

struct EnrollTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "enroll-token", abstract: "Manage enrollment tokens.",
                                                    subcommands: [CreateEnrollTokenCommand.self])
}

struct CreateEnrollTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a one-time enrollment token for one device.",
        discussion: """
        The token is `enr_<secret>.<hex>`: the hex is the SHA-256 fingerprint of the controller's \
        signing key, so the agent that uses it pins only that key (kubeadm-style). It goes to \
        stdout alone (for scripts); the fingerprint is also printed on stderr as sha256:<hex>, \
        for `fleet-agent run --controller-key-fingerprint`.

        Examples:
          fleetctl enroll-token create --expires 24h
          fleetctl enroll-token create --label site=berlin --json
        """)
    @OptionGroup var options: ControllerOptions
    @Option(help: "Lifetime, e.g. 30m, 24h, 7d.") var expires = "24h"
    @Option(help: "Labels the device gets, key=value (repeatable).") var label: [String] = []

    func run() async throws {
        let client = try options.client()
        let request = EnrollmentTokenRequest(expiresInSeconds: Int(try parseDuration(expires)), labels: try parseLabels(label))
        let token = try await callController { try await client.json("POST", "/api/v1/enrollment-tokens", body: request, as: EnrollmentTokenResponse.self) }
        try options.emit(token) {
            print(token.token)
            if let fingerprint = token.controllerKeyFingerprint {
                FileHandle.standardError.write(Data("controller key fingerprint: \(fingerprint)\n".utf8))
            }
        }
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Fleet summary: device health, versions, latest deployment.",
                                                    discussion: "Example:\n  fleetctl status --json")
    @OptionGroup var options: ControllerOptions

    func run() async throws {
        let client = try options.client()
        let status = try await callController { try await client.json("GET", "/api/v1/status", as: FleetStatus.self) }
        try options.emit(status) {
            print("devices: \(status.devices) (online \(status.online), stale \(status.stale), offline \(status.offline), revoked \(status.revoked))")
            print("  online = seen within \(Int(status.onlineThresholdSeconds))s, offline = not seen for \(Int(status.offlineThresholdSeconds))s")
            for (version, count) in status.byModelVersion.sorted(by: { $0.key < $1.key }) { print("running \(version): \(count)") }
            if let d = status.latestDeployment {
                let counts = DeploymentState.allCases.compactMap { s in d.counts[s.rawValue].flatMap { $0 > 0 ? "\(s.rawValue) \($0)" : nil } }
                print("latest deployment #\(d.sequence): \(d.model) \(d.version), \(counts.joined(separator: ", "))")
            }
        }
    }
}

struct MetricsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics", abstract: "Aggregate inference metrics reported by devices (counts and histograms only).",
        discussion: "Examples:\n  fleetctl metrics\n  fleetctl metrics --model fashion-cnn --since 24h --json")
    @OptionGroup var options: ControllerOptions
    @Option(help: "Only this model.") var model: String?
    @Option(help: "Time range back from now.") var since = "1h"

    func run() async throws {
        let client = try options.client()
        var path = "/api/v1/metrics?since=\(Int(try parseDuration(since)))"
        if let model { path += "&model=\(model)" }
        let summary = try await callController { try await client.json("GET", path, as: MetricsSummary.self) }
        try options.emit(summary) {
            if summary.entries.isEmpty { print("no inference reported in the last \(since)") }
            print(table([["MODEL", "VERSION", "DEVICES", "INFERENCES", "ERRORS", "P50 MS", "P95 MS", "P99 MS", "MEAN CONFIDENCE", "TOP CLASSES"]] + summary.entries.map { e in
                let top = e.topClasses(3).map { "\($0.name):\($0.count)" }.joined(separator: " ")
                return [e.model, e.version, "\(e.devices)", "\(e.inferences)", "\(e.errors)", e.latencyP50Ms.map { "\($0)" } ?? "-",
                        e.latencyP95Ms.map { "\($0)" } ?? "-", e.latencyP99Ms.map { "\($0)" } ?? "-",
                        e.meanConfidence.map { String(format: "%.3f", $0) } ?? "-", top]
            }))
        }
    }
}

func parsePercent(_ text: String) throws -> Double {
    guard let value = Double(text.replacingOccurrences(of: "%", with: "")), (0...100).contains(value) else {
        throw ValidationError("'\(text)' is not a percentage like 5%")
    }
    return value / 100
}

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Show the audit log: admin actions and refused admin requests, newest first.",
        discussion: "Examples:\n  fleetctl audit\n  fleetctl audit --since 7d --json")
    @OptionGroup var options: ControllerOptions
    @Option(help: "Time range back from now.") var since = "24h"

    func run() async throws {
        let client = try options.client()
        let entries = try await callController {
            try await client.json("GET", "/api/v1/audit?since=\(Int(try parseDuration(since)))", as: [AuditEntry].self)
        }
        try options.emit(entries) {
            let formatter = ISO8601DateFormatter()
            print(table([["WHEN", "WHO", "FROM", "ACTION", "STATUS"]] + entries.map {
                [formatter.string(from: $0.at), $0.actor, $0.remote, $0.action, "\($0.status)"]
            }))
        }
    }
}

struct PrivacyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "privacy", abstract: "Show or set the fleet's privacy settings for aggregates (docs/PRIVACY.md).",
        discussion: """
        Examples:
          fleetctl privacy
          fleetctl privacy --min-count 5 --epsilon 1.0     # suppression below 5, Laplace noise, epsilon 1 per released window or shadow report
          fleetctl privacy --min-count 0 --no-noise         # both off
        """)
    @OptionGroup var options: ControllerOptions
    @Option(help: "Withhold class counts below this (0 = off).") var minCount: Int?
    @Option(help: "Per-window epsilon of the Laplace mechanism.") var epsilon: Double?
    @Flag(help: "Turn the Laplace noise off.") var noNoise = false

    func run() async throws {
        let client = try options.client()
        var settings = try await callController { try await client.json("GET", "/api/v1/privacy", as: PrivacySettings.self) }
        if minCount != nil || epsilon != nil || noNoise {
            if let minCount { settings.minCount = minCount }
            if let epsilon { settings.epsilon = epsilon }
            if noNoise { settings.epsilon = nil }
            settings = try await callController { try await client.json("PUT", "/api/v1/privacy", body: settings, as: PrivacySettings.self) }
        }
        try options.emit(settings) {
            print("minimum count: \(settings.minCount == 0 ? "off" : "\(settings.minCount)")")
            print("Laplace noise: \(settings.epsilon.map { "epsilon \($0) per released window or shadow report (scale \(PrivacySettings.sensitivity / $0))" } ?? "off")")
        }
    }
}

struct DashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard", abstract: "Print a one-time sign-in link to the controller's web dashboard (valid 2 minutes).",
        discussion: "Example:\n  fleetctl dashboard     # open the printed URL in a browser")
    @OptionGroup var options: ControllerOptions

    func run() async throws {
        let client = try options.client()
        let link = try await callController { try await client.json("POST", "/api/v1/login-links", as: [String: String].self) }
        let url = client.url(link["path"] ?? "/login")
        try options.emit(["url": url.absoluteString]) { print(url.absoluteString) }
    }
}
