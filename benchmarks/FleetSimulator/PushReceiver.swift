import FleetKit
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOFoundationCompat

/// The simulated devices' push endpoint: one HTTP server, `POST /sim/<index>/v1/push` per
/// device, answering as the agent does (202 when the manifest verifies, 409 with the
/// reason when it does not) and installing in the background.
enum PushReceiver {
    static func start(agents: @escaping @Sendable (Int) -> SimulatedAgent?) async throws -> (url: String, task: Task<Void, Error>) {
        let router = Router()
        router.post("/sim/:index/v1/push") { request, context -> Response in
            guard let index = context.parameters.get("index", as: Int.self), let agent = agents(index) else {
                return Response(status: .notFound)
            }
            var request = request
            let body = try await request.collectBody(upTo: 64 * 1024)
            guard let manifest = try? FleetJSON.decoder.decode(SignedManifest.self, from: Data(buffer: body)) else {
                return Response(status: .badRequest)
            }
            if let refusal = await agent.receive(manifest, source: "push") {
                return Response(status: .conflict, body: .init(byteBuffer: ByteBuffer(string: refusal)))
            }
            return Response(status: .accepted)
        }
        var logger = Logger(label: "fleet-sim.push")
        // The simulation ends by cancelling the server, which HummingbirdCore logs as
        // errors ("Already closed"); a failed push shows up in the controller's counts.
        logger.logLevel = .critical
        let (stream, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "fleet-sim"),
                              onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) }, logger: logger)
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var iterator = stream.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw SimulationError("the push receiver did not start") }
        return ("http://127.0.0.1:\(port)", task)
    }
}
