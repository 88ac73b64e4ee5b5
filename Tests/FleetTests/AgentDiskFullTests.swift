import BitModel
import Crypto
import FleetKit
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A full disk on the agent: new models are refused with a clear "disk full" reason
/// (visible as a failed deployment), state is never corrupted, and the running model
/// keeps serving. The reserve is tested on any machine; real ENOSPC needs a small tmpfs
/// (root can mount one; the test says so when it cannot).
@Suite("Agent full disk", .serialized)
struct AgentDiskFullTests {
    /// Waits for deployment `id` to fail on its one device with a reason containing every string in `expected`.
    static func expectFailed(_ fleet: TestFleet, _ deployment: DeploymentInfo, _ expected: [String]) async throws -> String {
        var reason = ""
        try await eventually("deployment \(deployment.sequence) fails with \(expected)", timeout: 60) {
            let info = try await fleet.admin.json("GET", "/api/v1/deployments/\(deployment.id)", as: DeploymentInfo.self)
            reason = info.devices?.first?.reason ?? ""
            return info.devices?.first?.state == .failed && expected.allSatisfy { reason.contains($0) }
        }
        return reason
    }

    /// The agent's state file is intact JSON naming `sha256` as active.
    static func stateNamesActive(_ directory: URL, _ sha256: String) throws -> Bool {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("state.json"))) as? [String: Any]
        return (object?["active"] as? [String: Any])?["sha256"] as? String == sha256
    }

    @Test("a deployment that would eat into the free-space reserve is refused as disk full; the model keeps serving")
    func reserve() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        try fleet.startAgent("r", token: try await fleet.enrollmentToken())
        let deviceID = try fleet.agentIdentity("r").deviceID
        let v1 = try await fleet.uploadModel(try sampleCNNVariant("disk-v1"), name: "disk")
        let v2 = try await fleet.uploadModel(try sampleCNNVariant("disk-v2"), name: "disk")
        _ = try await fleet.deploy("disk", v1.version, to: deviceID)
        try await eventually("the agent runs v1") { try await fleet.agentStatus("r").active?.sha256 == v1.sha256 }

        // Restarted with a reserve larger than any disk (through the environment variable).
        fleet.agents["r"]!.stop()
        let reserve: Int64 = 1 << 60
        try fleet.startAgent("r", token: nil, environment: ["BITFLEET_AGENT_MIN_FREE_BYTES": "\(reserve)"])
        let refused = try await fleet.deploy("disk", v2.version, to: deviceID)
        let directory = fleet.agentDataDirectory("r")
        let reason = try await Self.expectFailed(fleet, refused, ["disk full: need \(Int64(v2.size) + reserve) bytes", "reserve \(reserve)",
                                                                  "free on \(directory.path)"])
        print("reserve refusal: \(reason)")
        #expect(try await fleet.agentStatus("r").active?.sha256 == v1.sha256)
        #expect(try await fleet.agentInfer("r", try fashionImages(count: 1)[0]).version == v1.version)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("downloads").path).isEmpty,
                "nothing was downloaded")
        #expect(try Self.stateNamesActive(directory, v1.sha256))
        try await eventually("the refusal is also a device event") {
            try await fleet.deviceEvents(deviceID).contains { $0.kind == "install_failed" && $0.message.contains("disk full") }
        }
    }

    @Test("real ENOSPC on a tiny tmpfs: mid-download, on state writes and at the reserve check; state stays intact and the model serves",
          .enabled(if: Tmpfs.canMount, "mounting a tmpfs needs root"))
    func realFullDisk() async throws {
        let fleet = try TestFleet()
        let directory = fleet.agentDataDirectory("f")
        try Tmpfs.mount(at: directory, bytes: 1 << 20)
        defer {
            fleet.shutdown()
            Tmpfs.unmount(directory)
        }
        try fleet.startController()
        // Throttled and in small chunks, so the download lasts seconds and the test can
        // fill the disk while it runs.
        let proxy = try RecordingProxy(upstreamPort: fleet.controllerPort, delayPerRead: 150_000)
        defer { proxy.stop() }
        try fleet.startAgent("f", token: try await fleet.enrollmentToken(), controller: URL(string: "http://127.0.0.1:\(proxy.port)")!,
                             extra: ["--min-free-bytes", "0", "--chunk-bytes", "4096"])
        let deviceID = try fleet.agentIdentity("f").deviceID
        let v1 = try await fleet.uploadModel(try sampleCNNVariant("enospc-v1"), name: "disk")
        let v2 = try await fleet.uploadModel(try sampleCNNVariant("enospc-v2"), name: "disk")
        _ = try await fleet.deploy("disk", v1.version, to: deviceID)
        try await eventually("the agent runs v1", timeout: 90) { try await fleet.agentStatus("f").active?.sha256 == v1.sha256 }
        let image = try fashionImages(count: 1)[0]

        // ENOSPC in the middle of the download: another process fills the disk.
        let deployment = try await fleet.deploy("disk", v2.version, to: deviceID)
        let part = directory.appendingPathComponent("downloads/\(v2.sha256).part")
        try await eventually("the download has started", timeout: 60) {
            ((try? FileManager.default.attributesOfItem(atPath: part.path)[.size] as? Int) ?? 0) > 0
        }
        let filler = directory.appendingPathComponent("filler")
        Tmpfs.fill(filler)
        let reason = try await Self.expectFailed(fleet, deployment, ["disk full", "no space left"])
        print("ENOSPC mid-download: \(reason)")
        #expect(!FileManager.default.fileExists(atPath: part.path), "the partial download is removed to free the space")
        #expect(try Self.stateNamesActive(directory, v1.sha256))
        #expect(try await fleet.agentInfer("f", image).version == v1.version)

        // Completely full: a state write fails (a refused manifest must be recorded) and
        // the reserve check refuses the next deployment, both without corrupting anything.
        Tmpfs.fill(directory.appendingPathComponent("filler-2"))
        let forged = try ManifestSigner(privateKey: Curve25519.Signing.PrivateKey()).sign(DeploymentManifest(
            fleetID: "x", deviceID: deviceID, sequence: 99, model: "disk", version: "forged", sha256: v2.sha256, size: v2.size,
            issuedAt: Date(), blobPath: "/x"))
        let (_, pushed) = try await fleet.agentClient("f").send("POST", "/v1/push", body: try FleetJSON.encoder.encode(forged), acceptStatuses: [409])
        #expect(pushed.statusCode == 409)
        let again = try await fleet.deploy("disk", v2.version, to: deviceID)
        let full = try await Self.expectFailed(fleet, again, ["disk full: need \(v2.size) bytes"])
        print("full disk, reserve check: \(full)")
        try await eventually("the refused manifest still reaches the controller (from memory)") {
            try await fleet.deviceEvents(deviceID).contains { $0.kind == "manifest_refused" && $0.message.contains("signature") }
        }
        #expect(try Self.stateNamesActive(directory, v1.sha256), "state.json intact on a full disk")
        let status = try await fleet.agentStatus("f")
        #expect(status.active?.sha256 == v1.sha256)
        #expect(installedModelProblems(dataDirectory: directory, status: status).isEmpty)
        for _ in 0..<5 { #expect(try await fleet.agentInfer("f", image).version == v1.version) }
        let stray = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".tmp-") }
        #expect(stray.isEmpty, "failed atomic writes leave no temporary files: \(stray)")
    }
}

/// A size-limited tmpfs for real ENOSPC, mounted with mount(8).
enum Tmpfs {
    static let canMount: Bool = {
        guard getuid() == 0, let directory = try? temporaryDirectory("bitfleet-tmpfs-probe") else { return false }
        defer { try? FileManager.default.removeItem(at: directory) }
        guard (try? mount(at: directory, bytes: 64 << 10)) != nil else { return false }
        unmount(directory)
        return true
    }()

    static func run(_ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", arguments.map { "'\($0)'" }.joined(separator: " ") + " >/dev/null 2>&1"]
        guard (try? process.run()) != nil else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    static func mount(at directory: URL, bytes: Int) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        guard run(["mount", "-t", "tmpfs", "-o", "size=\(bytes),mode=0700", "tmpfs", directory.path]) == 0 else {
            throw TestFailure("cannot mount a tmpfs at \(directory.path)")
        }
    }

    static func unmount(_ directory: URL) {
        _ = run(["umount", "-l", directory.path])
    }

    /// Writes zeros into `file` until the file system is full.
    static func fill(_ file: URL) {
        guard FileManager.default.createFile(atPath: file.path, contents: nil), let handle = try? FileHandle(forWritingTo: file) else { return }
        defer { try? handle.close() }
        let block = Data(count: 4096)
        while (try? handle.write(contentsOf: block)) != nil {}
    }
}
