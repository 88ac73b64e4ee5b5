import BitModel
import FleetKit
import Foundation
import Testing

/// Load shedding of model downloads: with every transfer slot and queue place taken, the
/// controller answers a blob request 503 with Retry-After and closes the connection, and a
/// real agent waits its turn instead of failing the deployment.
@Suite("Download admission", .serialized)
struct DownloadAdmissionTests {
    @Test("a full download queue answers 503 + Retry-After and closes; the agent waits its turn and installs")
    func busyControllerIsWaitedFor() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        fleet.controllerFlags = ["--max-concurrent-transfers", "1", "--max-queued-transfers", "0"]
        try fleet.startController()
        try fleet.startAgent("a", token: try await fleet.enrollmentToken())
        let credential = try fleet.agentIdentity("a").credential
        try await eventually("the agent is online") { try await fleet.device(named: "a")?.status == "online" }
        // Larger than the kernel's socket buffers (4 MB send + a few KB receive), so a client
        // that stops reading really stalls the controller's transfer.
        var big = SyntheticModels.binaryConvLayer(size: 4, channels: 2368, seed: 3)
        big.metadata.name = "big"
        let model = try await fleet.uploadModel(big, name: "big")
        #expect(model.size > 6_000_000)
        let blobRequest = "GET /api/v1/blobs/\(model.sha256) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(credential)\r\n\r\n"

        // A client that reads a few bytes of the blob and then stops holds the only slot.
        let holder = try RawHTTPSocket(port: fleet.controllerPort, receiveBuffer: 4096)
        try holder.send(blobRequest)
        #expect(holder.read(atLeast: 1024) >= 1024, "the holder's transfer started")

        let probe = try RawHTTPSocket(port: fleet.controllerPort)
        try probe.send(blobRequest)
        let answer = probe.readUntilClosed()
        #expect(answer.text.hasPrefix("HTTP/1.1 503"), "\(answer.text.prefix(300))")
        #expect(answer.text.lowercased().contains("retry-after: 1\r\n"), "\(answer.text.prefix(300))")
        #expect(answer.text.contains("\"busy\""), "\(answer.text.prefix(300))")
        #expect(answer.closedByServer, "the refused client's connection is closed, not kept alive")

        // The agent's download is refused too, and it keeps coming back instead of failing.
        let deployment = try await fleet.admin.json("POST", "/api/v1/deployments",
                                                    body: DeploymentRequest(model: "big", version: model.version, target: DeploymentTarget()),
                                                    as: DeploymentInfo.self)
        try await eventually("the agent is refused a download slot at least twice", timeout: 30) {
            try await Self.shedCount(fleet) >= 3
        }
        let waiting = try await NetworkFaultTests.deployment(fleet, deployment.id)
        #expect(waiting.counts["downloading"] == 1 && waiting.counts["failed", default: 0] == 0,
                "a busy controller is not a failed install, and nothing installs while the slot is held: \(waiting.counts)")

        // The slot comes free: the agent gets its turn and installs.
        holder.close()
        try await eventually("the agent installs once a slot is free", timeout: 60) {
            try await NetworkFaultTests.deployment(fleet, deployment.id).counts["active"] == 1
        }
        #expect(!fleet.agents["a"]!.output.contains("install of big \(model.version) failed"), "the agent reported no failure:\n\(fleet.agents["a"]!.output)")
    }

    static func shedCount(_ fleet: TestFleet) async throws -> Int {
        let (metrics, _) = try await fleet.admin.send("GET", "/metrics")
        let line = String(decoding: metrics, as: UTF8.self).split(separator: "\n")
            .first { $0.hasPrefix("bitfleet_blob_requests_shed_total ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? 0
    }
}
