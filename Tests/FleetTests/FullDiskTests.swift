import BitModel
import FleetKit
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A controller short of disk refuses new work with a clear 507 and keeps serving what it
/// has: the free-space reserve (`--min-free-bytes`) on any machine, and a real ENOSPC (blob
/// write and SQLite "database or disk is full") on a small tmpfs, skipped visibly where no
/// tmpfs can be mounted.
@Suite("Controller full disk", .serialized)
struct FullDiskTests {
    static func upload(_ fleet: TestFleet, _ body: Data, version: String) async throws -> Result<ModelVersionInfo, FleetClientError> {
        do {
            let (data, _) = try await fleet.admin.send("POST", "/api/v1/models?name=fashion&version=\(version)", body: body,
                                                       contentType: "application/octet-stream")
            return .success(try FleetJSON.decoder.decode(ModelVersionInfo.self, from: data))
        } catch let error as FleetClientError {
            return .failure(error)
        }
    }

    /// The device credential lets the test fetch a blob as an agent would.
    static func fetchBlob(_ fleet: TestFleet, agent: String, sha256: String) async throws -> Data {
        let credential = try fleet.agentIdentity(agent).credential
        return try await FleetHTTPClient(baseURL: fleet.controllerURL, token: credential).send("GET", "/api/v1/blobs/\(sha256)").0
    }

    @Test("uploads that would eat into the free-space reserve get 507; agents, heartbeats and the API carry on")
    func reserve() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        let cnn = try Data(contentsOf: sampleModels.appendingPathComponent("bnn-cnn.bnn"))
        guard case .success(let v1) = try await Self.upload(fleet, cnn, version: "v1") else {
            throw TestFailure("the first upload must fit the default reserve")
        }
        // A reserve no disk can keep: every upload is refused, nothing else is.
        fleet.controller!.stop()
        fleet.controllerFlags = ["--min-free-bytes", "1000000000000000000"]
        try fleet.startController(port: fleet.controllerPort)
        try fleet.startAgent("r", token: try await fleet.enrollmentToken())
        let mlp = try Data(contentsOf: sampleModels.appendingPathComponent("bnn-mlp.bnn"))
        guard case .failure(let refused) = try await Self.upload(fleet, mlp, version: "v2") else {
            throw TestFailure("an upload into the reserve was accepted")
        }
        #expect(refused.status == 507 && refused.code == "insufficient_storage")
        #expect(refused.message.contains(fleet.controllerDataDirectory.path) && refused.message.contains("--min-free-bytes"), "\(refused.message)")
        let cli = try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-mlp.bnn").path, "--name", "fashion"],
                                     expectFailure: true)
        #expect(cli.contains("not enough disk space"), "\(cli)")
        #expect(try await fleet.admin.json("GET", "/api/v1/models", as: [ModelVersionInfo].self).map(\.version) == ["v1"])
        let blobs = try FileManager.default.contentsOfDirectory(atPath: fleet.controllerDataDirectory.appendingPathComponent("blobs").path)
        #expect(blobs == [v1.sha256], "nothing of the refused upload was stored: \(blobs)")

        // What is stored is still served: a deployment reaches the agent, heartbeats flow.
        try fleet.fleetctl(["deploy", "model", "v1", "--wait", "--timeout", "60s"])
        try await eventually("the agent runs v1 and heartbeats") {
            let device = try await fleet.device(named: "r")
            return device?.activeModel?.version == "v1" && device?.status == "online"
        }
        #expect(sha256Hex(try await Self.fetchBlob(fleet, agent: "r", sha256: v1.sha256)) == v1.sha256)
    }

    @Test("a real full disk (tmpfs): blob and database writes answer 507, reads and blobs keep being served, writes resume when space returns",
          .enabled(if: Tmpfs.canMount, "mounting a tmpfs needs root (CAP_SYS_ADMIN)"))
    func tmpfs() async throws {
        let fleet = try TestFleet()
        let mountPoint = fleet.controllerDataDirectory
        try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
        // The probe could mount one, so this one must work: a failure here is a failure.
        try #require(run("/bin/mount", ["-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", mountPoint.path]) == 0,
                     "mount -t tmpfs on \(mountPoint.path)")
        // Runs after the fleet's processes are stopped (defers run in reverse order).
        defer { _ = run("/bin/umount", ["-l", mountPoint.path]) }
        defer { fleet.shutdown() }
        // The proxy holds the upload while the disk fills, which can take seconds on a busy
        // machine: longer than the default 2 s idle timeout, after which the controller
        // closed the connection with no answer.
        fleet.controllerFlags = ["--min-free-bytes", "0", "--idle-timeout", "60"]
        try fleet.startController()
        try fleet.startAgent("t", token: try await fleet.enrollmentToken())
        let cnn = try Data(contentsOf: sampleModels.appendingPathComponent("bnn-cnn.bnn"))
        guard case .success(let v1) = try await Self.upload(fleet, cnn, version: "v1") else { throw TestFailure("v1 must fit") }
        try fleet.fleetctl(["deploy", "model", "v1", "--wait", "--timeout", "60s"])

        // A 2 MB upload through a proxy passes the free-space check when it starts; while
        // it transfers the disk fills up to 1 MB free, so it is refused when stored.
        let large = LargeModel(floats: 512 * 1024)
        let proxy = try FaultProxy(upstreamPort: fleet.controllerPort, seed: 1, chunkDelay: 0.01)
        defer { proxy.stop() }
        proxy.holdUploads(after: 256 * 1024)
        let slow = FleetHTTPClient(baseURL: proxy.url, token: fleet.adminToken, timeout: 30)
        let body = try large.data(tag: "too late")
        let upload = Task { () -> FleetClientError? in
            do {
                _ = try await slow.send("POST", "/api/v1/models?name=fashion&version=late", body: body, contentType: "application/octet-stream")
                return nil
            } catch let error as FleetClientError {
                return error
            }
        }
        // The proxy holds the body after 256 KB (the upload has passed the free-space check
        // at its start) until the disk is full, so the order does not depend on how fast
        // this test's tasks are scheduled in a busy run.
        try await eventually("the upload is held half way") { proxy.counters.holdingUpload }
        let filler = mountPoint.appendingPathComponent("filler")
        fillDisk(filler.path, leaving: 1 << 20)
        proxy.releaseUploads()
        let refusal = try #require(try await upload.value, "the upload was stored on a full disk")
        // Depending on how far the body got before the disk filled, the refusal comes from
        // the blob write (ENOSPC) or from the free-space check once the body's size is known.
        #expect(refusal.status == 507 && refusal.code == "insufficient_storage"
                && (refusal.message.contains("disk is full") || refusal.message.contains("not enough disk space")), "\(refusal)")
        #expect(refusal.message.contains(mountPoint.path), "names where: \(refusal.message)")
        let blobs = mountPoint.appendingPathComponent("blobs")
        #expect(try FileManager.default.contentsOfDirectory(atPath: blobs.path) == [v1.sha256], "no partial blob left")
        // A new upload is refused up front by the free-space check.
        guard case .failure(let early) = try await Self.upload(fleet, try large.data(tag: "no room"), version: "early") else {
            throw TestFailure("an upload larger than the free space was accepted")
        }
        #expect(early.status == 507 && early.message.contains("not enough disk space"), "\(early)")
        let stored = [v1]
        #expect(try await fleet.admin.json("GET", "/api/v1/models", as: [ModelVersionInfo].self).map(\.sha256) == [v1.sha256])

        // Fill the last bytes: now SQLite cannot grow either.
        fillDisk(filler.path, leaving: 0)
        var databaseFull: FleetClientError?
        for _ in 0..<500 where databaseFull == nil {
            do {
                _ = try await fleet.enrollmentToken()
            } catch let error as FleetClientError {
                databaseFull = error
            }
        }
        let dbRefusal = try #require(databaseFull, "database writes kept succeeding on a full disk")
        #expect(dbRefusal.status == 507 && dbRefusal.message.contains("database") && dbRefusal.message.contains("fleet.sqlite"), "\(dbRefusal)")
        // Reads and blob downloads still work with no byte free.
        #expect(try await fleet.admin.json("GET", "/api/v1/models", as: [ModelVersionInfo].self).count == stored.count)
        #expect(sha256Hex(try await Self.fetchBlob(fleet, agent: "t", sha256: v1.sha256)) == v1.sha256)
        _ = try await fleet.admin.json("GET", "/api/v1/status", as: FleetStatus.self)

        // Space comes back: writes and heartbeats resume without a restart.
        try FileManager.default.removeItem(at: filler)
        _ = try await fleet.enrollmentToken()
        let back = Date()
        try await eventually("heartbeats are recorded again") {
            (try await fleet.device(named: "t")?.lastSeen ?? .distantPast) > back
        }
        #expect(try integrityCheck(mountPoint.appendingPathComponent("fleet.sqlite").path) == "ok")
    }

    /// Appends zeros to `path` until the file system has only `leaving` bytes free.
    func fillDisk(_ path: String, leaving: Int64) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        func free() -> Int64 {
            var stats = statvfs()
            statvfs(path, &stats)
            return Int64(stats.f_bavail) * Int64(stats.f_frsize)
        }
        for size in [1 << 20, 4096, 1] {
            let zeros = [UInt8](repeating: 0, count: size)
            while free() - Int64(size) >= leaving, write(fd, zeros, size) == size {}
        }
        fsync(fd)
    }

    func run(_ executable: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
