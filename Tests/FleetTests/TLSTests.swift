import FleetKit
import FleetNIOHTTP
import Foundation
import NIOPosix
import NIOSSL
import Synchronization
import Testing

/// The controller's optional HTTPS (HummingbirdTLS), checked with curl against a
/// certificate made for the test: the API answers over TLS to a client that trusts the
/// certificate, plain HTTP on the same port gets no answer, an untrusting client refuses
/// the connection, and a broken TLS configuration stops the controller with a clear error.
@Suite("Controller TLS")
struct TLSTests {
    struct Curl {
        var status: Int32
        var output: String
    }

    static func curl(_ arguments: [String]) throws -> Curl {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["curl", "--silent", "--show-error", "--max-time", "10"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Curl(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    /// A self-signed ECDSA certificate for 127.0.0.1, made with the openssl CLI.
    static func makeCertificate(in directory: URL) throws -> (certificate: String, key: String) {
        let certificate = directory.appendingPathComponent("cert.pem").path, key = directory.appendingPathComponent("key.pem").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                             "-keyout", key, "-out", certificate, "-days", "2", "-subj", "/CN=127.0.0.1",
                             "-addext", "subjectAltName=IP:127.0.0.1"]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw TestFailure("openssl could not make a test certificate") }
        return (certificate, key)
    }

    @Test("the controller serves its API over HTTPS when given a certificate")
    func https() async throws {
        let fleet = try TestFleet()
        let (certificate, key) = try Self.makeCertificate(in: fleet.root)
        fleet.controllerFlags = ["--tls-certificate", certificate, "--tls-key", key]
        try fleet.startController()
        #expect(fleet.controllerURL.scheme == "https")
        let base = fleet.controllerURL.absoluteString

        let health = try Self.curl(["--cacert", certificate, "\(base)/api/v1/health"])
        #expect(health.status == 0 && health.output.contains("\"status\":\"ok\""), "\(health.output)")
        let status = try Self.curl(["--cacert", certificate, "-H", "Authorization: Bearer \(fleet.adminToken!)", "\(base)/api/v1/status"])
        #expect(status.status == 0 && status.output.contains("devices"), "\(status.output)")
        let noToken = try Self.curl(["--cacert", certificate, "-o", "/dev/null", "-w", "%{http_code}", "\(base)/api/v1/status"])
        #expect(noToken.output == "401", "\(noToken.output)")

        // Plain HTTP to the TLS port gets no HTTP answer; a client without the CA refuses.
        let plain = try Self.curl(["http://127.0.0.1:\(fleet.controllerPort)/api/v1/health"])
        #expect(plain.status != 0 && !plain.output.contains("fleetID"), "\(plain.output)")
        let untrusted = try Self.curl(["\(base)/api/v1/health"])
        #expect(untrusted.status != 0 && untrusted.output.lowercased().contains("certificate"), "\(untrusted.output)")
    }

    @Test("an agent and fleetctl that trust only the fleet's private CA work over HTTPS; other CAs are refused")
    func privateCA() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        let (certificate, key) = try Self.makeCertificate(in: fleet.root)
        // The idle timer of a connection runs from accept, TLS handshake included; in CI,
        // with every suite in parallel on two cores, a debug-build handshake can take
        // seconds, so the default 2 s would test the machine's load instead of trust.
        fleet.controllerFlags = ["--tls-certificate", certificate, "--tls-key", key, "--idle-timeout", "15"]
        try fleet.startController()
        fleet.adminTransport = try PinnedCATransport(caCertificateFile: certificate)

        // Enrollment, heartbeats, a deployment and its Range download (64 KB chunks), all over TLS.
        try fleet.startAgent("secure", token: try await fleet.enrollmentToken(), extra: ["--ca-certificate", certificate, "--chunk-bytes", "65536"])
        try await eventually("the agent enrolls and heartbeats over HTTPS") { try await fleet.device(named: "secure")?.status == "online" }
        // The push reports its upload as the socket takes it (fleetctl's progress bar).
        let model = try Data(contentsOf: sampleModels.appendingPathComponent("bnn-mlp.bnn"))
        let uploaded = Mutex<[Int]>([])
        let pushing = try PinnedCATransport(caCertificateFile: certificate, uploadProgress: { sent in uploaded.withLock { $0.append(sent) } })
        _ = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: fleet.adminToken, timeout: 30, transport: pushing)
            .send("POST", "/api/v1/models?name=fashion&version=v1", body: model, contentType: "application/octet-stream")
        let progress = uploaded.withLock { $0 }
        #expect(progress.count == (model.count + HTTPConnection.progressSliceBytes - 1) / HTTPConnection.progressSliceBytes
                && progress == progress.sorted() && progress.last == model.count, "upload progress \(progress) of \(model.count) bytes")
        let deployment = try await NetworkFaultTests.deploy(fleet, "v1")
        try await eventually("the agent downloads and activates the model over HTTPS", timeout: 60) {
            try await NetworkFaultTests.deployment(fleet, deployment.id).counts["active"] == 1
        }

        // fleetctl with the CA lists the device; with another CA it names the certificate problem.
        let listed = try fleet.fleetctl(["devices", "list"], environment: ["FLEET_CA_CERTIFICATE": certificate])
        #expect(listed.contains("secure"), "\(listed)")
        let otherDirectory = fleet.root.appendingPathComponent("other-ca")
        try FileManager.default.createDirectory(at: otherDirectory, withIntermediateDirectories: true)
        let (otherCA, _) = try Self.makeCertificate(in: otherDirectory)
        let refused = try fleet.fleetctl(["devices", "list"], expectFailure: true, environment: ["FLEET_CA_CERTIFICATE": otherCA])
        #expect(refused.uppercased().contains("CERTIFICATE"), "\(refused)")
        let missing = try fleet.fleetctl(["devices", "list"], expectFailure: true,
                                         environment: ["FLEET_CA_CERTIFICATE": fleet.root.appendingPathComponent("nope.pem").path])
        #expect(missing.contains("nope.pem"), "\(missing)")

        // A handshake that fails before any request is written still reports the certificate,
        // not a bare "I/O on closed channel" (wait for the refused connection to close first).
        var otherTrust = TLSConfiguration.makeClientConfiguration()
        otherTrust.trustRoots = .file(otherCA)
        let early = try await HTTPConnection.connect(host: "127.0.0.1", port: fleet.controllerPort, group: MultiThreadedEventLoopGroup.singleton,
                                                     tls: try NIOSSLContext(configuration: otherTrust))
        try await eventually("the refused TLS connection closes") { !early.isActive }
        do {
            _ = try await early.request(.GET, "/api/v1/health")
            Issue.record("a request on a connection whose handshake failed succeeded")
        } catch {
            #expect("\(error)".uppercased().contains("CERTIFICATE"), "\(error)")
        }

        // An agent that trusts the system store (or another CA) never enrolls with this controller.
        try fleet.startAgent("untrusting", token: try await fleet.enrollmentToken(), extra: ["--ca-certificate", otherCA])
        try await eventually("the untrusting agent reports the certificate failure") {
            fleet.agents["untrusting"]!.output.contains("enrollment failed") && fleet.agents["untrusting"]!.output.uppercased().contains("CERTIFICATE")
        }
        #expect(try await fleet.device(named: "untrusting") == nil)
    }

    @Test("a certificate without its key, or an unreadable one, stops the controller with a clear error")
    func brokenConfiguration() throws {
        let root = try temporaryDirectory("bitfleet-tls")
        defer { try? FileManager.default.removeItem(at: root) }
        let (certificate, _) = try Self.makeCertificate(in: root)
        let garbage = root.appendingPathComponent("garbage.pem")
        try Data("not a certificate".utf8).write(to: garbage)
        for (flags, message) in [(["--tls-certificate", certificate], "needs both --tls-certificate and --tls-key"),
                                 (["--tls-certificate", garbage.path, "--tls-key", garbage.path], garbage.path)] {
            let process = try TestProcess("fleet-controller", ["serve", "--data-dir", root.appendingPathComponent("data").path,
                                                               "--listen", "127.0.0.1:0"] + flags,
                                          name: "controller-tls-\(UUID().uuidString.prefix(4))", directory: root)
            defer { process.stop() }
            _ = try process.waitForLine("(\(NSRegularExpression.escapedPattern(for: message)))")
            let deadline = Date().addingTimeInterval(20)
            while process.process.isRunning && Date() < deadline { usleep(50_000) }
            #expect(!process.process.isRunning && process.process.terminationStatus != 0,
                    "the controller kept running, or exited cleanly, with a broken TLS configuration")
        }
    }
}
