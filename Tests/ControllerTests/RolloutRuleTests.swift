import FleetKit
import Foundation
import Testing
@testable import FleetController

/// The rollout rules of docs/ROLLOUTS.md, one per test, on a real SQLite database with an
/// injected clock and device ids whose stage is known independently of the controller.
@Suite("Rollout rules")
struct RolloutRuleTests {
    let samples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Models/fashion-mnist")

    /// Positions in [0, 1) from the first 8 bytes of SHA-256(id), computed with Python's
    /// hashlib, not with `RolloutPlan` (see RolloutPlanTests for the vectors themselves).
    enum Known {
        static let at2_6 = "dev_0003"   // 0.02640
        static let at8_9 = "dev_0004"   // 0.08856
        static let at42_5 = "dev_canary"  // 0.42469
        static let at51_2 = "r1"        // 0.51153
    }

    struct Fleet {
        let clock: TestClock
        let harness: ServiceHarness
        let rollouts: RolloutService
        var store: SQLiteFleetStore { harness.store }
        var service: FleetService { harness.service }
    }

    /// A fleet of `devices` (enrolled in this order, with these ids) and `versions` of one model.
    /// The first `enrolling` (default: all) are enrolled now, the others when the test enrols more.
    func fleet(_ devices: [String], enrolling: Int? = nil, versions: [String] = ["v1", "v2"]) async throws -> Fleet {
        let clock = TestClock()
        let harness = try ServiceHarness(now: { clock.now }, deviceIDs: devices)
        for name in devices.prefix(enrolling ?? devices.count) { try await enroll(harness, name) }
        let file = try Data(contentsOf: samples.appendingPathComponent("bnn-cnn.bnn"))
        for version in versions { _ = try await harness.service.uploadModel(file, name: "fashion", version: version, createdBy: "admin") }
        return Fleet(clock: clock, harness: harness, rollouts: RolloutService(service: harness.service, logger: .init(label: "test")))
    }

    @discardableResult
    func enroll(_ harness: ServiceHarness, _ name: String) async throws -> String {
        let token = try await harness.service.createEnrollmentToken(EnrollmentTokenRequest(expiresInSeconds: 600))
        return try await harness.service.enroll(EnrollRequest(token: token.token, name: name, labels: [:], pushURL: "", agentVersion: "test")).deviceID
    }

    func deploy(_ fleet: Fleet, _ version: String, to devices: [String] = []) async throws -> DeploymentInfo {
        try await fleet.service.deploy(DeploymentRequest(model: "fashion", version: version, target: DeploymentTarget(devices: devices)),
                                       createdBy: "admin")
    }

    func start(_ fleet: Fleet, _ version: String, stages: [Double], soak: Double = 0, maxFailures: Double = 0,
               minDevices: Int = 1, autoRollback: Bool = false) async throws -> RolloutInfo {
        try await fleet.rollouts.start(RolloutRequest(model: "fashion", version: version, target: DeploymentTarget(), stages: stages,
                                                      soakSeconds: soak, maxFailureFraction: maxFailures, minDevices: minDevices,
                                                      autoRollback: autoRollback), createdBy: "admin")
    }

    func members(_ fleet: Fleet, _ deploymentID: Int64) async throws -> Set<String> {
        Set(try await fleet.store.deviceDeployments(deploymentID: deploymentID).map(\.deviceID))
    }

    func report(_ fleet: Fleet, _ devices: [String], _ rollout: RolloutInfo, _ state: DeploymentState) async throws {
        for device in devices {
            try await fleet.store.applyReport(deviceID: device, report: DeploymentReport(sequence: rollout.sequence, state: state,
                                                                                        reason: state == .failed ? "test" : nil),
                                              now: fleet.clock.now)
        }
    }

    func stored(_ fleet: Fleet, _ rollout: RolloutInfo) async throws -> RolloutRecord {
        try #require(try await fleet.store.rollout(id: rollout.id))
    }

    @Test("stage membership is the documented hash rule, and a device keeps its stage as the fleet grows")
    func stageKeptAsFleetGrows() async throws {
        let original = [Known.at2_6, Known.at8_9, Known.at42_5, Known.at51_2]
        let joining = ["dev_0001", "dev_0002", "dev_0043", "dev_0047", "dev_0088"]  // all below 0.05
        let fleet = try await fleet(original + joining, enrolling: original.count)
        let small = try await start(fleet, "v2", stages: [50, 100])
        #expect(try await members(fleet, small.deploymentID) == [Known.at2_6, Known.at8_9, Known.at42_5], "positions below 0.5")
        _ = try await fleet.rollouts.abort(small.id)

        // Five more devices, all in front of the others: a rank-based "lowest half" would
        // now push the device at 0.42 out of the first stage; the hash rule keeps it.
        for (index, _) in joining.enumerated() { try await enroll(fleet.harness, "joined\(index)") }
        #expect(Set(try await fleet.store.devices().map(\.id)) == Set(original + joining))
        let grown = try await start(fleet, "v2", stages: [50, 100])
        let firstStage = try await members(fleet, grown.deploymentID)
        #expect(firstStage == Set([Known.at2_6, Known.at8_9, Known.at42_5] + joining), "the original canaries keep their stage")
        #expect(!firstStage.contains(Known.at51_2), "and the device at 0.51 stays in the second stage")
    }

    @Test("an empty stage passes at once, even with a soak time")
    func emptyStagePasses() async throws {
        // At 1% none of these three is in the first stage (positions 0.026, 0.089, 0.425).
        let fleet = try await fleet([Known.at2_6, Known.at8_9, Known.at42_5])
        let rollout = try await start(fleet, "v2", stages: [1, 100], soak: 600)
        #expect(rollout.stages.map(\.devices) == [0, 3])
        #expect(try await members(fleet, rollout.deploymentID).isEmpty)
        try await fleet.rollouts.tick()
        let advanced = try await stored(fleet, rollout)
        #expect(advanced.currentStage == 1, "nothing to watch in an empty stage: no soak")
        #expect(try await members(fleet, rollout.deploymentID) == [Known.at2_6, Known.at8_9, Known.at42_5])
        // The stage with devices soaks as usual.
        try await report(fleet, [Known.at2_6, Known.at8_9, Known.at42_5], rollout, .active)
        try await fleet.rollouts.tick()
        #expect(try await stored(fleet, rollout).state == RolloutState.running.rawValue)
        fleet.clock.advance(601)
        try await fleet.rollouts.tick()
        #expect(try await stored(fleet, rollout).state == RolloutState.completed.rawValue)
    }

    @Test("the soak holds a healthy stage until it has passed, and not longer")
    func soak() async throws {
        let fleet = try await fleet([Known.at2_6, Known.at42_5, Known.at51_2])
        let rollout = try await start(fleet, "v2", stages: [50, 100], soak: 60)
        try await report(fleet, [Known.at2_6, Known.at42_5], rollout, .active)
        fleet.clock.advance(59)
        try await fleet.rollouts.tick()
        #expect(try await stored(fleet, rollout).currentStage == 0, "one second before the soak ends")
        fleet.clock.advance(2)
        try await fleet.rollouts.tick()
        let advanced = try await stored(fleet, rollout)
        #expect(advanced.currentStage == 1, "one second after it")
        #expect(try await members(fleet, rollout.deploymentID).contains(Known.at51_2))
    }

    @Test("rollback goes to the newest regular deployment of another version, among several")
    func rollbackTarget() async throws {
        let fleet = try await fleet([Known.at2_6, Known.at51_2], versions: ["v1", "v2", "v3", "v4"])
        // Deployed in the order v1, v3, v2 (then v4 itself to one device): the newest
        // deployment of another version is v2, neither the oldest nor the highest label.
        for version in ["v1", "v3", "v2"] { _ = try await deploy(fleet, version) }
        _ = try await deploy(fleet, "v4", to: [Known.at51_2])
        let rollout = try await start(fleet, "v4", stages: [50, 100])
        #expect(rollout.previousVersion == "v2")
        let info = try await fleet.rollouts.rollBack(rollout.id)
        let rollbackID = try #require(info.rollbackDeploymentID)
        let back = try #require(try await fleet.store.deployment(id: rollbackID))
        #expect(try await fleet.store.model(id: back.modelID)?.version == "v2")
        #expect(back.sequence > rollout.sequence, "a rollback is a newer manifest")
        #expect(try await members(fleet, back.id!) == [Known.at2_6], "to every device the rollout reached")
    }

    @Test("a rollback that reached no device is rolled back without a deployment")
    func rollbackOfNothing() async throws {
        let fleet = try await fleet([Known.at42_5])
        _ = try await deploy(fleet, "v1")
        let rollout = try await start(fleet, "v2", stages: [1, 100])
        let deployments = try await fleet.store.deployments().count
        let info = try await fleet.rollouts.rollBack(rollout.id)
        #expect(info.state == .rolledBack && info.rollbackDeploymentID == nil)
        #expect(try await fleet.store.deployments().count == deployments)
    }

    @Test("a stage never points a device back at an older deployment")
    func neverOlder() async throws {
        let fleet = try await fleet([Known.at2_6, Known.at51_2], versions: ["v1", "v2", "v3"])
        let rollout = try await start(fleet, "v2", stages: [50, 100])
        // The operator sends v3 to the second-stage device while the rollout runs.
        let direct = try await deploy(fleet, "v3", to: [Known.at51_2])
        try await report(fleet, [Known.at2_6], rollout, .active)
        fleet.clock.advance(1)  // (times are stored to the millisecond, possibly rounded up)
        try await fleet.rollouts.tick()
        #expect(try await stored(fleet, rollout).currentStage == 1)
        #expect(try await members(fleet, rollout.deploymentID).contains(Known.at51_2), "it joins the rollout's deployment")
        #expect(try await fleet.store.device(id: Known.at51_2)?.desiredDeploymentID == direct.id, "but keeps wanting the newer v3")
        #expect(try await fleet.store.device(id: Known.at2_6)?.desiredDeploymentID == rollout.deploymentID)
    }

    @Test("revoked devices do not hold a stage back")
    func revokedDoNotHoldBack() async throws {
        let fleet = try await fleet([Known.at2_6, Known.at8_9, Known.at42_5])
        let rollout = try await start(fleet, "v2", stages: [100])
        try await report(fleet, [Known.at2_6, Known.at8_9], rollout, .active)
        try await fleet.rollouts.tick()
        #expect(try await stored(fleet, rollout).state == RolloutState.running.rawValue, "one device still pending")
        #expect(try await fleet.service.revokeDevice(id: Known.at42_5))
        fleet.clock.advance(1)  // (times are stored to the millisecond, possibly rounded up)
        try await fleet.rollouts.tick()
        #expect(try await stored(fleet, rollout).state == RolloutState.completed.rawValue)
    }

    @Test("resume restarts the stage clock")
    func resumeRestartsClock() async throws {
        let fleet = try await fleet([Known.at2_6, Known.at51_2])
        let rollout = try await start(fleet, "v2", stages: [50, 100], soak: 60)
        try await report(fleet, [Known.at2_6], rollout, .active)
        fleet.clock.advance(50)
        _ = try await fleet.rollouts.pause(rollout.id)
        fleet.clock.advance(20)  // 70 s since the stage started, 0 since the resume
        _ = try await fleet.rollouts.resume(rollout.id)
        try await fleet.rollouts.tick()
        #expect(try await stored(fleet, rollout).currentStage == 0, "the soak counts from the resume")
        fleet.clock.advance(61)
        try await fleet.rollouts.tick()
        #expect(try await stored(fleet, rollout).currentStage == 1)
    }

    @Test("a halted rollout stays halted when its devices recover, until it is resumed")
    func haltedStaysHalted() async throws {
        let fleet = try await fleet([Known.at2_6, Known.at8_9, Known.at51_2])
        let rollout = try await start(fleet, "v2", stages: [50, 100])
        try await report(fleet, [Known.at2_6], rollout, .failed)
        try await fleet.rollouts.tick()
        let halted = try await stored(fleet, rollout)
        #expect(halted.state == RolloutState.halted.rawValue && halted.reason?.contains("1 of 1 finished devices failed") == true,
                "\(halted.reason ?? "nil")")
        // The failed device retries and succeeds, the other canary too: still halted.
        try await report(fleet, [Known.at2_6, Known.at8_9], rollout, .active)
        for _ in 0..<3 {
            fleet.clock.advance(10)
            try await fleet.rollouts.tick()
        }
        let still = try await stored(fleet, rollout)
        #expect(still.state == RolloutState.halted.rawValue && still.currentStage == 0)
        #expect(try await members(fleet, rollout.deploymentID) == [Known.at2_6, Known.at8_9], "no device of the next stage got it")
        _ = try await fleet.rollouts.resume(rollout.id)
        fleet.clock.advance(1)
        try await fleet.rollouts.tick()
        #expect(try await stored(fleet, rollout).currentStage == 1, "resumed, it advances")
    }
}
