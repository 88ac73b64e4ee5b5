import Foundation
import Logging

/// Keeps the privacy ledger (one row per heartbeat) from growing without bound: entries
/// older than `ledgerRetentionDays` are deleted in small batches, so a sweep never holds
/// the write lock long enough to delay heartbeats. At 2,000 heartbeats a second the ledger
/// gains 7 million rows an hour; the retention period is what bounds the database.
struct LedgerRetention: Sendable {
    let service: FleetService
    let logger: Logger
    var batch = 5_000

    /// Deletes everything past retention; returns how many entries went.
    @discardableResult
    func sweep() async throws -> Int {
        let cutoff = service.clock().addingTimeInterval(-service.configuration.ledgerRetentionDays * 86_400)
        var total = 0
        while true {
            let deleted = try await service.store.pruneUploads(before: cutoff, limit: batch)
            total += deleted
            if deleted < batch { return total }
            await Task.yield()
        }
    }

    func run() async {
        while !Task.isCancelled {
            do {
                let deleted = try await sweep()
                if deleted > 0 { logger.info("ledger retention: deleted \(deleted) entries older than \(service.configuration.ledgerRetentionDays) days") }
            } catch {
                logger.error("ledger retention: \(error)")
            }
            try? await Task.sleep(for: .seconds(600))
        }
    }
}
