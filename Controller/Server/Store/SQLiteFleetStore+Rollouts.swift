import FleetKit
import Foundation
import GRDB

/// Rollout changes and the deployments they imply, each in one transaction: a controller
/// killed at any moment leaves a rollout before or after a change, never half way (a
/// stage advanced whose devices never got the version, a rollback claimed but never
/// deployed, a rollout without the deployment it started).
extension SQLiteFleetStore {
    func createRollout(_ rollout: RolloutRecord, modelID: Int64, target: DeploymentTarget, firstStage: [String], createdBy: String,
                       now: Date, shadow: Bool) async throws -> RolloutRecord {
        try await database.write { db in
            let deployment = try Self.insertDeployment(db, modelID: modelID, target: target, deviceIDs: firstStage, createdBy: createdBy,
                                                       now: now, shadow: shadow)
            var record = rollout
            record.deploymentID = deployment.id!
            try record.insert(db)
            return record
        }
    }

    func transitionRollout(_ rollout: RolloutRecord, expectedState: String, expectedStage: Int, change: RolloutDeploymentChange?,
                           now: Date) async throws -> RolloutRecord? {
        try await database.write { db in
            // Optimistic concurrency: an operator's pause or rollback and the evaluator's
            // advance race; whoever commits first wins, the other sees nil.
            guard let current = try RolloutRecord.fetchOne(db, key: rollout.id), current.state == expectedState,
                  current.currentStage == expectedStage else { return nil }
            var updated = rollout
            switch change {
            case nil:
                break
            case .extend(let deviceIDs):
                try Self.extendDeployment(db, id: rollout.deploymentID, deviceIDs: deviceIDs, now: now)
            case .rollBack(let modelID, let createdBy):
                let reached = try DeviceDeploymentRecord.filter(Column("deploymentID") == rollout.deploymentID).fetchAll(db).map(\.deviceID)
                if !reached.isEmpty {
                    updated.rollbackDeploymentID = try Self.insertDeployment(db, modelID: modelID, target: DeploymentTarget(devices: reached),
                                                                             deviceIDs: reached, createdBy: createdBy, now: now, shadow: false).id
                }
            case .promote(let modelID, let createdBy):
                updated.promotionDeploymentID = try Self.insertDeployment(db, modelID: modelID, target: DeploymentTarget(devices: rollout.targetDevices),
                                                                          deviceIDs: rollout.targetDevices, createdBy: createdBy, now: now,
                                                                          shadow: false).id
            }
            try updated.update(db)
            return updated
        }
    }
}
