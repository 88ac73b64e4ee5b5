import FleetKit
import Foundation
import Testing

/// A controller restored from a backup older than what its agents accepted: before the
/// durable counter and the resync, the next deployment reused a sequence the agent had
/// accepted, and the agent ignored it forever ("not newer") while the controller showed it
/// pending. Real controller and agent processes, a real `fleet-controller backup`.
@Suite("Sequence resynchronisation")
struct SequenceResyncTests {
    @Test("after a restore from an older backup, an agent that accepted a newer sequence is resynchronised and runs the new deployment")
    func restoredController() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        try fleet.startAgent("a", token: try await fleet.enrollmentToken())
        try await eventually("the agent enrolled") { try await fleet.devices().count == 1 }
        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-cnn.bnn").path, "--name", "fashion"])
        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-mlp.bnn").path, "--name", "fashion"])
        let backup = fleet.root.appendingPathComponent("before-deployments.sqlite")
        let copy = try TestProcess("fleet-controller", ["backup", backup.path, "--data-dir", fleet.controllerDataDirectory.path],
                                   name: "backup", directory: fleet.root)
        copy.process.waitUntilExit()
        #expect(copy.process.terminationStatus == 0, "\(copy.output)")

        try fleet.fleetctl(["deploy", "model", "v1", "--wait", "--timeout", "60s"])
        try fleet.fleetctl(["deploy", "model", "v2", "--wait", "--timeout", "60s"])
        #expect(try await fleet.device(named: "a")?.activeModel?.sequence == 2)

        // Restore: stop, put the backup in place without its WAL, start on the same port.
        let port = fleet.controllerPort
        fleet.controller!.stop()
        let database = fleet.controllerDataDirectory.appendingPathComponent("fleet.sqlite")
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database.path + suffix) }
        try FileManager.default.copyItem(at: backup, to: database)
        try fleet.startController(port: port)
        #expect(try await fleet.admin.json("GET", "/api/v1/deployments", as: [DeploymentInfo].self).isEmpty)

        // The restored controller issues sequence 1 again; the agent accepted 2.
        let reissued = try FleetJSON.decoder.decode(DeploymentInfo.self, from: Data(try fleet.fleetctl(["deploy", "model", "v1", "--json"]).utf8))
        #expect(reissued.sequence == 1)
        do {
            try await eventually("the agent runs v1 under a sequence above the one it accepted", timeout: 90) {
                let device = try await fleet.device(named: "a")
                return device?.activeModel?.version == "v1" && (device?.activeModel?.sequence ?? 0) > 2
            }
        } catch {
            // What the agent and controller saw, for a failure on a busy machine.
            let deviceID = try await fleet.device(named: "a")?.id ?? "?"
            let events = (try? await fleet.admin.json("GET", "/api/v1/devices/\(deviceID)/events", as: [DeviceEvent].self)) ?? []
            let deployments = (try? await fleet.admin.json("GET", "/api/v1/deployments", as: [DeploymentInfo].self)) ?? []
            print("resync failed; events: \(events.map { "\($0.kind): \($0.message)" })\ndeployments: \(deployments.map { ($0.sequence, $0.version, $0.counts) })\nagent log:\n\(fleet.agents["a"]?.output.suffix(3000) ?? "")")
            throw error
        }
        let deployments = try await fleet.admin.json("GET", "/api/v1/deployments", as: [DeploymentInfo].self)
        #expect(deployments.contains { $0.sequence == 3 && $0.createdBy.hasPrefix("resync") }, "\(deployments.map { ($0.sequence, $0.createdBy) })")
        let exposition = String(decoding: try await fleet.admin.send("GET", "/metrics").0, as: UTF8.self)
        #expect(exposition.contains("bitfleet_sequence_resyncs_total 1"))
        // New deployments continue above it.
        let next = try FleetJSON.decoder.decode(DeploymentInfo.self, from: Data(try fleet.fleetctl(["deploy", "model", "v2", "--json"]).utf8))
        #expect(next.sequence == 4)
    }
}
