import BitModel
import Crypto
import FleetKit
import Foundation
import Testing

/// The controller killed with SIGKILL at seeded random moments, during model uploads and
/// during staged rollouts. After every restart: the database passes `PRAGMA
/// integrity_check`, everything the controller acknowledged (a 2xx upload, a created
/// deployment or rollout) is still there, every listed model's blob is complete with its
/// SHA-256, no partial upload is left in `blobs/`, and rollouts continue to completion.
/// BITFLEET_CRASH_SEED replays a run; BITFLEET_CRASH_ITERATIONS scales the kill counts.
@Suite("Controller crash consistency", .serialized)
struct ControllerCrashTests {
    static let scale = ProcessInfo.processInfo.environment["BITFLEET_CRASH_ITERATIONS"].flatMap { Double($0) }.map { $0 / 30 } ?? 1

    /// What the controller said it stored, checked after each restart.
    struct Acknowledged {
        var models: [String: (sha256: String, size: Int)] = [:]
        var deployments: Set<Int64> = []
        var rollouts: [Int64: RolloutState] = [:]
    }

    static func verify(_ fleet: TestFleet, _ acknowledged: Acknowledged, after kill: Int) async throws {
        let database = fleet.controllerDataDirectory.appendingPathComponent("fleet.sqlite").path
        #expect(try integrityCheck(database) == "ok", "integrity_check after kill \(kill)")
        let blobs = fleet.controllerDataDirectory.appendingPathComponent("blobs")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: blobs.path).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty, "partial blobs left after kill \(kill): \(leftovers)")
        let models = try await fleet.admin.json("GET", "/api/v1/models", as: [ModelVersionInfo].self)
        for (version, expected) in acknowledged.models {
            let listed = models.first { $0.version == version }
            #expect(listed?.sha256 == expected.sha256 && listed?.size == expected.size, "acknowledged upload \(version) lost after kill \(kill)")
        }
        // No model is listed whose blob is missing or incomplete.
        for model in models {
            let data = try Data(contentsOf: blobs.appendingPathComponent(model.sha256))
            #expect(data.count == model.size && sha256Hex(data) == model.sha256, "blob of \(model.version) damaged after kill \(kill)")
        }
        let deployments = Set(try await fleet.admin.json("GET", "/api/v1/deployments", as: [DeploymentInfo].self).map(\.id))
        #expect(acknowledged.deployments.isSubset(of: deployments), "deployments lost after kill \(kill)")
        let rollouts = try await fleet.admin.json("GET", "/api/v1/rollouts", as: [RolloutInfo].self)
        for (id, state) in acknowledged.rollouts {
            let now = rollouts.first { $0.id == id }
            #expect(now != nil, "rollout \(id) lost after kill \(kill)")
            if state == .completed { #expect(now?.state == .completed, "completed rollout \(id) is \(String(describing: now?.state)) after kill \(kill)") }
        }
    }

    static func restart(_ fleet: TestFleet, port: Int) throws {
        fleet.controller!.kill9()
        try fleet.startController(port: port)
    }

    @Test("SIGKILL during paced multi-MB uploads loses nothing acknowledged and leaves no partial model")
    func uploads() async throws {
        let seed = faultSeed("controller crash during uploads")
        var random = SeededGenerator(seed: seed)
        let iterations = max(1, Int((20 * Self.scale).rounded()))
        let started = Date()
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        let port = fleet.controllerPort
        // 16 KB chunks with 8 ms each: a 3 MB upload takes about 1.6 s, so kills land mid-transfer.
        let proxy = try FaultProxy(upstreamPort: port, seed: seed, chunkDelay: 0.008)
        defer { proxy.stop() }
        let uploader = FleetHTTPClient(baseURL: proxy.url, token: fleet.adminToken, timeout: 30)
        let large = LargeModel()
        var acknowledged = Acknowledged()
        var outcomes = (acknowledged: 0, refused: 0)

        for iteration in 0..<iterations {
            let bodies = try (0..<2).map { try large.data(tag: "upload \(iteration)-\($0) seed \(seed)") }
            let uploads = bodies.enumerated().map { index, body in
                Task { () -> (String, Data, Bool) in
                    let version = "u\(iteration)-\(index)"
                    do {
                        _ = try await uploader.send("POST", "/api/v1/models?name=large&version=\(version)", body: body,
                                                    contentType: "application/octet-stream")
                        return (version, body, true)
                    } catch {
                        return (version, body, false)
                    }
                }
            }
            // Anywhere from before the first byte to after both uploads are stored.
            try await Task.sleep(for: .milliseconds(Int.random(in: 50...2600, using: &random)))
            fleet.controller!.kill9()
            for upload in uploads {
                let (version, body, ok) = await upload.value
                if ok {
                    acknowledged.models[version] = (sha256Hex(body), body.count)
                    outcomes.acknowledged += 1
                } else {
                    outcomes.refused += 1
                }
            }
            // Also a leftover as a kill mid-write leaves it, so every round checks the
            // startup cleanup (the real window, a few ms of blob write, is rarely hit).
            let blobs = fleet.controllerDataDirectory.appendingPathComponent("blobs")
            try Data(bodies[0].prefix(1000)).write(to: blobs.appendingPathComponent(".\(sha256Hex(bodies[0])).tmp-1-\(iteration)"))
            try fleet.startController(port: port)
            try await Self.verify(fleet, acknowledged, after: iteration + 1)
        }
        print("controller crash during uploads: \(iterations) kills, \(outcomes.acknowledged) uploads acknowledged, "
              + "\(outcomes.refused) cut off, \(String(format: "%.0f", Date().timeIntervalSince(started))) s")
        #expect(outcomes.acknowledged > 0 && outcomes.refused > 0, "kills landed both after and during uploads")
    }

    @Test("SIGKILL during staged rollouts: every rollout resumes and completes, agents converge")
    func rollouts() async throws {
        let seed = faultSeed("controller crash during rollouts")
        var random = SeededGenerator(seed: seed)
        let kills = max(1, Int((12 * Self.scale).rounded()))
        let started = Date()
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        let port = fleet.controllerPort
        let names = (1...5).map { "k\($0)" }
        for name in names { try fleet.startAgent(name, token: try await fleet.enrollmentToken()) }
        try await eventually("five devices online") { try await fleet.devices().filter { $0.status == "online" }.count == 5 }
        var acknowledged = Acknowledged()
        for file in ["bnn-cnn.bnn", "bnn-mlp.bnn"] {
            let info = try FleetJSON.decoder.decode(ModelVersionInfo.self, from: try await fleet.admin.send(
                "POST", "/api/v1/models?name=fashion", body: try Data(contentsOf: sampleModels.appendingPathComponent(file)),
                contentType: "application/octet-stream").0)
            acknowledged.models[info.version] = (info.sha256, info.size)
        }
        let first = try await fleet.admin.json("POST", "/api/v1/deployments",
                                               body: DeploymentRequest(model: "fashion", version: "v1", target: DeploymentTarget()),
                                               as: DeploymentInfo.self)
        acknowledged.deployments.insert(first.id)
        try await fleet.waitUntilEveryDeviceRuns("v1")

        // Rollouts alternate between v2 and v1 so that every kill lands in a running one.
        var version = "v2"
        func startRollout() async throws -> RolloutInfo {
            let info = try await fleet.admin.json("POST", "/api/v1/rollouts", body: RolloutRequest(
                model: "fashion", version: version, target: DeploymentTarget(), stages: [20, 40, 60, 80, 100], soakSeconds: 0.5,
                maxFailureFraction: 0.4, minDevices: 2, autoRollback: false), as: RolloutInfo.self)
            acknowledged.rollouts[info.id] = .running
            acknowledged.deployments.insert(info.deploymentID)
            return info
        }
        var current = try await startRollout()
        var completed = 0
        var killsPastFirstStage = 0
        for kill in 1...kills {
            try await Task.sleep(for: .milliseconds(Int.random(in: 200...1500, using: &random)))
            let before = try await fleet.admin.json("GET", "/api/v1/rollouts/\(current.id)", as: RolloutInfo.self)
            try Self.restart(fleet, port: port)
            try await Self.verify(fleet, acknowledged, after: kill)
            let after = try await fleet.admin.json("GET", "/api/v1/rollouts/\(current.id)", as: RolloutInfo.self)
            let state = after.state
            #expect(state == .running || state == .completed, "rollout \(current.id) is \(state) after kill \(kill)")
            // It continues where it was: never an earlier stage, and the stage clock of a
            // stage it is still in is the one it had (a restart from stage 0, or one that
            // restarted the soak, fails here).
            #expect(after.currentStage >= before.currentStage,
                    "rollout \(current.id) went back from stage \(before.currentStage) to \(after.currentStage) after kill \(kill)")
            if after.currentStage == before.currentStage, before.state == .running, after.state == .running {
                #expect(after.stages[after.currentStage].startedAt == before.stages[before.currentStage].startedAt,
                        "rollout \(current.id) restarted stage \(after.currentStage)'s clock after kill \(kill)")
            }
            if before.currentStage > 0 { killsPastFirstStage += 1 }
            if state == .completed {
                acknowledged.rollouts[current.id] = .completed
                completed += 1
                try await fleet.waitUntilEveryDeviceRuns(version)
                version = version == "v2" ? "v1" : "v2"
                current = try await startRollout()
            }
        }
        let last = current.id
        try await eventually("the last rollout resumes and completes", timeout: 90) {
            try await fleet.admin.json("GET", "/api/v1/rollouts/\(last)", as: RolloutInfo.self).state == .completed
        }
        completed += 1
        try await fleet.waitUntilEveryDeviceRuns(version)
        acknowledged.rollouts[last] = .completed
        try await Self.verify(fleet, acknowledged, after: kills)
        #expect(killsPastFirstStage > 0, "some kill landed past a rollout's first stage, where a restart from stage 0 shows")
        print("controller crash during rollouts: \(kills) kills (\(killsPastFirstStage) past a first stage) across \(completed) completed rollouts, "
              + "\(String(format: "%.0f", Date().timeIntervalSince(started))) s")
    }
}
