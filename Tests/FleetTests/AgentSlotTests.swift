import BitModel
@testable import FleetAgent
import FleetKit
import Foundation
import Logging
import Testing

/// The agent's two slots and its probation (docs/ROLLOUTS.md, "Safe installs on the
/// device"): the real AgentRuntime against a real controller, restarted by creating a new
/// runtime over the same data directory, as the process does at start.
@Suite("Agent slots and probation", .serialized)
struct AgentSlotTests {
    struct Device {
        let fleet: TestFleet
        let configuration: AgentConfiguration
        let deviceID: String
        let versions: [ModelVersionInfo]
        var logger: Logger {
            var logger = Logger(label: "slot-test-agent")
            logger.logLevel = .warning
            return logger
        }

        /// A new runtime over the same files, loaded as at process start.
        func restart() async throws -> AgentRuntime {
            let runtime = try AgentRuntime(configuration: configuration, logger: logger)
            await runtime.loadInstalledModel()
            return runtime
        }

        /// Deploys `version` and lets one heartbeat install it.
        func install(_ version: ModelVersionInfo, on runtime: AgentRuntime) async throws {
            _ = try await fleet.deploy("slots", version.version, to: deviceID)
            try await runtime.heartbeat()
            #expect(await runtime.status().active?.sha256 == version.sha256, "\(version.version) installed")
        }

        var downloads: URL { configuration.dataDirectory.appendingPathComponent("downloads") }
        func modelFile(_ version: ModelVersionInfo) -> URL {
            configuration.dataDirectory.appendingPathComponent("models/\(version.sha256).bnn")
        }
    }

    func device(_ fleet: TestFleet, probation: Double) async throws -> (Device, AgentRuntime) {
        try fleet.startController()
        var versions: [ModelVersionInfo] = []
        for label in ["one", "two"] { versions.append(try await fleet.uploadModel(try sampleCNNVariant("slots-\(label)"), name: "slots")) }
        var configuration = AgentConfiguration(dataDirectory: fleet.agentDataDirectory("slots"), controllerURL: fleet.controllerURL,
                                               enrollToken: try await fleet.enrollmentToken(), name: "slots")
        configuration.probationSeconds = probation
        let runtime = try AgentRuntime(configuration: configuration, logger: Logger(label: "slot-test-agent"))
        try await runtime.enrollIfNeeded()
        let deviceID = try #require(await runtime.deviceID)
        return (Device(fleet: fleet, configuration: configuration, deviceID: deviceID, versions: versions), runtime)
    }

    @Test("an install removes stale partial downloads; an unusable active model falls back to the previous slot and is reported failed")
    func staleDownloadsAndFallback() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        let (device, runtime) = try await device(fleet, probation: 0)
        let (v1, v2) = (device.versions[0], device.versions[1])
        try await device.install(v1, on: runtime)

        // A download abandoned by a superseded deployment, left by an earlier run.
        let stale = device.downloads.appendingPathComponent(String(repeating: "ab", count: 32) + ".part")
        try Data(repeating: 7, count: 4096).write(to: stale)
        try await device.install(v2, on: runtime)
        #expect(!FileManager.default.fileExists(atPath: stale.path), "the stale .part file is removed by the next install")
        #expect(try FileManager.default.contentsOfDirectory(atPath: device.downloads.path).isEmpty)

        // The active slot's file is damaged (a bad sector, a hand edit): on start the agent
        // serves the previous slot, and the controller learns the deployment failed.
        let file = device.modelFile(v2)
        try Data(try Data(contentsOf: file).prefix(1000)).write(to: file)
        let restarted = try await device.restart()
        let status = await restarted.status()
        #expect(status.active?.sha256 == v1.sha256 && status.previous == nil, "serves v1 from the previous slot")
        #expect(try restarted.infer(body: try fashionImages(count: 1)[0]).model.version == v1.version)
        try await eventually("the controller sees v1 running and the v2 deployment failed") {
            try await restarted.heartbeat()
            let seen = try await fleet.device(named: "slots")
            return seen?.activeModel?.sha256 == v1.sha256 && seen?.deploymentState == .failed
                && seen?.deploymentReason?.contains("the installed model cannot be loaded") == true
        }
    }

    @Test("probation reverts a new model after three restarts, and after repeated problems")
    func probationReverts() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        let (device, runtime) = try await device(fleet, probation: 600)
        let (v1, v2) = (device.versions[0], device.versions[1])
        try await device.install(v1, on: runtime)  // no previous slot yet: no probation
        try await device.install(v2, on: runtime)

        // Three starts inside the probation window: the third goes back to v1.
        var restarted = try await device.restart()
        #expect(await restarted.status().active?.sha256 == v2.sha256, "one restart is not enough")
        restarted = try await device.restart()
        #expect(await restarted.status().active?.sha256 == v2.sha256, "nor two")
        restarted = try await device.restart()
        #expect(await restarted.status().active?.sha256 == v1.sha256, "the third start reverts to the previous slot")
        try await eventually("the revert is reported") {
            try await restarted.heartbeat()
            let seen = try await fleet.device(named: "slots")
            return seen?.deploymentState == .failed && seen?.deploymentReason?.contains("restarted 3 times") == true
        }

        // Problems during probation (as failed inferences count them): the third reverts.
        let v3 = try await fleet.uploadModel(try sampleCNNVariant("slots-three"), name: "slots")
        try await device.install(v3, on: restarted)
        let model = try #require(await restarted.state.active)
        for count in 1...2 {
            await restarted.probationViolation(model, "inference failed: test \(count)")
            #expect(await restarted.status().active?.sha256 == v3.sha256, "\(count) problems are tolerated")
        }
        await restarted.probationViolation(model, "inference failed: test 3")
        #expect(await restarted.status().active?.sha256 == v1.sha256, "the third problem reverts to the previous slot")
        try await eventually("the revert is reported with its cause") {
            try await restarted.heartbeat()
            let seen = try await fleet.device(named: "slots")
            return seen?.deploymentState == .failed && seen?.deploymentReason?.contains("3 problems during probation") == true
        }
    }
}
