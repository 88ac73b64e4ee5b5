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

    /// Whether a peer is on this machine: 127.0.0.0/8, ::1 (or 127/8 mapped into IPv6 on a
    /// dual-stack listener) or a Unix socket. Anything else, an unknown peer included, is
    /// refused local inference. Decided on the numeric address, not on a host name.
    static func isLoopback(_ address: SocketAddress?) -> Bool {
        switch address {
        case .v4?: return address?.ipAddress?.hasPrefix("127.") == true
        case .v6?:
            guard let ip = address?.ipAddress?.lowercased() else { return false }
            return ip == "::1" || ip.hasPrefix("::ffff:127.")
        case .unixDomainSocket?: return true
        default: return false
        }
    }
}

/// The agent's HTTP listener:
/// - `POST /v1/push`: a signed manifest from the controller (authenticated by signature);
/// - `POST /v1/infer`: local inference (.npy, PGM or raw float32), loopback clients only;
/// - `GET /v1/status`, `GET /v1/health`.
public enum AgentServer {
    public static func run(_ runtime: AgentRuntime, configuration: AgentConfiguration, logger: Logger,
                           onStart: @escaping @Sendable (String) async -> Void) async throws {
        let router = Router(context: AgentRequestContext.self)
        router.get("/v1/health") { _, _ in "ok" }
        router.get("/v1/status") { _, _ in try json(await runtime.status()) }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: await runtime.prometheusText())))
        }
        router.post("/v1/push") { request, context in
            var request = request
            let body = try await request.collectBody(upTo: 64 * 1024)
            guard let manifest = try? FleetJSON.decoder.decode(SignedManifest.self, from: Data(buffer: body)) else {
                return try json(APIErrorBody(code: "invalid_body", message: "expected a signed manifest"), status: .badRequest)
            }
            // Verification is synchronous; the download and install continue in the background.
            let outcome = await runtime.verifyOnly(manifest)
            if let refusal = outcome {
                _ = await runtime.handle(manifest, source: "push")
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
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "bitfleet-agent"),
            onServerRunning: { channel in
                await onStart("http://\(configuration.host):\(channel.localAddress?.port ?? configuration.port)")
            },
            logger: logger
        )
        try await app.runService()
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
