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
        let model = try await fleet.uploadModel(Self.modelLargerThanSocketBuffers(), name: "big")
        let blobRequest = "GET /api/v1/blobs/\(model.sha256) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(credential)\r\n\r\n"

        // A client that reads a few bytes of the blob and then stops holds the only slot.
        let holder = try RawHTTPSocket(port: fleet.controllerPort, receiveBuffer: 4096)
        try holder.send(blobRequest)
        #expect(holder.read(atLeast: 1024) >= 1024, "the holder's transfer started")
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await Self.transfers(fleet) == ["active": 1, "queued": 0],
                "the holder's transfer is stalled, not finished into socket buffers (\(model.size) bytes)")

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
        do {
            try await eventually("the agent is refused a download slot at least twice", timeout: 60) {
                try await Self.shedCount(fleet) >= 3
            }
        } catch {
            throw TestFailure("\(error); transfers \(try await Self.transfers(fleet)); agent output:\n\(fleet.agents["a"]!.output)")
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

    /// A valid model bigger than three times the kernel's largest TCP send buffer, so a client that
    /// stops reading really stalls the controller's transfer whatever this machine's tuning.
    /// One binary dense layer from packed words: megabytes of weights, cheap to build and run.
    static func modelLargerThanSocketBuffers() -> Model {
        func number(_ path: String, field: Int) -> Int {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            let fields = text.split(whereSeparator: \.isWhitespace)
            return field < fields.count ? Int(fields[field]) ?? 0 : 0
        }
        let sendBufferLimit = max(number("/proc/sys/net/ipv4/tcp_wmem", field: 2), number("/proc/sys/net/core/wmem_max", field: 0), 4 << 20)
        let bytes = 3 * sendBufferLimit + (1 << 20)
        let features = (Int(Double(bytes * 8).squareRoot()) / 64 + 1) * 64
        var b = ModelBuilder()
        let weights = b.addTensor(Tensor(shape: [features, features],
                                         packedBits: [UInt64](repeating: 0x9E37_79B9_7F4A_7C15, count: features * features / 64)))
        let multiplier = b.addTensor(Tensor(shape: [features], floats: [Float](repeating: 1, count: features)))
        let bias = b.addTensor(Tensor(shape: [features], floats: [Float](repeating: 0, count: features)))
        let bits = b.binarize(b.input)
        let dense = b.append(.binaryDense(BinaryDenseLayer(inFeatures: features, outFeatures: features, weights: weights,
                                                           multiplier: multiplier, bias: bias)),
                             inputs: [bits], name: "dense")
        let metadata = ModelMetadata(name: "big", version: "synthetic", description: "one wide binary dense layer", producer: "BitFleet tests",
                                     input: TensorSpec(name: "input", shape: [1, features], layout: .nc),
                                     output: TensorSpec(name: "output", shape: [1, features], layout: .nc))
        return b.build(metadata: metadata, output: dense)
    }

    static func shedCount(_ fleet: TestFleet) async throws -> Int {
        Int(try await metricSamples(fleet, "bitfleet_blob_requests_shed_total").values.first ?? 0)
    }

    /// `bitfleet_blob_transfers` by state.
    static func transfers(_ fleet: TestFleet) async throws -> [String: Int] {
        let samples = try await metricSamples(fleet, "bitfleet_blob_transfers{state=")
        return Dictionary(uniqueKeysWithValues: samples.map { (String($0.key.split(separator: "\"")[1]), Int($0.value)) })
    }

    /// The controller's Prometheus samples whose line starts with `prefix`, by series.
    static func metricSamples(_ fleet: TestFleet, _ prefix: String) async throws -> [String: Double] {
        let (metrics, _) = try await fleet.admin.send("GET", "/metrics")
        var samples: [String: Double] = [:]
        for line in String(decoding: metrics, as: UTF8.self).split(separator: "\n") where line.hasPrefix(prefix) {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = Double(parts[1]) { samples[String(parts[0])] = value }
        }
        return samples
    }
}
