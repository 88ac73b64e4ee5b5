import BitEngine
import FleetKit
import Foundation

/// A controller and agents as real processes on loopback, each with its own data
/// directory under one temporary folder, and an admin API client.
final class TestFleet: @unchecked Sendable {
    let root: URL
    private(set) var controller: TestProcess?
    private(set) var controllerURL: URL!
    private(set) var adminToken: String!
    var agents: [String: TestProcess] = [:]
    var agentURLs: [String: URL] = [:]
    let heartbeat = "1"

    init() throws {
        root = try temporaryDirectory("bitfleet-e2e")
    }

    var controllerDataDirectory: URL { root.appendingPathComponent("controller") }

    /// Extra `serve` flags; tests that send many bad tokens raise the throttle's limit.
    var controllerFlags: [String] = []

    func startController(port: Int = 0) throws {
        let process = try TestProcess("fleet-controller", ["serve", "--data-dir", controllerDataDirectory.path, "--listen", "127.0.0.1:\(port)",
                                                           "--heartbeat-interval", heartbeat] + controllerFlags,
                                      name: "controller-\(UUID().uuidString.prefix(4))", directory: root)
        controller = process
        controllerURL = URL(string: try process.waitForLine("controller listening on (https?://[0-9.:]+)"))!
        if adminToken == nil {
            adminToken = try process.waitForLine("admin token[^:]*: (adm_[A-Za-z0-9_-]+)")
        }
    }

    var controllerPort: Int { controllerURL.port! }

    /// How the test's admin client reaches an HTTPS controller with a test CA.
    var adminTransport: (any HTTPTransport)?

    var admin: FleetHTTPClient { FleetHTTPClient(baseURL: controllerURL, token: adminToken, timeout: 10, transport: adminTransport) }

    func enrollmentToken(labels: [String: String] = [:]) async throws -> String {
        try await admin.json("POST", "/api/v1/enrollment-tokens", body: EnrollmentTokenRequest(expiresInSeconds: 3600, labels: labels),
                             as: EnrollmentTokenResponse.self).token
    }

    func agentDataDirectory(_ name: String) -> URL { root.appendingPathComponent("agent-\(name)") }

    /// Starts (or restarts) agent `name`; `controller` overrides the URL (e.g. a proxy).
    func startAgent(_ name: String, token: String?, controller: URL? = nil, extra: [String] = [], environment: [String: String] = [:]) throws {
        var arguments = ["run", "--data-dir", agentDataDirectory(name).path, "--controller", (controller ?? controllerURL).absoluteString,
                         "--listen", "127.0.0.1:0", "--name", name, "--heartbeat-interval", heartbeat, "--aggregate-window", "1"] + extra
        if let token { arguments += ["--enroll-token", token] }
        let process = try TestProcess("fleet-agent", arguments, name: "agent-\(name)-\(UUID().uuidString.prefix(4))", directory: root,
                                  environment: environment)
        agents[name] = process
        agentURLs[name] = URL(string: try process.waitForLine("agent listening on (http://[0-9.:]+)"))!
    }

    /// The agent's enrolled identity, waiting for enrollment to finish (it follows startup).
    func agentIdentity(_ name: String) throws -> (deviceID: String, credential: String) {
        let url = agentDataDirectory(name).appendingPathComponent("identity.json")
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: url.path) && Date() < deadline { usleep(50_000) }
        let data = try Data(contentsOf: url)
        let object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (object["deviceID"] as! String, object["credential"] as! String)
    }

    func devices() async throws -> [DeviceInfo] {
        try await admin.json("GET", "/api/v1/devices", as: [DeviceInfo].self)
    }

    func device(named name: String) async throws -> DeviceInfo? {
        try await devices().first { $0.name == name }
    }

    /// Runs fleetctl against this fleet and returns its output; throws on a non-zero exit.
    @discardableResult
    func fleetctl(_ arguments: [String], expectFailure: Bool = false, environment: [String: String] = [:]) throws -> String {
        let process = try TestProcess("fleetctl", arguments, name: "fleetctl-\(UUID().uuidString.prefix(6))", directory: root,
                                      environment: ["FLEET_CONTROLLER": controllerURL.absoluteString, "FLEET_TOKEN": adminToken]
                                        .merging(environment) { $1 })
        process.process.waitUntilExit()
        let status = process.process.terminationStatus
        if expectFailure != (status != 0) {
            throw TestFailure("fleetctl \(arguments.joined(separator: " ")) exited \(status):\n\(process.output)")
        }
        return process.output
    }

    func shutdown() {
        for agent in agents.values { agent.stop() }
        controller?.stop()
    }

    deinit {
        shutdown()
        try? FileManager.default.removeItem(at: root)
    }
}

/// Fashion-MNIST test images as binary PGM files.
func fashionImages(count: Int) throws -> [Data] {
    let idx = try IDXFile(contentsOf: URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"))
    return (0..<count).map { index in
        PGMImage(width: 28, height: 28, maxValue: 255, pixels: idx.item(index).map(Int.init)).data
    }
}

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let sampleModels = repositoryRoot.appendingPathComponent("Models/fashion-mnist")
