import FleetKit
import Foundation
import GRDB

extension SQLiteFleetStore {
    /// Marks stalled deployments of silent devices `failed` (see `UnreachableDevices`), in one
    /// transaction, and returns the rows it changed. Only a device's current desired
    /// deployment counts, and revoked devices are left alone (they never hold a rollout back).
    func failUnreachable(now: Date, silentFor seconds: Double, minPushAttempts: Int) async throws -> [DeviceDeploymentRecord] {
        let cutoff = now.addingTimeInterval(-seconds)
        let silence = Int(seconds.rounded())
        return try await database.write { db in
            let rows = try DeviceDeploymentRecord.fetchAll(db, sql: """
                SELECT dd.* FROM deviceDeployment dd JOIN device d ON d.id = dd.deviceID
                WHERE d.desiredDeploymentID = dd.deploymentID AND d.revoked = 0
                  AND (d.lastSeen IS NULL OR d.lastSeen <= ?)
                  AND ((dd.state = 'pending' AND (dd.pushAttempts >= ? OR (d.pushURL = '' AND dd.updatedAt <= ?)))
                       OR (dd.state IN ('notified', 'downloading', 'installed') AND dd.updatedAt <= ?))
                """, arguments: [cutoff, minPushAttempts, cutoff, cutoff])
            var changed: [DeviceDeploymentRecord] = []
            for var row in rows {
                if row.state == DeploymentState.pending.rawValue {
                    let last = row.reason.map { "; last: \($0)" } ?? ""
                    row.reason = "unreachable: no heartbeat for \(silence)s and \(row.pushAttempts) failed pushes\(last)"
                } else {
                    row.reason = "unreachable: no heartbeat for \(silence)s since the device reported \(row.state)"
                }
                row.reason = row.reason.map { String($0.prefix(1000)) }
                row.state = DeploymentState.failed.rawValue
                row.nextPushAt = nil
                row.updatedAt = now
                try row.update(db)
                changed.append(row)
            }
            return changed
        }
    }
}
