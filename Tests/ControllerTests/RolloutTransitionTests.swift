import BitModel
import FleetKit
import Foundation
import Testing
@testable import FleetController

/// Rollout changes and the deployments they bring are one transaction each, on a real
/// SQLite database: a stale claim changes nothing, and a rollout left at a stage whose
/// devices never joined (a controller killed between the two writes, before they were one)
/// is repaired by the next evaluation.
@Suite("Rollout transitions")
struct RolloutTransitionTests {
    let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Models/fashion-mnist")

    /// Eight enrolled devices, v1 and v2 uploaded, a five-stage rollout of v2 started after
    /// v1 was deployed everywhere (so it has a version to roll back to).
    /// Eight seeded device ids: they decide who is in which stage, so the seed is printed
    /// and BITFLEET_TEST_SEED replays a run.
    static func seededHarness(_ test: String) throws -> ServiceHarness {
        let seed = ProcessInfo.processInfo.environment["BITFLEET_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64(UInt32.max))
        print("\(test): device-id seed \(seed) (replay with BITFLEET_TEST_SEED=\(seed))")
        var random = SeededGenerator(seed: seed)
        return try ServiceHarness(deviceIDs: (1...8).map { _ in "dev_" + String(random.next(), radix: 16) })
    }

    func startRollout(_ harness: ServiceHarness) async throws -> (RolloutService, RolloutRecord) {
        for index in 1...8 {
            let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
            _ = try await harness.service.enroll(EnrollRequest(token: token.token, name: "d\(index)", labels: [:], pushURL: "", agentVersion: "test"))
        }
        let file = try Data(contentsOf: samples.appendingPathComponent("bnn-cnn.bnn"))
        for version in ["v1", "v2"] { _ = try await harness.service.uploadModel(file, name: "fashion", version: version, createdBy: "admin") }
        _ = try await harness.service.deploy(DeploymentRequest(model: "fashion", version: "v1", target: DeploymentTarget()), createdBy: "admin")
        let rollouts = RolloutService(service: harness.service, logger: .init(label: "test"))
        let info = try await rollouts.start(RolloutRequest(model: "fashion", version: "v2", target: DeploymentTarget(), stages: [20, 40, 60, 80, 100],
                                                           soakSeconds: 0, maxFailureFraction: 0.4, minDevices: 1, autoRollback: false),
                                            createdBy: "admin")
        return (rollouts, try #require(try await harness.store.rollout(id: info.id)))
    }

    func members(_ harness: ServiceHarness, _ deploymentID: Int64) async throws -> Set<String> {
        Set(try await harness.store.deviceDeployments(deploymentID: deploymentID).map(\.deviceID))
    }

    @Test("a stage advance brings its devices in the same transaction; a stale claim changes nothing")
    func advance() async throws {
        let harness = try Self.seededHarness("rollout transitions: stage advance")
        let (_, rollout) = try await startRollout(harness)
        let before = try await members(harness, rollout.deploymentID)
        let stages = rollout.stages
        #expect(before == Set(rollout.targetDevices.filter { RolloutPlan.stage(of: $0, stages: stages) == 0 }))

        var advanced = rollout
        advanced.currentStage = 4
        let everyone = rollout.targetDevices
        let stale = try await harness.store.transitionRollout(advanced, expectedState: rollout.state, expectedStage: 3,
                                                               change: .extend(deviceIDs: everyone), now: Date())
        #expect(stale == nil)
        #expect(try await members(harness, rollout.deploymentID) == before, "a lost claim adds no device")
        #expect(try await harness.store.rollout(id: rollout.id!)?.currentStage == 0)

        let stored = try await harness.store.transitionRollout(advanced, expectedState: rollout.state, expectedStage: 0,
                                                                change: .extend(deviceIDs: everyone), now: Date())
        #expect(stored?.currentStage == 4)
        #expect(try await members(harness, rollout.deploymentID) == Set(everyone))
        for device in try await harness.store.devices() {
            #expect(device.desiredDeploymentID == rollout.deploymentID, "\(device.name) wants the rollout's deployment")
        }
    }

    @Test("a rollout advanced without its devices (killed between two writes) is repaired by the next evaluation")
    func repair() async throws {
        let harness = try Self.seededHarness("rollout transitions: repair")
        let (rollouts, rollout) = try await startRollout(harness)
        var advanced = rollout
        advanced.currentStage = 4
        _ = try #require(try await harness.store.transitionRollout(advanced, expectedState: rollout.state, expectedStage: 0, change: nil, now: Date()))
        #expect(try await members(harness, rollout.deploymentID).count < rollout.targetDevices.count)

        try await rollouts.tick()
        #expect(try await members(harness, rollout.deploymentID) == Set(rollout.targetDevices))
        #expect(try await harness.store.rollout(id: rollout.id!)?.state == RolloutState.running.rawValue,
                "the devices just added are pending: the rollout is not complete")
    }

    @Test("a rollback and its deployment are one change; a concurrent change makes it fail without a deployment")
    func rollBack() async throws {
        let harness = try Self.seededHarness("rollout transitions: rollback")
        let (rollouts, started) = try await startRollout(harness)
        // At its last stage, so it has reached devices (the first stage, chosen by hashing
        // the seeded device ids, can be empty).
        var everywhere = started
        everywhere.currentStage = 4
        let rollout = try #require(try await harness.store.transitionRollout(everywhere, expectedState: started.state, expectedStage: 0,
                                                                             change: .extend(deviceIDs: started.targetDevices), now: Date()))
        let deployments = try await harness.store.deployments().count
        var paused = rollout
        paused.state = RolloutState.paused.rawValue
        _ = try #require(try await harness.store.transitionRollout(paused, expectedState: rollout.state, expectedStage: 4, change: nil, now: Date()))
        // `rollout` is now stale: the rollback loses and leaves nothing behind.
        let lost = await #expect(throws: APIError.self) { try await rollouts.rollBack(rollout, reason: "test") }
        #expect(lost?.code == "concurrent_change" && lost?.status == .conflict, "\(String(describing: lost))")
        #expect(try await harness.store.deployments().count == deployments)

        let info = try await rollouts.rollBack(rollout.id!)
        let stored = try #require(try await harness.store.rollout(id: rollout.id!))
        #expect(info.state == .rolledBack && stored.state == RolloutState.rolledBack.rawValue)
        let rollbackID = try #require(stored.rollbackDeploymentID)
        #expect(try await members(harness, rollbackID) == (try await members(harness, rollout.deploymentID)))
        #expect(try await harness.store.deployments().count == deployments + 1)
    }
}
