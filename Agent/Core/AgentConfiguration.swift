import Foundation

public struct AgentConfiguration: Sendable {
    public var dataDirectory: URL
    public var controllerURL: URL
    public var enrollToken: String?
    public var name: String
    public var labels: [String: String]
    /// Where the agent listens for pushes and local inference.
    public var host: String
    public var port: Int
    /// URL the controller should push to; default http://host:port.
    public var advertisedURL: String?
    /// Overrides the controller's heartbeat interval (seconds).
    public var heartbeatInterval: Double?
    /// Length of an aggregate window in seconds.
    public var aggregateWindow: Double
    /// Most windows kept while offline; older ones are merged, never dropped.
    public var maxBufferedWindows: Int
    public var threads: Int
    /// Most differential-privacy epsilon this device releases over its life
    /// (`--epsilon-budget`); nil = no limit. Once spent, counts stay on the device.
    public var epsilonBudget: Double?
    /// Largest model this device accepts (its storage budget); larger ones fail to install.
    public var maxModelBytes: Int = 512 << 20
    /// Seconds a newly activated model is on probation.
    public var probationSeconds: Double = 60
    /// Violations (failed inferences, latency over budget) that end a probation with a revert.
    public var probationViolations: Int = 3
    /// Bytes per Range request when downloading a model blob.
    public var chunkBytes: Int = 256 * 1024
    /// Free space that must remain on the data directory's file system after a download;
    /// a deployment that would eat into it is refused ("disk full") before any byte is fetched.
    public var minFreeBytes: Int64 = 64 << 20
    /// PEM file of the CA that issued the controller's HTTPS certificate: when set, only it
    /// is trusted (a private CA), instead of the system's certificate store.
    public var caCertificatePath: String?
    /// `sha256:<hex>` of the controller's signing key, for an enrollment token that does not
    /// carry one; when both name one they must agree. Without either the agent refuses to
    /// enroll: it never pins a key nobody vouched for.
    public var controllerKeyFingerprint: String?
    /// A second listener (HOST:PORT) that serves `/metrics` and `/v1/status` to anyone who
    /// can reach it; the main listener serves them to loopback clients only.
    public var metricsHost: String?
    public var metricsPort: Int?
    /// Seconds an idle connection to the agent's listeners stays open.
    public var listenerIdleTimeout: Double = 10
    /// Refused pushes logged and recorded as events per minute (the rest are counted).
    public var refusedPushEventsPerMinute = 30
    /// The agent's notion of now (aggregate windows, probation, retry pacing). Tests inject
    /// a simulated clock to run an agent offline for days in seconds.
    public var clock: @Sendable () -> Date = { Date() }

    public init(dataDirectory: URL, controllerURL: URL, enrollToken: String? = nil, name: String, labels: [String: String] = [:],
                host: String = "127.0.0.1", port: Int = 7070, advertisedURL: String? = nil, heartbeatInterval: Double? = nil,
                aggregateWindow: Double = 60, maxBufferedWindows: Int = 1000, threads: Int = 1) {
        self.dataDirectory = dataDirectory
        self.controllerURL = controllerURL
        self.enrollToken = enrollToken
        self.name = name
        self.labels = labels
        self.host = host
        self.port = port
        self.advertisedURL = advertisedURL
        self.heartbeatInterval = heartbeatInterval
        self.aggregateWindow = aggregateWindow
        self.maxBufferedWindows = maxBufferedWindows
        self.threads = threads
    }
}

public let agentVersion = "0.1.0"
