import Crypto
import FleetAgent
import FleetKit
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Authenticated enrollment, signed heartbeat replies, live key rotation and the agent's
/// LAN listener, with real controller and agent processes (docs/API.md, docs/OPERATIONS.md).
@Suite("Controller trust end to end", .serialized)
struct ControllerTrustEndToEndTests {
    // MARK: Enrollment

    @Test("a controller answering enrollment with its own key is refused: the error names both fingerprints, nothing is pinned")
    func impostorRefused() async throws {
        let real = try TestFleet()
        defer { real.shutdown() }
        try real.startController()
        let vouched = try #require(EnrollmentToken(parsing: try await real.enrollmentToken()).fingerprint)
        let impostor = try TestFleet()
        defer { impostor.shutdown() }
        try impostor.startController()
        // The impostor accepts the secret (it saw the token: DNS, mDNS or ARP spoofing at
        // enrollment) and answers with its own key; the token vouches for the real one.
        let seen = EnrollmentToken(parsing: try await impostor.enrollmentToken())
        let answered = try #require(seen.fingerprint)
        let token = EnrollmentToken(secret: seen.secret, fingerprint: vouched).text
        try impostor.startAgent("victim", token: token)
        let agent = try #require(impostor.agents["victim"])
        let line = try agent.waitForLine("(refusing to enroll: the controller answered with signing key [^\\n]*)")
        #expect(line.contains(answered) && line.contains(vouched), "\(line)")
        let identity = impostor.agentDataDirectory("victim").appendingPathComponent("identity.json")
        #expect(!FileManager.default.fileExists(atPath: identity.path), "the impostor's key was pinned")
        #expect(try await impostor.agentStatus("victim").deviceID == nil)
        #expect(agent.process.isRunning)
    }

    @Test("a man in the middle passing the real key through but swapping the credential is refused by the signed receipt")
    func swappedCredentialRefused() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        // The attacker's own device, enrolled with another stolen token.
        let attacker = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: nil).json(
            "POST", "/api/v1/enroll", body: EnrollRequest(token: EnrollmentToken(parsing: try await fleet.enrollmentToken()).secret, name: "attacker",
                                                          labels: [:], pushURL: "", agentVersion: "x"), as: EnrollResponse.self)
        let proxy = try RewritingProxy(upstreamPort: fleet.controllerPort, path: "/api/v1/enroll")
        defer { proxy.stop() }
        proxy.mode = .rewrite { body in
            guard var object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else { return body }
            object["deviceID"] = attacker.deviceID
            object["credential"] = attacker.credential
            return (try? JSONSerialization.data(withJSONObject: object)) ?? body
        }
        try fleet.startAgent("victim", token: try await fleet.enrollmentToken(), controller: proxy.url)
        let line = try #require(fleet.agents["victim"]).waitForLine("(refusing to enroll: the enrollment answer's receipt [^\\n]*)")
        #expect(line.contains("does not match"), "\(line)")
        #expect(proxy.rewritten >= 1)
        #expect(!FileManager.default.fileExists(atPath: fleet.agentDataDirectory("victim").appendingPathComponent("identity.json").path))
    }

    @Test("a token without fingerprint and no flag refuses to start; the flag or its env var enrolls; a contradicting flag refuses")
    func fingerprintRequired() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        let first = EnrollmentToken(parsing: try await fleet.enrollmentToken())
        let fingerprint = try #require(first.fingerprint)

        let bare = try fleet.runAgentToExit("bare", ["--enroll-token", first.secret])
        #expect(bare.status == 2 && bare.output.contains("refusing to enroll: neither the enrollment token nor --controller-key-fingerprint"),
                "\(bare.status): \(bare.output.suffix(500))")
        #expect(!FileManager.default.fileExists(atPath: fleet.agentDataDirectory("bare").appendingPathComponent("identity.json").path))

        // The same (unused) secret with the fingerprint given out of band.
        try fleet.startAgent("flagged", token: first.secret, extra: ["--controller-key-fingerprint", fingerprint])
        #expect(try fleet.agentIdentity("flagged").deviceID.hasPrefix("dev_"))
        let second = EnrollmentToken(parsing: try await fleet.enrollmentToken())
        try fleet.startAgent("env", token: second.secret,
                             environment: ["BITFLEET_CONTROLLER_KEY_FINGERPRINT": String(fingerprint.dropFirst("sha256:".count))])
        #expect(try fleet.agentIdentity("env").deviceID.hasPrefix("dev_"))
        #expect(try await fleet.device(named: "flagged") != nil)
        #expect(try await fleet.device(named: "env") != nil)

        let other = "sha256:" + String(repeating: "0", count: 64)
        let conflicting = try fleet.runAgentToExit("conflict", ["--enroll-token", try await fleet.enrollmentToken(), "--controller-key-fingerprint", other])
        #expect(conflicting.status == 2 && conflicting.output.contains("vouches for controller key \(fingerprint) but --controller-key-fingerprint says \(other)"),
                "\(conflicting.output.suffix(500))")
        // A wrong fingerprint for a bare token: refused when the answer comes.
        let third = EnrollmentToken(parsing: try await fleet.enrollmentToken())
        try fleet.startAgent("wrong", token: third.secret, extra: ["--controller-key-fingerprint", other])
        let line = try #require(fleet.agents["wrong"]).waitForLine("(refusing to enroll: the controller answered with signing key [^\\n]*)")
        #expect(line.contains(fingerprint) && line.contains(other))
        #expect(!FileManager.default.fileExists(atPath: fleet.agentDataDirectory("wrong").appendingPathComponent("identity.json").path))

        let badInterval = try fleet.runAgentToExit("interval", ["--enroll-token", try await fleet.enrollmentToken(), "--heartbeat-interval", "0"])
        #expect(badInterval.status != 0 && badInterval.output.contains("--heartbeat-interval must be between 1 and 86400"))
    }

    // MARK: Signed replies

    @Test("a man in the middle rewriting or replaying heartbeat replies is refused and reported; the agent keeps its settings and pace")
    func manInTheMiddle() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        let protected = PrivacySettings(minCount: 2, epsilon: 1)
        _ = try await fleet.admin.json("PUT", "/api/v1/privacy", body: protected, as: PrivacySettings.self)
        let proxy = try RewritingProxy(upstreamPort: fleet.controllerPort, path: "/api/v1/heartbeat")
        defer { proxy.stop() }
        // No --heartbeat-interval: the agent paces itself by the (signed) reply.
        try fleet.startAgentFollowingController("m", token: try await fleet.enrollmentToken(), controller: proxy.url)
        let deviceID = try fleet.agentIdentity("m").deviceID
        let fleetID = try await fleet.admin.json("GET", "/api/v1/health", as: [String: String].self)["fleetID"]!
        let good = try await fleet.uploadModel(try sampleCNNVariant("mitm"), name: "mitm")
        let deployment = try await fleet.deploy("mitm", good.version, to: deviceID)
        try await eventually("the agent runs the deployed model") {
            let status = try await fleet.agentStatus("m")
            return status.active?.sha256 == good.sha256 && status.lastAcceptedSequence == deployment.sequence
        }
        try await eventually("the agent applies the fleet's privacy settings") { try fleet.agentPrivacy("m") == protected }
        #expect(try await fleet.deviceEvents(deviceID).allSatisfy { $0.kind != "heartbeat_reply_refused" }, "honest replies were refused")

        // 1. Rewritten: interval 1e300 (plain) and 0 (signed payload), privacy off, and a
        //    manifest the attacker signed, in both the plain fields and the signed payload.
        let attacker = ManifestSigner(privateKey: Curve25519.Signing.PrivateKey())
        let evil = try attacker.sign(DeploymentManifest(fleetID: fleetID, deviceID: deviceID, sequence: 999, model: "evil", version: "evil",
                                                        sha256: good.sha256, size: good.size, issuedAt: Date(), blobPath: "/api/v1/blobs/\(good.sha256)"))
        proxy.mode = .rewrite { Self.tamper($0, evil: evil) }
        let image = try fashionImages(count: 1)[0]
        for _ in 0..<5 { _ = try await fleet.agentInfer("m", image) }
        try await eventually("each refused reply is reported as a device event") {
            try await fleet.deviceEvents(deviceID).contains { $0.kind == "heartbeat_reply_refused" && $0.message.contains("signature does not verify") }
        }
        let start = proxy.requests.count
        try await Task.sleep(for: .seconds(5))
        let during = proxy.requests.count - start
        #expect((2...15).contains(during), "\(during) heartbeats in 5 s: the agent stalled (1e300 s) or spins (0 s)")
        #expect(proxy.rewritten >= during)
        // What it released meanwhile is still noised and suppressed as before.
        let released = proxy.requests.suffix(during + 3).compactMap { try? FleetJSON.decoder.decode(HeartbeatRequest.self, from: $0) }.flatMap(\.aggregates)
        #expect(!released.isEmpty, "no aggregate window was sent while replies were rewritten")
        #expect(released.allSatisfy { $0.privacy?.contains("laplace epsilon=1") == true && $0.privacy?.contains("suppressed below 2") == true },
                "\(released.map(\.privacy))")
        #expect(try fleet.agentPrivacy("m") == protected)
        let status = try await fleet.agentStatus("m")
        #expect(status.active?.sha256 == good.sha256 && status.lastAcceptedSequence == deployment.sequence)
        #expect(try #require(fleet.agents["m"]).process.isRunning)

        // 2. Replayed: an authentic reply to an earlier heartbeat.
        proxy.mode = .replay(index: 0)
        try await eventually("replayed replies are refused and reported") {
            try await fleet.deviceEvents(deviceID).contains { $0.kind == "heartbeat_reply_refused" && $0.message.contains("replayed") }
        }
        #expect(try fleet.agentPrivacy("m") == protected)

        // 3. Honest again: the agent follows the controller's new settings.
        proxy.mode = .pass
        let changed = PrivacySettings(minCount: 4, epsilon: 2)
        _ = try await fleet.admin.json("PUT", "/api/v1/privacy", body: changed, as: PrivacySettings.self)
        try await eventually("the agent applies settings from honest replies again") { try fleet.agentPrivacy("m") == changed }
        print("man in the middle: \(proxy.rewritten) replies rewritten or replayed, all refused; \(during) heartbeats in 5 s meanwhile")
    }

    /// Rewrites a heartbeat reply as an attacker would: both the plain fields and the
    /// signed payload (whose signature then no longer matches).
    static func tamper(_ body: Data, evil: SignedManifest) -> Data {
        guard var object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else { return body }
        let evilObject: [String: Any] = ["payload": evil.payload, "signature": evil.signature]
        object["heartbeatInterval"] = 1e300
        object["privacy"] = ["minCount": 0]
        object["desired"] = evilObject
        if var signed = object["signed"] as? [String: Any], let text = signed["payload"] as? String, let payload = Data(base64Encoded: text),
           var inner = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any] {
            inner["heartbeatInterval"] = 0
            inner["privacy"] = ["minCount": 0]
            inner["desired"] = evilObject
            signed["payload"] = ((try? JSONSerialization.data(withJSONObject: inner)) ?? payload).base64EncodedString()
            object["signed"] = signed
        }
        return (try? JSONSerialization.data(withJSONObject: object)) ?? body
    }

    // MARK: Key rotation

    @Test("rotate-signing-key while the controller runs: agents follow without a restart, install what the new key signs, old tokens still enroll")
    func rotationWhileRunning() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        for name in ["r1", "r2"] { try fleet.startAgent(name, token: try await fleet.enrollmentToken()) }
        let early = try await fleet.enrollmentToken()
        let oldKey = try fleet.agentPinnedKey("r1")
        try await eventually("both agents heartbeat") { try await fleet.devices().allSatisfy { $0.lastSeen != nil && $0.status == "online" } }
        let controllerPID = try #require(fleet.controller).process.processIdentifier

        let rotation = try TestProcess("fleet-controller", ["rotate-signing-key", "--data-dir", fleet.controllerDataDirectory.path],
                                       name: "rotate", directory: fleet.root)
        rotation.process.waitUntilExit()
        #expect(rotation.process.terminationStatus == 0, "\(rotation.output)")
        let newKey = try rotation.waitForLine("new signing public key: ([A-Za-z0-9+/=]+)")
        #expect(newKey != oldKey)
        try await eventually("both agents pin the new key at a heartbeat", timeout: 30) {
            try ["r1", "r2"].allSatisfy { try fleet.agentPinnedKey($0) == newKey }
        }
        #expect(try #require(fleet.controller).process.isRunning && fleet.controller?.process.processIdentifier == controllerPID)
        #expect(try #require(fleet.controller).output.contains("now signing with the new key"))

        // Signed with the new key only, and accepted.
        let model = try await fleet.uploadModel(try sampleCNNVariant("rotated"), name: "rotated")
        for name in ["r1", "r2"] {
            let deviceID = try fleet.agentIdentity(name).deviceID
            _ = try await fleet.deploy("rotated", model.version, to: deviceID)
        }
        try await fleet.waitUntilEveryDeviceRuns(model.version)
        // A token made before the rotation vouches for the old key; the chain leads on.
        try fleet.startAgent("late", token: early)
        _ = try fleet.agentIdentity("late")
        #expect(try fleet.agentPinnedKey("late") == newKey)
        for device in try await fleet.devices() {
            let refused = try await fleet.deviceEvents(device.id).filter { $0.kind.hasSuffix("_refused") }
            #expect(refused.isEmpty, "\(device.name): \(refused)")
        }
    }

    // MARK: The agent's listener

    @Test("address classification: only 127/8, ::1 and their mapped forms are local")
    func loopbackClassification() {
        for local in ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"] {
            #expect(LoopbackAddress.isLoopback(host: local), "\(local)")
        }
        for remote in ["10.0.0.7", "192.168.1.2", "128.0.0.1", "0.0.0.0", "::", "fe80::1", "::ffff:10.0.0.1", "127.0.0", "127.0.0.1.5", "1270.0.0.1", "localhost"] {
            #expect(!LoopbackAddress.isLoopback(host: remote), "\(remote)")
        }
    }

    @Test("/metrics and /v1/status: local clients only, exposed on purpose by --metrics-listen; idle connections are closed",
          .enabled(if: nonLoopbackIPv4() != nil, "this machine has no non-loopback IPv4 address to connect from"))
    func listenerExposure() async throws {
        let lan = try #require(nonLoopbackIPv4())
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        try fleet.startAgentFollowingController("l", token: try await fleet.enrollmentToken(), controller: fleet.controllerURL,
                                                listen: "0.0.0.0:0", extra: ["--metrics-listen", "0.0.0.0:0", "--idle-timeout", "1",
                                                                             "--heartbeat-interval", "1"])
        _ = try fleet.agentIdentity("l")
        let agent = try #require(fleet.agents["l"])
        let port = try #require(fleet.agentURLs["l"]?.port)
        let metricsPort = try #require(Int(try agent.waitForLine("agent metrics on http://[0-9.]+:([0-9]+)")))

        func get(_ path: String, host: String, port: Int) throws -> String {
            let socket = try RawHTTPSocket(port: port, host: host)
            try socket.send("GET \(path) HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
            return socket.readUntilClosed().text
        }
        for path in ["/metrics", "/v1/status"] {
            let remote = try get(path, host: lan, port: port)
            #expect(remote.hasPrefix("HTTP/1.1 403") && remote.contains("--metrics-listen"), "\(path) from \(lan): \(remote.prefix(300))")
            #expect(try get(path, host: "127.0.0.1", port: port).hasPrefix("HTTP/1.1 200"), "\(path) from loopback")
            #expect(try get(path, host: lan, port: metricsPort).hasPrefix("HTTP/1.1 200"), "\(path) on --metrics-listen")
        }
        #expect(try get("/v1/health", host: lan, port: port).hasPrefix("HTTP/1.1 200"))
        #expect(try get("/metrics", host: lan, port: metricsPort).contains("bitfleet_agent_buffered_windows"))
        #expect(try get("/v1/infer", host: lan, port: metricsPort).hasPrefix("HTTP/1.1 404"), "only metrics and status are exposed")

        // An idle connection is closed by the agent after --idle-timeout.
        let idle = try RawHTTPSocket(port: port)
        let opened = Date()
        let result = idle.readUntilClosed()
        let held = Date().timeIntervalSince(opened)
        #expect(result.closedByServer && held < 8, "idle connection held \(held) s (closed by server: \(result.closedByServer))")
    }

    @Test("forged pushes touch no file in the agent's data directory; the first few are reported, the rest paced")
    func forgedPushesCostNoDiskWrite() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        try fleet.startAgent("f", token: try await fleet.enrollmentToken())
        let deviceID = try fleet.agentIdentity("f").deviceID
        try await eventually("the agent heartbeats") { try await fleet.device(named: "f")?.lastSeen != nil }
        let fleetID = try await fleet.admin.json("GET", "/api/v1/health", as: [String: String].self)["fleetID"]!
        // With the controller gone no heartbeat writes state, so any write would be the pushes'.
        let port = fleet.controllerPort
        fleet.controller?.stop()
        try await Task.sleep(for: .seconds(3))
        let before = try Self.fileStamps(fleet.agentDataDirectory("f"))
        let forger = ManifestSigner(privateKey: Curve25519.Signing.PrivateKey())
        let agent = fleet.agentClient("f")
        for sequence in 1...60 {
            let forged = try forger.sign(DeploymentManifest(fleetID: fleetID, deviceID: deviceID, sequence: Int64(sequence), model: "x", version: "x",
                                                            sha256: String(repeating: "c", count: 64), size: 10, issuedAt: Date(), blobPath: "/x"))
            let (_, response) = try await agent.send("POST", "/v1/push", body: try FleetJSON.encoder.encode(forged), acceptStatuses: [409])
            #expect(response.statusCode == 409)
        }
        try await Task.sleep(for: .milliseconds(500))
        let after = try Self.fileStamps(fleet.agentDataDirectory("f"))
        #expect(before == after, "forged pushes changed files: \(Set(after.map(\.key)).symmetricDifference(before.map(\.key))) or their times")
        let logged = try #require(fleet.agents["f"]).output.components(separatedBy: "push manifest refused").count - 1
        #expect((1...30).contains(logged), "\(logged) log lines for 60 forged pushes (at most 30 a minute)")
        // Reported with the next heartbeat, paced.
        try fleet.startController(port: port)
        try await eventually("the refused pushes reach the controller as events") {
            try await fleet.deviceEvents(deviceID).contains { $0.kind == "manifest_refused" }
        }
        let refused = try await fleet.deviceEvents(deviceID).filter { $0.kind == "manifest_refused" }
        #expect((1...30).contains(refused.count), "\(refused.count) events for 60 forged pushes (at most 30 a minute)")
    }

    /// Path -> (modification time, size) of every file below `directory`.
    static func fileStamps(_ directory: URL) throws -> [String: String] {
        var stamps: [String: String] = [:]
        let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.contentModificationDateKey, .fileSizeKey])
        while let url = enumerator?.nextObject() as? URL {
            let values = try url.resourceValues(forKeys: [.contentModificationDateKey, .fileSizeKey])
            stamps[url.path] = "\(values.contentModificationDate?.timeIntervalSince1970 ?? 0) \(values.fileSize ?? 0)"
        }
        return stamps
    }
}

extension TestFleet {
    /// Starts an agent without `--heartbeat-interval`, so it follows the controller's
    /// (signed) interval.
    func startAgentFollowingController(_ name: String, token: String, controller: URL, listen: String = "127.0.0.1:0", extra: [String] = []) throws {
        let arguments = ["run", "--data-dir", agentDataDirectory(name).path, "--controller", controller.absoluteString, "--listen", listen,
                         "--name", name, "--aggregate-window", "1", "--enroll-token", token] + extra
        let process = try TestProcess("fleet-agent", arguments, name: "agent-\(name)-\(UUID().uuidString.prefix(4))", directory: root)
        agents[name] = process
        agentURLs[name] = URL(string: try process.waitForLine("agent listening on (http://[0-9.:]+)"))!
    }

    /// Runs `fleet-agent run` expected to exit by itself (within 20 s); its status and output.
    func runAgentToExit(_ name: String, _ extra: [String]) throws -> (status: Int32, output: String) {
        let arguments = ["run", "--data-dir", agentDataDirectory(name).path, "--controller", controllerURL.absoluteString,
                         "--listen", "127.0.0.1:0", "--name", name] + extra
        let process = try TestProcess("fleet-agent", arguments, name: "agent-\(name)-\(UUID().uuidString.prefix(4))", directory: root)
        let deadline = Date().addingTimeInterval(20)
        while process.process.isRunning && Date() < deadline { usleep(50_000) }
        guard !process.process.isRunning else {
            process.stop()
            throw TestFailure("fleet-agent \(name) kept running:\n\(process.output.suffix(1000))")
        }
        return (process.process.terminationStatus, process.output)
    }

    /// The controller key the agent pinned (its identity file).
    func agentPinnedKey(_ name: String) throws -> String {
        let data = try Data(contentsOf: agentDataDirectory(name).appendingPathComponent("identity.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try #require(object["publicKey"] as? String)
    }

    /// The privacy settings in the agent's saved state (what it applies after a restart too).
    func agentPrivacy(_ name: String) throws -> PrivacySettings? {
        guard let data = FileManager.default.contents(atPath: agentDataDirectory(name).appendingPathComponent("state.json").path),
              let object = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let privacy = object["privacy"] else { return nil }
        return try FleetJSON.decoder.decode(PrivacySettings.self, from: try JSONSerialization.data(withJSONObject: privacy))
    }
}

/// The first IPv4 address of this machine that is not loopback (to connect from it).
func nonLoopbackIPv4() -> String? {
    var list: UnsafeMutablePointer<ifaddrs>?
    guard getifaddrs(&list) == 0 else { return nil }
    defer { freeifaddrs(list) }
    var cursor = list
    while let entry = cursor {
        defer { cursor = entry.pointee.ifa_next }
        guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET) else { continue }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(address, socklen_t(MemoryLayout<sockaddr_in>.size), &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 else { continue }
        let text = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if !text.hasPrefix("127.") { return text }
    }
    return nil
}
