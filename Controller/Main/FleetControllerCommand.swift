import ArgumentParser
import FleetController
import Foundation
import Logging

@main
struct FleetControllerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet-controller",
        abstract: "The BitFleet controller: model registry, devices, signed deployments, metrics.",
        discussion: """
        Examples:
          fleet-controller serve --data-dir /var/lib/bitfleet --listen 0.0.0.0:8080
          fleet-controller admin-token --data-dir /var/lib/bitfleet
          fleet-controller backup /backups/fleet.sqlite --data-dir /var/lib/bitfleet
        """,
        subcommands: [Serve.self, AdminToken.self, Backup.self, RotateSigningKey.self]
    )
}

struct DataDirectoryOption: ParsableArguments {
    @Option(help: "Data directory (env BITFLEET_DATA_DIR).")
    var dataDir: String = ProcessInfo.processInfo.environment["BITFLEET_DATA_DIR"] ?? "/var/lib/bitfleet"

    var url: URL { URL(fileURLWithPath: dataDir) }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the controller.",
        discussion: """
        On first start it creates the SQLite database, an Ed25519 signing key (mode 0600) and \
        an admin token, which it prints once (and writes to --admin-token-file if given).
        """
    )

    @OptionGroup var data: DataDirectoryOption
    @Option(help: "Address to listen on, HOST:PORT (env BITFLEET_LISTEN); port 0 picks a free one.")
    var listen: String = ProcessInfo.processInfo.environment["BITFLEET_LISTEN"] ?? "127.0.0.1:8080"
    @Option(help: "Seconds between agent heartbeats (online/stale/offline derive from it).")
    var heartbeatInterval: Double = 30
    @Option(help: "Failed authentications per client address per minute before it gets 429 for everything.")
    var authFailureLimit = 30
    @Option(help: "On first start, also write the admin token to this file (mode 0600).")
    var adminTokenFile: String?
    @Option(help: "PEM certificate chain: serve HTTPS (with --tls-key; env BITFLEET_TLS_CERTIFICATE).")
    var tlsCertificate: String?
    @Option(help: "PEM private key of --tls-certificate, readable by the controller only (env BITFLEET_TLS_KEY).")
    var tlsKey: String?
    @Option(help: "Seconds an idle keep-alive connection stays open (devices reconnect for their next heartbeat).")
    var idleTimeout: Double = 2
    @Option(help: "Days the privacy ledger keeps an entry per heartbeat before it is deleted.")
    var ledgerRetentionDays: Double = 30
    @Option(help: "Days the audit log keeps an entry.")
    var auditRetentionDays: Double = 365
    @Option(help: "Days device events (refused manifests, install failures...) are kept.")
    var eventRetentionDays: Double = 30
    @Option(help: "Days aggregate metric windows are kept (by window end).")
    var metricsRetentionDays: Double = 90
    @Option(help: "Most inferences per second one device can plausibly run; counts above it times the time they cover are refused.")
    var maxInferenceRate: Double = 50_000
    @Option(help: "Items (heartbeats, reports, events, windows) one device may send at once before it gets 429.")
    var deviceIngestBurst: Double = 12_000
    @Option(help: "Items one device regains per minute after its burst is spent.")
    var deviceIngestPerMinute: Double = 600
    @Option(help: "Model blob transfers streamed at once; more wait their turn (bounds memory when a whole fleet downloads).")
    var maxConcurrentTransfers = 32
    @Option(help: "Model blob requests that may wait for a transfer slot; more are answered 503 with Retry-After (devices come back).")
    var maxQueuedTransfers = 32
    @Option(help: "Seconds a push waits for an agent (connect and each read) before it counts as failed.")
    var pushTimeout: Double = 5
    @Option(help: "Longest wait, in seconds, between retries of a failed push (the backoff doubles up to it).")
    var pushMaxBackoff: Double = 60
    @Option(help: "Failed pushes after which a device that also stopped heartbeating is marked failed (unreachable).")
    var unreachablePushAttempts = 8
    @Option(help: "Seconds without a heartbeat before a device's stalled deployment is marked failed (unreachable); default 10 heartbeat intervals.")
    var unreachableAfter: Double?
    @Option(help: "Bytes the data directory keeps free: uploads that would leave less are refused with 507 (env BITFLEET_MIN_FREE_BYTES).")
    var minFreeBytes: Int64 = ProcessInfo.processInfo.environment["BITFLEET_MIN_FREE_BYTES"].flatMap { Int64($0) } ?? (64 << 20)
    @Option(help: "Log level: trace, debug, info, notice, warning, error (env LOG_LEVEL).")
    var logLevel: String = ProcessInfo.processInfo.environment["LOG_LEVEL"] ?? "info"

    func run() async throws {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen must be HOST:PORT, got '\(listen)'")
        }
        guard (1...86_400).contains(heartbeatInterval) else {
            throw ValidationError("--heartbeat-interval must be between 1 and 86400 seconds, got \(heartbeatInterval)")
        }
        let host = String(listen[..<colon])
        var logger = Logger(label: "bitfleet.controller")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        var configuration = ControllerConfiguration(dataDirectory: data.url, host: host, port: port, heartbeatInterval: heartbeatInterval)
        configuration.pushInterval = 0.5
        configuration.authFailureLimit = authFailureLimit
        configuration.maxConcurrentTransfers = maxConcurrentTransfers
        configuration.maxQueuedTransfers = maxQueuedTransfers
        guard ledgerRetentionDays > 0, maxConcurrentTransfers > 0, idleTimeout > 0, maxQueuedTransfers >= 0 else {
            throw ValidationError("--ledger-retention-days, --max-concurrent-transfers and --idle-timeout must be positive, --max-queued-transfers not negative")
        }
        configuration.idleTimeout = idleTimeout
        configuration.ledgerRetentionDays = ledgerRetentionDays
        guard [auditRetentionDays, eventRetentionDays, metricsRetentionDays, maxInferenceRate, deviceIngestBurst, deviceIngestPerMinute]
            .allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw ValidationError("--audit-retention-days, --event-retention-days, --metrics-retention-days, --max-inference-rate, --device-ingest-burst and --device-ingest-per-minute must be positive")
        }
        configuration.auditRetentionDays = auditRetentionDays
        configuration.eventRetentionDays = eventRetentionDays
        configuration.metricsRetentionDays = metricsRetentionDays
        configuration.maxInferencesPerSecond = maxInferenceRate
        configuration.deviceIngestBurst = deviceIngestBurst
        configuration.deviceIngestPerMinute = deviceIngestPerMinute
        let environment = ProcessInfo.processInfo.environment
        configuration.tlsCertificatePath = tlsCertificate ?? environment["BITFLEET_TLS_CERTIFICATE"]
        configuration.tlsKeyPath = tlsKey ?? environment["BITFLEET_TLS_KEY"]
        guard pushTimeout > 0, pushMaxBackoff > 0, unreachablePushAttempts >= 1, (unreachableAfter ?? 1) > 0, minFreeBytes >= 0 else {
            throw ValidationError("--push-timeout, --push-max-backoff and --unreachable-after must be positive, --unreachable-push-attempts at least 1, --min-free-bytes not negative")
        }
        configuration.pushTimeout = pushTimeout
        configuration.pushMaxBackoff = pushMaxBackoff
        configuration.unreachablePushAttempts = unreachablePushAttempts
        if let unreachableAfter { configuration.unreachableAfter = unreachableAfter }
        configuration.minFreeBytes = minFreeBytes
        let tokenFile = adminTokenFile
        let dataDir = data.url
        try await ControllerServer.run(configuration, logger: logger) { startup, url in
            try? Data(url.utf8).write(to: dataDir.appendingPathComponent("controller.url"))
            print("BitFleet controller listening on \(url) (fleet \(startup.fleetID))")
            if let token = startup.newAdminToken {
                print("admin token (shown once; rotate with `fleet-controller admin-token`): \(token)")
                if let tokenFile { try? writeSecret(token, to: tokenFile) }
            }
            fflush(nil)
        }
    }
}

struct AdminToken: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin-token",
        abstract: "Replace the admin token and print the new one (the old one stops working)."
    )

    @OptionGroup var data: DataDirectoryOption
    @Option(help: "Also write the token to this file (mode 0600).") var output: String?

    func run() async throws {
        let token = try await ControllerServer.rotateAdminToken(dataDirectory: data.url)
        if let output { try writeSecret(token, to: output) }
        print(token)
    }
}

struct RotateSigningKey: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-signing-key",
        abstract: "Replace the Ed25519 signing key; agents learn the new key from an announcement signed by the old one.",
        discussion: """
        Safe while the controller runs: it signs with the new key within a second, and agents \
        pin it at their next heartbeat by following the announcement (docs/OPERATIONS.md). \
        Enrollment tokens made before still enroll (the chain leads from their key to the new one).
        """
    )

    @OptionGroup var data: DataDirectoryOption

    func run() async throws {
        let key = try await ControllerServer.rotateSigningKey(dataDirectory: data.url)
        print("new signing public key: \(key)")
        print("fingerprint: \(ControllerServer.fingerprint(ofPublicKey: key))")
        print("a running controller signs with it within a second; agents pin it at their next heartbeat")
    }
}

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the live database to FILE with SQLite's online backup (safe while serving)."
    )

    @OptionGroup var data: DataDirectoryOption
    @Argument(help: "Destination file.") var file: String

    func run() async throws {
        try ControllerServer.backup(dataDirectory: data.url, to: URL(fileURLWithPath: file))
        print("backed up \(data.url.appendingPathComponent("fleet.sqlite").path) to \(file)")
    }
}

func writeSecret(_ secret: String, to path: String) throws {
    // Created 0600 before the secret is written, so it is never readable by others.
    guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) else {
        throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
    }
    try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
    try Data((secret + "\n").utf8).write(to: URL(fileURLWithPath: path))
}
