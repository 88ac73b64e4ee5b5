import Foundation
import Logging

/// Keeps what grows with time from growing without bound: the privacy ledger (a row per
/// heartbeat: 7 million rows an hour at 2,000 heartbeats a second), the audit log, device
/// events and metric windows. Each is deleted by age in small batches, so a sweep never
/// holds the write lock long enough to delay heartbeats; the retention periods are what
/// bound the database.
struct RecordRetention: Sendable {
    let service: FleetService
    let logger: Logger
    var batch = 5_000

    func days(_ records: RetainedRecords) -> Double {
        let configuration = service.configuration
        return switch records {
        case .uploads: configuration.ledgerRetentionDays
        case .audit: configuration.auditRetentionDays
        case .deviceEvents: configuration.eventRetentionDays
        case .metricWindows: configuration.metricsRetentionDays
        }
    }

    /// Deletes everything past retention; returns how many rows of each kind went.
    @discardableResult
    func sweep() async throws -> [RetainedRecords: Int] {
        var deleted: [RetainedRecords: Int] = [:]
        for records in RetainedRecords.allCases {
            let cutoff = service.clock().addingTimeInterval(-days(records) * 86_400)
            var total = 0
            while true {
                let count = try await service.store.prune(records, before: cutoff, limit: batch)
                total += count
                if count < batch { break }
                await Task.yield()
            }
            deleted[records] = total
        }
        return deleted
    }

    func run() async {
        while !Task.isCancelled {
            do {
                for (records, count) in try await sweep().sorted(by: { $0.key.rawValue < $1.key.rawValue }) where count > 0 {
                    logger.info("retention: deleted \(count) \(records.rawValue) older than \(days(records)) days")
                }
            } catch {
                logger.error("retention: \(error)")
            }
            try? await Task.sleep(for: .seconds(600))
        }
    }
}
