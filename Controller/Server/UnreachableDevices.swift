import FleetKit
import Foundation
import Logging

/// Turns "still trying" into a reported failure. A device whose deployment is pending
/// after `unreachablePushAttempts` failed pushes, or stuck in notified / downloading /
/// installed, and that has not heartbeated for `unreachableAfter` seconds, gets its
/// deployment state set to `failed` with the reason `unreachable: ...`, which rollouts
/// count like any failure. Pushes to it stop; its desired deployment stays, so if it comes
/// back its heartbeat reply carries the manifest and its reports move it on from `failed`.
/// The state lives in the database, so a restarted controller or another replica agrees.
struct UnreachableDevices: Sendable {
    let service: FleetService
    let logger: Logger

    func sweep() async throws {
        let configuration = service.configuration
        let marked = try await service.store.failUnreachable(now: service.clock(), silentFor: configuration.unreachableAfter,
                                                             minPushAttempts: configuration.unreachablePushAttempts)
        for row in marked {
            logger.warning("deployment \(row.deploymentID) failed on \(row.deviceID): \(row.reason ?? "unreachable")")
        }
    }

    func run() async {
        // A quarter of the threshold keeps the report prompt without a write every tick.
        let period = min(5, max(0.2, service.configuration.unreachableAfter / 4))
        // Silence while the controller itself was down proves nothing about the devices:
        // give every device a full `unreachableAfter` of uptime to heartbeat first.
        try? await Task.sleep(for: .milliseconds(Int(service.configuration.unreachableAfter * 1000)))
        while !Task.isCancelled {
            do {
                try await sweep()
            } catch {
                logger.error("unreachable-device sweep: \(error)")
            }
            try? await Task.sleep(for: .milliseconds(Int(period * 1000)))
        }
    }
}
