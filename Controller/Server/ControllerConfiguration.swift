import Foundation

/// Settings of one controller process (flags, environment or a config file).
public struct ControllerConfiguration: Sendable {
    public var dataDirectory: URL
    public var host: String
    public var port: Int
    /// Base URL agents use to reach this controller in manifests (blob paths are relative).
    public var heartbeatInterval: Double
    /// A device is online when seen within this many seconds, stale within `offlineAfter`.
    public var onlineWithin: Double
    public var offlineAfter: Double
    public var maxModelBytes: Int
    public var maxJSONBytes: Int
    public var pushInterval: Double
    /// Failed authentications per address per minute before it is refused (429).
    public var authFailureLimit = 30
    /// PEM certificate chain and private key: when both are set the controller serves
    /// HTTPS only (HummingbirdTLS); otherwise plain HTTP, for a TLS-terminating proxy.
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    /// Seconds an idle keep-alive connection stays open.
    public var idleTimeout: Double = 2
    /// Days the privacy ledger keeps each heartbeat's entry.
    public var ledgerRetentionDays: Double = 30
    /// Days the audit log, device events and metric windows are kept (RecordRetention).
    public var auditRetentionDays: Double = 365
    public var eventRetentionDays: Double = 30
    public var metricsRetentionDays: Double = 90
    /// Most inferences per second one device can plausibly run: counts above this times
    /// the time they cover are refused at ingestion (IngestionPlausibility).
    public var maxInferencesPerSecond: Double = 50_000
    /// Per-device ingestion budget: a heartbeat costs 1 plus its reports, events, windows
    /// and shadow reports; a device may spend `deviceIngestBurst` at once and regains
    /// `deviceIngestPerMinute` a minute (DeviceIngestLimiter). An honest agent spends a few
    /// a minute.
    public var deviceIngestBurst: Double = 12_000
    public var deviceIngestPerMinute: Double = 600
    /// Blob downloads streamed at the same time (each holds a chunk and NIO's write buffer,
    /// about 150 KB). 32 Raspberry Pis on Wi-Fi at 30 Mbit/s each already fill a gigabit
    /// uplink; more slots only add memory.
    public var maxConcurrentTransfers = 32
    /// Blob requests allowed to wait for a transfer slot; beyond that a request is answered
    /// 503 with Retry-After at once (memory stays bounded however many devices download).
    public var maxQueuedTransfers = 32
    /// Seconds a push may wait for the agent's answer (connect, send, each read) before it
    /// counts as failed; a black-holed agent must never hold a push forever.
    public var pushTimeout: Double = 5
    /// Upper bound of the exponential backoff between push attempts, in seconds.
    public var pushMaxBackoff: Double = 60
    /// A device's deployment is marked `failed` ("unreachable: ...") once this many pushes
    /// failed and it has not heartbeated for `unreachableAfter` seconds (see docs/ROLLOUTS.md).
    public var unreachablePushAttempts = 8
    public var unreachableAfter: Double
    /// Bytes the data directory must keep free after storing an upload; uploads that would
    /// eat into it are refused with 507 so the database always has room to keep working.
    public var minFreeBytes: Int64 = 64 << 20

    public init(dataDirectory: URL, host: String = "127.0.0.1", port: Int = 8080, heartbeatInterval: Double = 30,
                maxModelBytes: Int = 256 << 20, maxJSONBytes: Int = 4 << 20, pushInterval: Double = 0.5) {
        self.dataDirectory = dataDirectory
        self.host = host
        self.port = port
        self.heartbeatInterval = heartbeatInterval
        self.onlineWithin = heartbeatInterval * 3
        self.offlineAfter = heartbeatInterval * 10
        self.unreachableAfter = heartbeatInterval * 10
        self.maxModelBytes = maxModelBytes
        self.maxJSONBytes = maxJSONBytes
        self.pushInterval = pushInterval
    }
}
