import FleetKit
import FleetNIOHTTP
import Foundation
import Logging
import NIOCore
import NIOPosix

/// Delivers manifests to agents over HTTP (`POST {pushURL}/v1/push`). Pending pushes are
/// rows in the database, not in-memory timers, so a restarted controller (or another
/// replica) picks them up. Failed pushes are retried with exponential backoff; agents that
/// stay unreachable still converge through their heartbeat replies; `UnreachableDevices`
/// ends the retries of a device that neither answers pushes nor heartbeats.
final class PushService: Sendable {
    let service: FleetService
    let logger: Logger
    private let client: FleetHTTPClient

    init(service: FleetService, logger: Logger) {
        self.service = service
        self.logger = logger
        // The timeout bounds connecting and every wait for bytes, so an agent that accepts
        // and never answers (a black hole) fails the push instead of holding it.
        client = FleetHTTPClient(baseURL: URL(string: "http://127.0.0.1/")!, token: nil, timeout: service.configuration.pushTimeout)
    }

    /// Plain-HTTP agents (the usual case on a LAN) get the push over SwiftNIO, a fresh
    /// connection each; an https push URL goes through URLSession.
    private func deliver(_ body: Data, to target: String) async throws {
        guard let url = URL(string: target), url.scheme == "http" else {
            _ = try await client.send("POST", target, body: body)
            return
        }
        let timeout = TimeAmount.milliseconds(Int64(service.configuration.pushTimeout * 1000))
        let response = try await HTTPConnection.send(.POST, to: url, headers: [("Content-Type", "application/json")],
                                                     body: ByteBuffer(bytes: body), group: MultiThreadedEventLoopGroup.singleton,
                                                     timeout: timeout)
        guard (200..<300).contains(response.status) else {
            let text = response.body.getString(at: response.body.readerIndex, length: min(response.body.readableBytes, 300)) ?? ""
            throw HTTPConnection.Failure(description: "the agent answered \(response.status): \(text)")
        }
    }

    static func backoff(afterAttempts attempts: Int, max maximum: TimeInterval = 60) -> TimeInterval {
        let base = min(maximum, pow(2, Double(min(attempts, 10))))
        return base * Double.random(in: 0.75...1.25)
    }

    func run() async {
        while !Task.isCancelled {
            do {
                let due = try await service.store.duePushes(now: service.clock(), limit: 64)
                if due.isEmpty {
                    try await Task.sleep(for: .milliseconds(Int(service.configuration.pushInterval * 1000)))
                    continue
                }
                await withTaskGroup(of: Void.self) { group in
                    for row in due { group.addTask { await self.push(row) } }
                }
            } catch is CancellationError {
                return
            } catch {
                logger.error("push loop: \(error)")
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func push(_ row: DeviceDeploymentRecord) async {
        do {
            guard let device = try await service.store.device(id: row.deviceID),
                  let (deployment, model) = try await service.cachedDeployment(id: row.deploymentID) else { return }
            // The same signed manifest the device's heartbeat reply would carry: signed once.
            let manifest = try service.caches.manifest(deviceID: device.id, deploymentID: row.deploymentID, signer: service.signer) {
                try service.manifest(for: device.id, deployment: deployment, model: model, signer: $0)
            }
            let target = device.pushURL.hasSuffix("/") ? device.pushURL + "v1/push" : device.pushURL + "/v1/push"
            do {
                try await deliver(try FleetJSON.encoder.encode(manifest), to: target)
                service.metrics.pushesDelivered.increment()
                try await service.store.recordPush(deploymentID: row.deploymentID, deviceID: row.deviceID, delivered: true,
                                                   error: nil, nextAttempt: nil, now: service.clock())
            } catch {
                service.metrics.pushesFailed.increment()
                let next = service.clock().addingTimeInterval(Self.backoff(afterAttempts: row.pushAttempts + 1,
                                                                                   max: service.configuration.pushMaxBackoff))
                logger.info("push to \(device.id) failed (attempt \(row.pushAttempts + 1)), retrying later: \(error)")
                try await service.store.recordPush(deploymentID: row.deploymentID, deviceID: row.deviceID, delivered: false,
                                                   error: "\(error)", nextAttempt: next, now: service.clock())
            }
        } catch {
            logger.error("push bookkeeping for \(row.deviceID): \(error)")
        }
    }
}
