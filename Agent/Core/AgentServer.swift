import FleetKit
import Foundation
import Hummingbird
import Logging
import NIOCore

struct AgentRequestContext: RequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    var maxUploadSize: Int { 16 << 20 }

    var isLoopback: Bool { Self.isLoopback(remoteAddress) }

    static func isLoopback(_ address: SocketAddress?) -> Bool { LoopbackAddress.contains(address) }
}

/// Whether a peer is on this machine: 127.0.0.0/8, ::1, an IPv4-mapped 127.x (::ffff:127.x)
/// or a Unix socket. Everything else, this host's own LAN address and an unknown peer
/// included, is remote. Decided on the numeric address, never on a host name.
public enum LoopbackAddress {
    public static func contains(_ address: SocketAddress?) -> Bool {
        switch address {
        case .v4?, .v6?: return address?.ipAddress.map(isLoopback(host:)) ?? false
        case .unixDomainSocket?: return true
        default: return false
        }
    }

    public static func isLoopback(host: String) -> Bool {
        let lowered = host.lowercased()
        if lowered == "::1" || lowered == "0:0:0:0:0:0:0:1" { return true }
        let v4 = lowered.hasPrefix("::ffff:") ? String(lowered.dropFirst(7)) : lowered
        let octets = v4.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}

/// The agent's HTTP listener:
/// - `POST /v1/push`: a signed manifest from the controller (authenticated by signature);
/// - `POST /v1/infer`: local inference (.npy, PGM or raw float32), loopback clients only;
/// - `GET /metrics`, `GET /v1/status`: exact local counts, loopback clients only (the
///   controller sees only released aggregates), unless `--metrics-listen` exposes them on a
///   second listener on purpose;
/// - `GET /v1/health`.
/// Idle connections are closed after `listenerIdleTimeout`, so a LAN peer cannot hold them.
public enum AgentServer {
    public static func run(_ runtime: AgentRuntime, configuration: AgentConfiguration, logger: Logger,
                           onStart: @escaping @Sendable (String) async -> Void) async throws {
        let router = Router(context: AgentRequestContext.self)
        router.get("/v1/health") { _, _ in "ok" }
        router.get("/v1/status") { _, context in
            guard context.isLoopback else { return try localOnly("/v1/status") }
            return try json(await runtime.status())
        }
        router.get("/metrics") { _, context in
            guard context.isLoopback else { return try localOnly("/metrics") }
            return await metricsResponse(runtime)
        }
        router.post("/v1/push") { request, context in
            var request = request
            let body = try await request.collectBody(upTo: 64 * 1024)
            guard let manifest = try? FleetJSON.decoder.decode(SignedManifest.self, from: Data(buffer: body)) else {
                return try json(APIErrorBody(code: "invalid_body", message: "expected a signed manifest"), status: .badRequest)
            }
            // Verification is synchronous and touches no disk: a forged push costs one
            // signature check (and, a few a minute, an in-memory event). The download and
            // install of an authentic one continue in the background.
            let outcome = await runtime.verifyOnly(manifest)
            if let refusal = outcome {
                await runtime.recordRefusedPush(refusal)
                return try json(APIErrorBody(code: "manifest_refused", message: refusal), status: .conflict)
            }
            Task { await runtime.handle(manifest, source: "push") }
            return try json(["status": "accepted"], status: .accepted)
        }
        router.post("/v1/infer") { request, context in
            guard context.isLoopback else {
                return try json(APIErrorBody(code: "forbidden", message: "inference is only served to local clients"), status: .forbidden)
            }
            var request = request
            let body = try await request.collectBody(upTo: context.maxUploadSize)
            do {
                let input = Data(buffer: body)
                let result = try await InferenceWorker.run { try runtime.infer(body: input) }
                let label = result.labels.indices.contains(result.topClass) ? result.labels[result.topClass] : nil
                return try json(InferenceResponse(model: result.model.name, version: result.model.version, topClass: result.topClass,
                                                  label: label, confidence: result.confidence, latencyMs: result.latencyMs, scores: result.scores))
            } catch let failure as ModelRunner.Failure {
                let status: HTTPResponse.Status = { if case .noModel = failure { return .serviceUnavailable } else { return .badRequest } }()
                return try json(APIErrorBody(code: status == .serviceUnavailable ? "no_model" : "invalid_input", message: failure.description), status: status)
            }
        }
        let idle = TimeAmount.milliseconds(Int64(max(0.1, configuration.listenerIdleTimeout) * 1000))
        let app = Application(
            router: router,
            server: .http1(configuration: .init(idleTimeout: idle)),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "bitfleet-agent"),
            onServerRunning: { channel in
                await onStart("http://\(configuration.host):\(channel.localAddress?.port ?? configuration.port)")
            },
            logger: logger
        )
        guard let metricsHost = configuration.metricsHost, let metricsPort = configuration.metricsPort else {
            try await app.runService()
            return
        }
        // Exposed on purpose (`--metrics-listen`): anyone who reaches this address reads them.
        let exposed = Router(context: AgentRequestContext.self)
        exposed.get("/v1/health") { _, _ in "ok" }
        exposed.get("/v1/status") { _, _ in try json(await runtime.status()) }
        exposed.get("/metrics") { _, _ in await metricsResponse(runtime) }
        let metricsApp = Application(
            router: exposed,
            server: .http1(configuration: .init(idleTimeout: idle)),
            configuration: .init(address: .hostname(metricsHost, port: metricsPort), serverName: "bitfleet-agent-metrics"),
            onServerRunning: { channel in
                print("BitFleet agent metrics on http://\(metricsHost):\(channel.localAddress?.port ?? metricsPort)")
                fflush(nil)
            },
            logger: logger
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService() }
            group.addTask { try await metricsApp.runService() }
            try await group.next()
            group.cancelAll()
        }
    }

    static func metricsResponse(_ runtime: AgentRuntime) async -> Response {
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(string: await runtime.prometheusText())))
    }

    static func localOnly(_ path: String) throws -> Response {
        try json(APIErrorBody(code: "forbidden", message: "\(path) is served to local clients only; expose it with --metrics-listen HOST:PORT"),
                 status: .forbidden)
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(bytes: try FleetJSON.encoder.encode(value))))
    }
}

extension AgentRuntime {
    /// Checks a manifest without acting on it; the refusal reason, or nil if acceptable
    /// (including one that is already running).
    func verifyOnly(_ signed: SignedManifest) -> String? {
        guard let identity else { return "not enrolled" }
        do {
            let verifier = try ManifestVerifier(publicKeyBase64: identity.publicKey, fleetID: identity.fleetID, deviceID: identity.deviceID)
            _ = try verifier.verify(signed, lastAccepted: state.lastAcceptedSequence)
            return nil
        } catch {
            return "\(error)"
        }
    }
}
