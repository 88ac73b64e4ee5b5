import BitModel
import Crypto
import FleetKit
import Foundation
import Testing

/// The product's spine with real processes on loopback: a controller, three agents (one
/// behind an intercepting proxy that records every request), fleetctl. Push, deploy, infer, aggregate, deploy while an
/// agent is down, refuse tampered/forged/replayed manifests, restart the controller.
@Suite("Fleet end to end", .serialized)
struct EndToEndTests {
    @Test("deploy a signed model to a fleet of real agents and converge")
    func fleet() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()

        // Agent "a" talks to the controller through a proxy that records every request it sends.
        let proxy = try InterceptingProxy(upstreamPort: fleet.controllerPort)
        defer { proxy.stop() }
        try fleet.startAgent("a", token: try await fleet.enrollmentToken(labels: ["site": "berlin"]),
                             controller: URL(string: "http://127.0.0.1:\(proxy.port)")!)
        try fleet.startAgent("b", token: try await fleet.enrollmentToken(labels: ["site": "berlin"]))
        try fleet.startAgent("c", token: try await fleet.enrollmentToken(labels: ["site": "paris"]))
        try await eventually("three devices online") {
            let devices = try await fleet.devices()
            return devices.count == 3 && devices.allSatisfy { $0.status == "online" }
        }

        // v1: push with fleetctl, deploy with fleetctl, every agent runs it.
        let pushed = try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-cnn.bnn").path, "--name", "fashion"])
        #expect(pushed.contains("pushed fashion v1"))
        try fleet.fleetctl(["deploy", "model", "v1", "--wait", "--timeout", "60s"])
        try await eventually("all agents report fashion v1 active") {
            try await fleet.devices().allSatisfy { $0.activeModel?.version == "v1" && $0.deploymentState == .active }
        }
        let (deviceA, credentialA) = try fleet.agentIdentity("a")
        let deviceClientA = FleetHTTPClient(baseURL: fleet.controllerURL, token: credentialA)
        let manifestV1 = try await deviceClientA.json("GET", "/api/v1/manifest", as: SignedManifest.self)

        // Inference through agent a's local endpoint; aggregates reach the controller.
        let images = try fashionImages(count: 20)
        let local = FleetHTTPClient(baseURL: fleet.agentURLs["a"]!, token: nil)
        var predictions: [Int] = []
        for image in images {
            let (data, _) = try await local.send("POST", "/v1/infer", body: image, contentType: "application/octet-stream")
            predictions.append(try FleetJSON.decoder.decode(InferenceResponse.self, from: data).topClass)
        }
        try await eventually("20 inferences of fashion v1 in the controller's metrics") {
            let metrics = try await fleet.admin.json("GET", "/api/v1/metrics?since=3600", as: MetricsSummary.self)
            return metrics.entries.first { $0.version == "v1" }?.inferences == 20
        }
        let metrics = try await fleet.admin.json("GET", "/api/v1/metrics?since=3600&model=fashion", as: MetricsSummary.self)
        var expectedCounts = [Int](repeating: 0, count: 10)
        for p in predictions { expectedCounts[p] += 1 }
        #expect(metrics.entries.first?.classCounts == expectedCounts)
        // fleetctl names the top classes by the model's labels, as the dashboard does.
        let labels = try String(contentsOf: sampleModels.appendingPathComponent("labels.txt"), encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(metrics.entries.first?.classLabels == labels)
        let topClass = try #require(expectedCounts.indices.max { (expectedCounts[$0], $1) < (expectedCounts[$1], $0) })
        let printed = try fleet.fleetctl(["metrics", "--since", "1h", "--model", "fashion"])
        #expect(printed.contains("\(labels[topClass]):\(expectedCounts[topClass])"), "\(printed)")
        // Prometheus: the controller's fleet gauges and the agent's own counters.
        let (controllerMetrics, _) = try await fleet.admin.send("GET", "/metrics")
        let exposition = String(decoding: controllerMetrics, as: UTF8.self)
        #expect(exposition.contains("bitfleet_devices{status=\"online\"} 3"), "\(exposition.prefix(2000))")
        #expect(exposition.contains("bitfleet_devices_running{model=\"fashion\",version=\"v1\"} 3"))
        #expect(exposition.contains("bitfleet_heartbeats_total"))
        #expect(exposition.contains("bitfleet_http_request_duration_seconds_bucket"))
        let (_, unauthorized) = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: nil).send("GET", "/metrics", acceptStatuses: [401])
        #expect(unauthorized.statusCode == 401)
        let agentMetrics = String(decoding: try await local.send("GET", "/metrics").0, as: UTF8.self)
        #expect(agentMetrics.contains("bitfleet_agent_inferences_total 20"), "\(agentMetrics.prefix(1500))")
        #expect(agentMetrics.contains("bitfleet_agent_model_info{role=\"active\",model=\"fashion\",version=\"v1\""))

        // Everything agent a sent (enrollment, heartbeats, reports, downloads) has only
        // allow-listed fields, and no image in any form: raw bytes, JSON numbers, base64.
        let sent = proxy.requests
        #expect(Set(sent.map(\.path)).isSuperset(of: ["/api/v1/enroll", "/api/v1/heartbeat", "/api/v1/reports"]), "\(Set(sent.map(\.path)))")
        for request in sent {
            let problems = WireAudit.problems(request, images: images)
            #expect(problems.isEmpty, "\(problems)")
        }

        // v2 while agent c is stopped: a and b move at once, c converges after restarting.
        fleet.agents["c"]!.stop()
        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-mlp.bnn").path, "--name", "fashion"])
        let deployOutput = try fleet.fleetctl(["deploy", "model", "v2", "--json"])
        #expect(deployOutput.contains("\"sequence\" : 2"))
        try await eventually("a and b run v2") {
            let devices = try await fleet.devices()
            return devices.filter { $0.name != "c" }.allSatisfy { $0.activeModel?.version == "v2" }
        }
        #expect(try await fleet.device(named: "c")?.activeModel?.version == "v1")
        try fleet.startAgent("c", token: nil)
        try await eventually("c converges to v2 after restart") {
            try await fleet.device(named: "c")?.activeModel?.version == "v2"
        }

        // v3 whose blob is tampered on the controller's disk: refused by every agent, reported.
        var tamperedModel = try ModelReader.read(contentsOf: sampleModels.appendingPathComponent("bnn-cnn.bnn"))
        tamperedModel.metadata.description = "same network, different bytes"
        let v3 = try await fleet.admin.send("POST", "/api/v1/models?name=fashion", body: try ModelWriter.data(for: tamperedModel),
                                            contentType: "application/octet-stream")
        let v3Info = try FleetJSON.decoder.decode(ModelVersionInfo.self, from: v3.0)
        let blob = fleet.controllerDataDirectory.appendingPathComponent("blobs/\(v3Info.sha256)")
        var bytes = try Data(contentsOf: blob)
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: blob)
        try fleet.fleetctl(["deploy", "model", "v3"])
        try await eventually("every agent reports the tampered v3 as failed") {
            let deployments = try await fleet.admin.json("GET", "/api/v1/deployments", as: [DeploymentInfo].self)
            return deployments.first { $0.version == "v3" }?.counts["failed"] == 3
        }
        let failed = try await fleet.admin.json("GET", "/api/v1/deployments/3", as: DeploymentInfo.self)
        #expect(failed.devices?.allSatisfy { $0.reason?.contains("sha256") == true } == true, "\(String(describing: failed.devices))")
        #expect(try await fleet.devices().allSatisfy { $0.activeModel?.version == "v2" }, "the running model must stay")
        let stillServing = try await local.send("POST", "/v1/infer", body: images[0], contentType: "application/octet-stream")
        #expect(try FleetJSON.decoder.decode(InferenceResponse.self, from: stillServing.0).version == "v2")

        // A manifest signed by another key, and a replay of the old v1 manifest, pushed
        // straight to agent a: both refused (409) and reported as device events.
        let forger = ManifestSigner(privateKey: Curve25519.Signing.PrivateKey())
        let identity = try await deviceClientA.json("GET", "/api/v1/health", as: [String: String].self)
        let forged = try forger.sign(DeploymentManifest(fleetID: identity["fleetID"]!, deviceID: deviceA, sequence: 99, model: "fashion",
                                                        version: "evil", sha256: v3Info.sha256, size: v3Info.size, issuedAt: Date(),
                                                        blobPath: "/api/v1/blobs/\(v3Info.sha256)"))
        for (manifest, expected) in [(forged, "signature"), (manifestV1, "not newer")] {
            let (_, response) = try await local.send("POST", "/v1/push", body: try FleetJSON.encoder.encode(manifest), acceptStatuses: [409])
            #expect(response.statusCode == 409)
            try await eventually("agent a reports the refused manifest (\(expected))") {
                let events = try await fleet.admin.json("GET", "/api/v1/devices/\(deviceA)/events", as: [DeviceEvent].self)
                return events.contains { $0.kind == "manifest_refused" && $0.message.contains(expected) }
            }
        }
        #expect(try await fleet.device(named: "a")?.activeModel?.version == "v2")

        // The controller restarts on the same data and port and has lost nothing.
        let before = (try await fleet.admin.json("GET", "/api/v1/models", as: [ModelVersionInfo].self),
                      try await fleet.admin.json("GET", "/api/v1/deployments", as: [DeploymentInfo].self))
        let port = fleet.controllerPort
        fleet.controller!.stop()
        try fleet.startController(port: port)
        let after = (try await fleet.admin.json("GET", "/api/v1/models", as: [ModelVersionInfo].self),
                     try await fleet.admin.json("GET", "/api/v1/deployments", as: [DeploymentInfo].self))
        #expect(after.0 == before.0)
        #expect(after.1.map(\.sequence) == before.1.map(\.sequence))
        #expect(try await fleet.admin.json("GET", "/api/v1/metrics?since=3600&model=fashion", as: MetricsSummary.self)
            .entries.first { $0.version == "v1" }?.inferences == 20)
        let restartedAt = Date()
        try await eventually("agents heartbeat to the restarted controller") {
            try await fleet.devices().allSatisfy { ($0.lastSeen ?? .distantPast) > restartedAt && $0.status == "online" }
        }
    }

    /// A model that is far slower on the device than its metadata's latency budget is
    /// reverted by the agent during probation, which reports why.
    @Test("a misbehaving model is reverted to the previous slot during probation")
    func probationRevert() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        try fleet.startAgent("p", token: try await fleet.enrollmentToken(), extra: ["--probation", "120"])
        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-cnn.bnn").path, "--name", "fashion"])
        try fleet.fleetctl(["deploy", "model", "v1", "--wait", "--timeout", "60s"])
        var slow = try ModelReader.read(contentsOf: sampleModels.appendingPathComponent("bnn-cnn.bnn"))
        slow.metadata.properties["latency_budget_ms"] = "0.00001"
        _ = try await fleet.admin.send("POST", "/api/v1/models?name=fashion", body: try ModelWriter.data(for: slow), contentType: "application/octet-stream")
        try fleet.fleetctl(["deploy", "model", "v2", "--wait", "--timeout", "60s"])
        try await eventually("the device runs v2") { try await fleet.device(named: "p")?.activeModel?.version == "v2" }
        let local = FleetHTTPClient(baseURL: fleet.agentURLs["p"]!, token: nil)
        for image in try fashionImages(count: 4) {
            _ = try await local.send("POST", "/v1/infer", body: image, contentType: "application/octet-stream")
        }
        try await eventually("the agent reverts to v1 and reports v2 as failed") {
            let device = try await fleet.device(named: "p")
            return device?.activeModel?.version == "v1" && device?.deploymentState == .failed
        }
        let device = try #require(try await fleet.device(named: "p"))
        #expect(device.deploymentReason?.contains("reverted to v1") == true, "\(device.deploymentReason ?? "")")
        let (data, _) = try await local.send("POST", "/v1/infer", body: try fashionImages(count: 1)[0], contentType: "application/octet-stream")
        #expect(try FleetJSON.decoder.decode(InferenceResponse.self, from: data).version == "v1")
    }

    /// The controller's signing key is rotated; agents move their pin through the
    /// announcement signed by the old key and accept manifests signed by the new one,
    /// while the retired key can no longer deploy anything.
    @Test("signing key rotation is announced with the old key and followed by agents")
    func keyRotation() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        try fleet.startAgent("k1", token: try await fleet.enrollmentToken())
        try fleet.startAgent("k2", token: try await fleet.enrollmentToken())
        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-cnn.bnn").path, "--name", "fashion"])
        try fleet.fleetctl(["deploy", "model", "v1", "--wait", "--timeout", "60s"])

        let port = fleet.controllerPort
        fleet.controller!.stop()
        let rotation = try TestProcess("fleet-controller", ["rotate-signing-key", "--data-dir", fleet.controllerDataDirectory.path],
                                       name: "rotate", directory: fleet.root)
        let newKey = try rotation.waitForLine("new signing public key: ([A-Za-z0-9+/=]+)")
        let retired = try FileManager.default.contentsOfDirectory(atPath: fleet.controllerDataDirectory.path).first { $0.hasPrefix("signing.key.retired-") }
        let retiredURL = fleet.controllerDataDirectory.appendingPathComponent(try #require(retired))
        let mode = try FileManager.default.attributesOfItem(atPath: retiredURL.path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        try fleet.startController(port: port)

        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-mlp.bnn").path, "--name", "fashion"])
        try fleet.fleetctl(["deploy", "model", "v2", "--wait", "--timeout", "60s"])
        try await fleet.waitUntilEveryDeviceRuns("v2")
        for name in ["k1", "k2"] {
            let identity = try JSONSerialization.jsonObject(with: Data(contentsOf: fleet.agentDataDirectory(name).appendingPathComponent("identity.json"))) as! [String: Any]
            #expect(identity["publicKey"] as? String == newKey)
        }
        let oldKey = try Curve25519.Signing.PrivateKey(rawRepresentation: Data(contentsOf: retiredURL))
        let (deviceID, _) = try fleet.agentIdentity("k1")
        let fleetID = try await fleet.admin.json("GET", "/api/v1/health", as: [String: String].self)["fleetID"]!
        let stale = try ManifestSigner(privateKey: oldKey).sign(DeploymentManifest(
            fleetID: fleetID, deviceID: deviceID, sequence: 50, model: "fashion", version: "v1", sha256: String(repeating: "0", count: 64),
            size: 10, issuedAt: Date(), blobPath: "/x"))
        let (_, response) = try await FleetHTTPClient(baseURL: fleet.agentURLs["k1"]!, token: nil)
            .send("POST", "/v1/push", body: try FleetJSON.encoder.encode(stale), acceptStatuses: [409])
        #expect(response.statusCode == 409, "a manifest signed with the retired key is refused")
    }

    /// An agent behind a proxy that cuts every connection after 300 KB from the server:
    /// the 840 KB model still arrives, chunk by chunk, resuming after each cut.
    @Test("a download cut mid-transfer resumes and the model installs")
    func cutConnections() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        try fleet.startController()
        let proxy = try RecordingProxy(upstreamPort: fleet.controllerPort, cutAfterBytes: 300_000)
        defer { proxy.stop() }
        try fleet.startAgent("n", token: try await fleet.enrollmentToken(), controller: URL(string: "http://127.0.0.1:\(proxy.port)")!)
        try fleet.fleetctl(["model", "push", sampleModels.appendingPathComponent("bnn-mlp.bnn").path, "--name", "fashion"])
        try fleet.fleetctl(["deploy", "model", "v1", "--wait", "--timeout", "90s"])
        try await eventually("the agent runs the model") { try await fleet.device(named: "n")?.activeModel?.version == "v1" }
        #expect(proxy.cutConnections >= 2, "the proxy cut \(proxy.cutConnections) connections")
        let (data, _) = try await FleetHTTPClient(baseURL: fleet.agentURLs["n"]!, token: nil)
            .send("POST", "/v1/infer", body: try fashionImages(count: 1)[0], contentType: "application/octet-stream")
        #expect(try FleetJSON.decoder.decode(InferenceResponse.self, from: data).version == "v1")
    }
}
