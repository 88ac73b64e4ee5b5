import GRDB

/// Schema history. Migrations only ever get appended; a database created by any earlier
/// version upgrades in place when a newer controller opens it.
enum Migrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: registry, devices, deployments, metrics") { db in
            try db.create(table: "setting") { t in
                t.primaryKey("key", .text)
                t.column("value", .text).notNull()
            }
            try db.create(table: "model") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("name", .text).notNull()
                t.column("version", .text).notNull()
                t.column("sha256", .text).notNull()
                t.column("size", .integer).notNull()
                t.column("metadataJSON", .text).notNull()
                t.column("binaryMACs", .integer).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("createdBy", .text).notNull()
                t.uniqueKey(["name", "version"])
            }
            try db.create(table: "enrollmentToken") { t in
                t.primaryKey("tokenHash", .text)
                t.column("labelsJSON", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("expiresAt", .datetime).notNull()
                t.column("usedAt", .datetime)
                t.column("usedBy", .text)
            }
            try db.create(table: "deployment") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("sequence", .integer).notNull().unique()
                t.column("modelID", .integer).notNull().references("model")
                t.column("targetJSON", .text).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("createdBy", .text).notNull()
            }
            try db.create(table: "device") { t in
                t.primaryKey("id", .text)
                t.column("name", .text).notNull()
                t.column("labelsJSON", .text).notNull()
                t.column("credentialHash", .text).notNull()
                t.column("enrolledAt", .datetime).notNull()
                t.column("lastSeen", .datetime)
                t.column("agentVersion", .text).notNull()
                t.column("pushURL", .text).notNull()
                t.column("activeModelJSON", .text)
                t.column("desiredDeploymentID", .integer).references("deployment")
                t.column("revoked", .boolean).notNull().defaults(to: false)
            }
            try db.create(table: "deviceDeployment") { t in
                t.column("deploymentID", .integer).notNull().references("deployment")
                t.column("deviceID", .text).notNull().references("device")
                t.column("state", .text).notNull()
                t.column("reason", .text)
                t.column("updatedAt", .datetime).notNull()
                t.column("pushAttempts", .integer).notNull().defaults(to: 0)
                t.column("nextPushAt", .datetime)
                t.primaryKey(["deploymentID", "deviceID"])
            }
            try db.create(index: "deviceDeployment_push", on: "deviceDeployment", columns: ["state", "nextPushAt"])
            try db.create(table: "metricWindow") { t in
                t.column("deviceID", .text).notNull().references("device")
                t.column("model", .text).notNull()
                t.column("version", .text).notNull()
                t.column("windowStart", .datetime).notNull()
                t.column("windowEnd", .datetime).notNull()
                t.column("inferences", .integer).notNull()
                t.column("errors", .integer).notNull()
                t.column("classCountsJSON", .text).notNull()
                t.column("latencyJSON", .text).notNull()
                t.column("confidenceJSON", .text).notNull()
                t.primaryKey(["deviceID", "model", "version", "windowStart"])
            }
            try db.create(index: "metricWindow_time", on: "metricWindow", columns: ["windowEnd"])
        }
        migrator.registerMigration("v2: device events") { db in
            try db.create(table: "deviceEvent") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("deviceID", .text).notNull().references("device")
                t.column("at", .datetime).notNull()
                t.column("kind", .text).notNull()
                t.column("message", .text).notNull()
            }
            try db.create(index: "deviceEvent_device", on: "deviceEvent", columns: ["deviceID", "at"])
        }
        migrator.registerMigration("v3: staged rollouts") { db in
            try db.create(table: "rollout") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("deploymentID", .integer).notNull().references("deployment")
                t.column("stagesJSON", .text).notNull()
                t.column("targetDevicesJSON", .text).notNull()
                t.column("currentStage", .integer).notNull()
                t.column("state", .text).notNull()
                t.column("reason", .text)
                t.column("soakSeconds", .double).notNull()
                t.column("maxFailureFraction", .double).notNull()
                t.column("minDevices", .integer).notNull()
                t.column("autoRollback", .boolean).notNull()
                t.column("previousModelID", .integer).references("model")
                t.column("rollbackDeploymentID", .integer).references("deployment")
                t.column("stageStartedAt", .datetime).notNull()
                t.column("createdAt", .datetime).notNull()
                t.column("updatedAt", .datetime).notNull()
                t.column("createdBy", .text).notNull()
            }
        }
        migrator.registerMigration("v4: shadow evaluation") { db in
            try db.alter(table: "deployment") { t in
                t.add(column: "shadow", .boolean).notNull().defaults(to: false)
            }
            try db.alter(table: "rollout") { t in
                t.add(column: "shadowGateJSON", .text)
                t.add(column: "promotionDeploymentID", .integer).references("deployment")
            }
            try db.create(table: "shadowStat") { t in
                t.column("deploymentID", .integer).notNull().references("deployment")
                t.column("deviceID", .text).notNull().references("device")
                t.column("reportJSON", .text).notNull()
                t.primaryKey(["deploymentID", "deviceID"])
            }
        }
        migrator.registerMigration("v5: audit log") { db in
            try db.create(table: "audit") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("at", .datetime).notNull().indexed()
                t.column("actor", .text).notNull()
                t.column("action", .text).notNull()
                t.column("status", .integer).notNull()
                t.column("remote", .text).notNull()
            }
        }
        migrator.registerMigration("v6: upload ledger") { db in
            try db.create(table: "upload") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("deviceID", .text).notNull().references("device")
                t.column("at", .datetime).notNull()
                t.column("bytes", .integer).notNull()
                t.column("fieldsJSON", .text).notNull()
                t.column("epsilonSpent", .double)
            }
            try db.create(index: "upload_device", on: "upload", columns: ["deviceID", "id"])
        }
        migrator.registerMigration("v7: dashboard sessions") { db in
            try db.create(table: "session") { t in
                t.primaryKey("tokenHash", .text)
                t.column("csrf", .text).notNull()
                t.column("expiresAt", .datetime).notNull()
            }
            try db.create(table: "loginLink") { t in
                t.primaryKey("codeHash", .text)
                t.column("expiresAt", .datetime).notNull()
                t.column("usedAt", .datetime)
            }
        }
        migrator.registerMigration("v8: ledger retention index") { db in
            // Retention deletes by age; without this index every sweep scans the ledger.
            try db.create(index: "upload_at", on: "upload", columns: ["at"])
        }
        migrator.registerMigration("v9: hostile devices and durability") { db in
            // Labels a device asks for at enrollment, kept apart from the token's (which
            // alone decide targeting), so a device cannot put itself into `ring=canary`.
            try db.alter(table: "device") { t in
                t.add(column: "proposedLabelsJSON", .text).notNull().defaults(to: "{}")
            }
            // Manifest sequences from a counter that only rises: MAX(sequence)+1 re-issued a
            // sequence an agent had accepted whenever the newest deployment was lost.
            try db.create(table: "counter") { t in
                t.primaryKey("name", .text)
                t.column("value", .integer).notNull()
            }
            try db.execute(sql: "INSERT INTO counter(name, value) SELECT 'sequence', COALESCE(MAX(sequence), 0) FROM deployment")
            // Retention by the controller's clock: an event's `at` is the device's.
            try db.alter(table: "deviceEvent") { t in
                t.add(column: "receivedAt", .datetime)
            }
            try db.create(index: "deviceEvent_received", on: "deviceEvent", columns: ["receivedAt"])
        }
        migrator.registerMigration("v10: idempotent shadow reports") { db in
            try db.alter(table: "shadowStat") { t in
                t.add(column: "releaseIDsJSON", .text).notNull().defaults(to: "[]")
            }
        }
        return migrator
    }
}
