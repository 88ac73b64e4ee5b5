import BitModel
import FleetKit
import Foundation

/// What a test reads from an agent's local endpoints and data directory to decide whether
/// it runs a valid model: the status, a real inference, and the installed files' hashes.
struct AgentStatusView: Decodable {
    var deviceID: String?
    var active: ActiveModel?
    var previous: ActiveModel?
    var lastAcceptedSequence: Int64
    var pendingReports: Int
    var bufferedWindows: Int
}

extension TestFleet {
    func agentClient(_ name: String) -> FleetHTTPClient { FleetHTTPClient(baseURL: agentURLs[name]!, token: nil, timeout: 20) }

    func agentStatus(_ name: String) async throws -> AgentStatusView {
        try await agentClient(name).json("GET", "/v1/status", as: AgentStatusView.self)
    }

    /// One real inference through the agent's local endpoint.
    func agentInfer(_ name: String, _ image: Data) async throws -> InferenceResponse {
        let (data, _) = try await agentClient(name).send("POST", "/v1/infer", body: image, contentType: "application/octet-stream")
        return try FleetJSON.decoder.decode(InferenceResponse.self, from: data)
    }

    /// `installedModelProblems` of a running agent. The agent keeps converging while the
    /// test looks (a switch removes the old previous slot's file), so the files are
    /// judged against a status read before and unchanged after listing them.
    func installedModelProblems(_ name: String) async throws -> [String] {
        for _ in 0..<20 {
            let before = try await agentStatus(name)
            let problems = FleetTests.installedModelProblems(dataDirectory: agentDataDirectory(name), status: before)
            let after = try await agentStatus(name)
            if before.active == after.active && before.previous == after.previous { return problems }
        }
        throw TestFailure("agent \(name) kept switching models while its files were checked")
    }

    /// Waits until every device reports `version` as its active model. A timeout names each
    /// device's state and shows the last lines of the agents that lag, so a failure in CI
    /// explains itself.
    func waitUntilEveryDeviceRuns(_ version: String, timeout: TimeInterval = 60) async throws {
        do {
            try await eventually("every device runs \(version)", timeout: timeout) {
                try await devices().allSatisfy { $0.activeModel?.version == version }
            }
        } catch {
            var report = "\(error)"
            for device in (try? await devices()) ?? [] {
                report += "\n\(device.name): \(device.status), runs \(device.activeModel?.version ?? "nothing"), "
                    + "desired sequence \(device.desiredSequence.map(String.init) ?? "none"), "
                    + "\(device.deploymentState.map { "\($0)" } ?? "no deployment")\(device.deploymentReason.map { " (\($0))" } ?? "")"
                if device.activeModel?.version != version, let agent = agents[device.name] {
                    report += "\n  " + agent.output.split(separator: "\n").suffix(15).joined(separator: "\n  ")
                }
            }
            throw TestFailure(report)
        }
    }

    /// Uploads a model through the admin API.
    func uploadModel(_ model: Model, name: String) async throws -> ModelVersionInfo {
        let (data, _) = try await admin.send("POST", "/api/v1/models?name=\(name)", body: try ModelWriter.data(for: model),
                                             contentType: "application/octet-stream")
        return try FleetJSON.decoder.decode(ModelVersionInfo.self, from: data)
    }

    /// Deploys `version` of `model` to one device through the admin API.
    func deploy(_ model: String, _ version: String, to deviceID: String) async throws -> DeploymentInfo {
        try await admin.json("POST", "/api/v1/deployments",
                             body: DeploymentRequest(model: model, version: version, target: DeploymentTarget(devices: [deviceID])),
                             as: DeploymentInfo.self)
    }

    func deviceEvents(_ deviceID: String) async throws -> [DeviceEvent] {
        try await admin.json("GET", "/api/v1/devices/\(deviceID)/events", as: [DeviceEvent].self)
    }
}

/// The installed-model invariants of an agent's data directory: the slots in state.json
/// name files that exist, and every file in models/ hashes to its name (nothing partial
/// is ever under models/). Returns the problems found (empty when all hold).
func installedModelProblems(dataDirectory: URL, status: AgentStatusView) -> [String] {
    var problems: [String] = []
    let models = dataDirectory.appendingPathComponent("models")
    for (slot, model) in [("active", status.active), ("previous", status.previous)] {
        guard let model else { continue }
        if !FileManager.default.fileExists(atPath: models.appendingPathComponent("\(model.sha256).bnn").path) {
            problems.append("\(slot) slot names \(model.sha256.prefix(12)) but models/ has no such file")
        }
    }
    for file in (try? FileManager.default.contentsOfDirectory(atPath: models.path)) ?? [] {
        let url = models.appendingPathComponent(file)
        let digest = (try? FileDigest.sha256Hex(of: url)) ?? "unreadable"
        if "\(digest).bnn" != file { problems.append("models/\(file) hashes to \(digest.prefix(12)) (partial or corrupt file installed)") }
    }
    return problems
}

/// A variant of the small sample CNN with different bytes (and so a different SHA-256)
/// but the same network, so each install is a real download of a valid model.
func sampleCNNVariant(_ label: String) throws -> Model {
    var model = try ModelReader.read(contentsOf: sampleModels.appendingPathComponent("bnn-cnn.bnn"))
    model.metadata.description = "test variant \(label)"
    return model
}

/// The seed for a randomized test: from `variable` if set, else random; printed so a
/// failure can be replayed.
func testSeed(_ variable: String, test: String) -> UInt64 {
    let seed = ProcessInfo.processInfo.environment[variable].flatMap { UInt64($0) } ?? UInt64.random(in: 1...(UInt64.max >> 1))
    print("\(test): seed \(seed) (replay with \(variable)=\(seed))")
    return seed
}
