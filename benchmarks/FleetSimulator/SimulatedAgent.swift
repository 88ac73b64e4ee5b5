import FleetNIOHTTP
import Crypto
import FleetKit
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// One simulated device speaking the real agent protocol: enrollment with a one-time
/// token, heartbeats (state, queued reports, an aggregate window now and then), manifests
/// verified against the pinned Ed25519 key, blobs fetched in Range chunks and checked
/// against the signed SHA-256, and deployment reports. It keeps models in memory instead
/// of on disk: what is measured is the controller, not this machine's filesystem.
actor SimulatedAgent {
    struct Identity: Sendable {
        var deviceID: String
        var credential: String
        var fleetID: String
        var publicKey: String
        var verifier: ManifestVerifier
    }

    let index: Int
    let link: ControllerLink
    let stats: SimulationStats
    private(set) var identity: Identity?
    private var pushURL = ""
    private var lastAccepted: Int64 = 0
    private(set) var active: ActiveModel?
    private var pendingReports: [DeploymentReport] = []
    private var installing = false
    private var heartbeats = 0
    /// Heartbeats and installs each use their own keep-alive connection, as a real agent's
    /// HTTP client would while a download is running.
    private let control: ConnectionSlot
    private let transfer: ConnectionSlot

    init(index: Int, link: ControllerLink, stats: SimulationStats) {
        self.index = index
        self.link = link
        self.stats = stats
        control = ConnectionSlot(link: link)
        transfer = ConnectionSlot(link: link)
    }

    var name: String { String(format: "sim-%05d", index) }

    func enroll(token: String, pushURL: String) async throws {
        self.pushURL = pushURL
        // As the real agent: pin the controller's key only if the token vouches for it.
        let parsed = EnrollmentToken(parsing: token)
        let expected = try EnrollmentTrust.expectedFingerprint(token: parsed, configured: nil)
        let request = EnrollRequest(token: parsed.secret, name: name, labels: ["sim": "true"], pushURL: pushURL, agentVersion: "sim-0.1.0")
        let response = try await control.json(.POST, "/api/v1/enroll", body: request, credential: nil, as: EnrollResponse.self)
        try EnrollmentTrust.check(publicKey: response.publicKey, fleetID: response.fleetID, expected: expected,
                                  announcements: response.keyAnnouncements ?? [])
        try EnrollmentTrust.checkReceipt(response, tokenSecret: parsed.secret)
        identity = Identity(deviceID: response.deviceID, credential: response.credential, fleetID: response.fleetID,
                            publicKey: response.publicKey,
                            verifier: try ManifestVerifier(publicKeyBase64: response.publicKey, fleetID: response.fleetID,
                                                           deviceID: response.deviceID))
    }

    /// One heartbeat; returns its latency. Reports ride along until acknowledged; every
    /// `aggregateEvery`-th heartbeat carries a closed aggregate window, as an agent with a
    /// 60 s window and a 5 s heartbeat does.
    func heartbeat(aggregateEvery: Int, signedReply: Bool = true) async throws -> Duration {
        guard let identity else { throw HTTPConnection.Failure(description: "not enrolled") }
        heartbeats += 1
        let reports = pendingReports
        var aggregates: [AggregateWindow] = []
        if let active, aggregateEvery > 0, heartbeats % aggregateEvery == 0 {
            aggregates.append(Self.window(model: active, seed: index &+ heartbeats))
        }
        var request = HeartbeatRequest(agentVersion: "sim-0.1.0", pushURL: pushURL, activeModel: active, reports: reports,
                                       aggregates: aggregates, events: [])
        let nonce = Secrets.randomToken(bytes: 16)
        request.nonce = signedReply ? nonce : nil
        let started = ContinuousClock.now
        let response = try await control.json(.POST, "/api/v1/heartbeat", body: request, credential: identity.credential,
                                              as: HeartbeatResponse.self)
        let latency = ContinuousClock.now - started
        // The real agent's check of the signed reply (one Ed25519 verification), outside
        // the measured latency, which is the controller's.
        let desired = signedReply
            ? try HeartbeatReplyVerifier.verify(response.signed, pinnedKey: identity.publicKey, fleetID: identity.fleetID,
                                                deviceID: identity.deviceID, nonce: nonce, requestAge: 0).reply.desired
            : response.desired
        pendingReports.removeFirst(min(reports.count, pendingReports.count))
        if let desired { _ = receive(desired, source: "heartbeat") }
        return latency
    }

    /// Verifies a manifest (push or heartbeat) and starts its installation; returns the
    /// refusal reason, or nil when accepted or already running.
    func receive(_ signed: SignedManifest, source: String) -> String? {
        guard let identity else { return "not enrolled" }
        let manifest: DeploymentManifest
        do {
            manifest = try identity.verifier.verify(signed, lastAccepted: lastAccepted)
        } catch ManifestError.notNewer {
            return nil
        } catch {
            stats.count("manifest refused (\(source)): \(error)")
            return "\(error)"
        }
        if !installing {
            installing = true
            if source == "push" { stats.count("installs started by push") } else { stats.count("installs started by heartbeat") }
            Task { await self.install(manifest) }
        }
        return nil
    }

    private func install(_ manifest: DeploymentManifest) async {
        defer { installing = false }
        do {
            await report(manifest.sequence, .downloading)
            try await download(manifest)
            await report(manifest.sequence, .installed)
            active = ActiveModel(name: manifest.model, version: manifest.version, sha256: manifest.sha256, sequence: manifest.sequence)
            lastAccepted = manifest.sequence
            stats.activated(at: ContinuousClock.now)
            await report(manifest.sequence, .active)
        } catch {
            stats.count("install failed: \(error)")
            await report(manifest.sequence, .failed, "\(error)")
        }
    }

    private func download(_ manifest: DeploymentManifest) async throws {
        guard let identity else { return }
        var hasher = SHA256()
        var have = 0
        let chunk = 256 * 1024
        while have < manifest.size {
            let end = min(have + chunk, manifest.size) - 1
            var attempt = 0
            var response: HTTPConnection.Response
            while true {
                do {
                    response = try await transfer.request(.GET, manifest.blobPath, credential: identity.credential,
                                                          headers: [("Range", "bytes=\(have)-\(end)")])
                } catch where attempt < 5 {
                    attempt += 1
                    stats.count("blob chunk retried")
                    try await Task.sleep(for: .milliseconds(100 << attempt))
                    continue
                }
                // Busy: come back after Retry-After with jitter, as the real agent does.
                guard response.status == 503 else { break }
                stats.count("blob request answered busy (503), retried")
                let wait = FleetClientError.busyDelay(retryAfter: response.retryAfter)
                try await Task.sleep(for: .milliseconds(Int(wait * 1000)))
            }
            guard response.status == 206, response.body.readableBytes == end - have + 1 else {
                throw HTTPConnection.Failure(description: "blob answer \(response.status) with \(response.body.readableBytes) bytes")
            }
            response.body.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
            have += response.body.readableBytes
            stats.downloaded(response.body.readableBytes)
        }
        let digest = Secrets.hex(hasher.finalize())
        guard digest == manifest.sha256.lowercased() else {
            throw HTTPConnection.Failure(description: "blob sha256 \(digest.prefix(12)) does not match the manifest")
        }
    }

    /// Sends a report at once; if that fails it stays queued for the next heartbeat.
    private func report(_ sequence: Int64, _ state: DeploymentState, _ reason: String? = nil) async {
        guard let identity else { return }
        let report = DeploymentReport(sequence: sequence, state: state, reason: reason)
        do {
            let body = try FleetJSON.encoder.encode([report])
            let response = try await transfer.request(.POST, "/api/v1/reports", credential: identity.credential, body: body)
            guard (200..<300).contains(response.status) else { throw HTTPConnection.Failure(description: "report answer \(response.status)") }
        } catch {
            stats.count("report queued for the next heartbeat")
            pendingReports.append(report)
        }
    }

    /// A plausible closed one-minute window: 60 inferences over 10 classes.
    static func window(model: ActiveModel, seed: Int) -> AggregateWindow {
        let minute = (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 60
        var window = AggregateWindow(start: Date(timeIntervalSince1970: minute), end: Date(timeIntervalSince1970: minute + 60),
                                     model: model.name, version: model.version, classes: 10)
        for i in 0..<60 {
            window.record(predictedClass: (seed &+ i) % 10, latencyMs: 0.2 + Double(i % 7) * 0.05, confidence: 0.5 + Float(i % 5) * 0.1)
        }
        return window
    }
}

/// A lazily (re)connected keep-alive connection to the controller. Each slot is used by
/// one task at a time (its agent's heartbeat loop or its install), never concurrently.
final class ConnectionSlot: @unchecked Sendable {
    private let link: ControllerLink
    private var connection: HTTPConnection?

    init(link: ControllerLink) { self.link = link }

    func request(_ method: HTTPMethod, _ path: String, credential: String?, headers: [(String, String)] = [],
                 body: Data? = nil) async throws -> HTTPConnection.Response {
        var allHeaders = headers
        if let credential { allHeaders.append(("Authorization", "Bearer \(credential)")) }
        if body != nil { allHeaders.append(("Content-Type", "application/json")) }
        let sendOnce = { [self] () async throws -> HTTPConnection.Response in
            if connection?.isActive != true {
                connection = try await HTTPConnection.connect(host: link.host, port: link.port, group: link.group)
            }
            do {
                return try await connection!.request(method, path, headers: allHeaders, body: body.map { ByteBuffer(bytes: $0) })
            } catch {
                connection?.close()
                connection = nil
                throw error
            }
        }
        // A kept-alive connection may be closed by the controller's idle timeout just as a
        // request goes out; like libcurl, send such a request once more on a fresh connection
        // (device requests are idempotent: reports and aggregates are deduplicated).
        guard connection?.isActive == true else { return try await sendOnce() }
        do {
            return try await sendOnce()
        } catch {
            return try await sendOnce()
        }
    }

    func json<Body: Encodable, Answer: Decodable>(_ method: HTTPMethod, _ path: String, body: Body, credential: String?,
                                                 as: Answer.Type) async throws -> Answer {
        let response = try await request(method, path, credential: credential, body: try FleetJSON.encoder.encode(body))
        guard (200..<300).contains(response.status) else {
            let text = response.body.getString(at: response.body.readerIndex, length: min(response.body.readableBytes, 300)) ?? ""
            throw HTTPConnection.Failure(description: "\(method) \(path) answered \(response.status): \(text)")
        }
        return try FleetJSON.decoder.decode(Answer.self, from: Data(buffer: response.body))
    }
}
