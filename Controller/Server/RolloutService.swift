import FleetKit
import Foundation
import Logging

/// Staged rollouts: canary stages chosen by a stable hash of the device id, advanced when a
/// stage's success share is met and its soak time has passed, halted when its failure
/// share exceeds the threshold once enough devices have finished, rolled back (a new,
/// higher-sequence deployment of the previous version) on request or automatically.
/// All progress lives in the database; `tick` can run on any controller replica.
struct RolloutService: Sendable {
    let service: FleetService
    let logger: Logger

    var store: any FleetStore { service.store }

    func start(_ request: RolloutRequest, createdBy: String) async throws -> RolloutInfo {
        guard !request.stages.isEmpty, request.stages.last == 100,
              zip(request.stages, request.stages.dropFirst()).allSatisfy({ $0 < $1 }), request.stages.allSatisfy({ $0 > 0 }) else {
            throw APIError(.badRequest, "invalid_stages", "stages must be increasing percentages ending at 100")
        }
        guard (0...1).contains(request.maxFailureFraction), request.minDevices >= 1, request.soakSeconds >= 0 else {
            throw APIError(.badRequest, "invalid_thresholds", "maxFailureFraction must be in 0...1, minDevices >= 1, soakSeconds >= 0")
        }
        let model = try await service.resolveModel(name: request.model, version: request.version)
        let targets = try await service.targetDevices(request.target)
        // Roll back to the newest regular deployment of the same model name with another version.
        var previous: Int64?
        for deployment in try await store.deployments() where !deployment.shadow && deployment.modelID != model.id {
            if try await store.model(id: deployment.modelID)?.name == model.name {
                previous = deployment.modelID
                break
            }
        }
        let firstStage = targets.filter { RolloutPlan.stage(of: $0.id, stages: request.stages) == 0 }.map(\.id)
        let now = service.clock()
        if let gate = request.shadow {
            guard (0...1).contains(gate.minAgreement), gate.minSamples >= 1 else {
                throw APIError(.badRequest, "invalid_shadow_gate", "minAgreement must be in 0...1 and minSamples >= 1")
            }
        }
        let encoder = FleetJSON.encoder
        let rollout = try await store.createRollout(RolloutRecord(
            id: nil, deploymentID: 0, stagesJSON: String(decoding: try encoder.encode(request.stages), as: UTF8.self),
            targetDevicesJSON: String(decoding: try encoder.encode(targets.map(\.id)), as: UTF8.self), currentStage: 0,
            state: RolloutState.running.rawValue, reason: nil, soakSeconds: request.soakSeconds,
            maxFailureFraction: request.maxFailureFraction, minDevices: request.minDevices, autoRollback: request.autoRollback,
            previousModelID: previous, rollbackDeploymentID: nil, stageStartedAt: now,
            createdAt: now, updatedAt: now, createdBy: createdBy,
            shadowGateJSON: try request.shadow.map { String(decoding: try encoder.encode($0), as: UTF8.self) }, promotionDeploymentID: nil),
            modelID: model.id!, target: request.target, firstStage: firstStage, createdBy: createdBy, now: now, shadow: request.shadow != nil)
        return try await info(rollout)
    }

    /// One evaluation of every running rollout.
    func tick() async throws {
        for rollout in try await store.rollouts() where rollout.state == RolloutState.running.rawValue {
            try await evaluate(rollout)
        }
    }

    func run() async {
        while !Task.isCancelled {
            do {
                try await tick()
            } catch {
                logger.error("rollout evaluation: \(error)")
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    private func evaluate(_ record: RolloutRecord) async throws {
        var rollout = record
        let stages = rollout.stages
        let rows = Dictionary(try await store.deviceDeployments(deploymentID: rollout.deploymentID).map { ($0.deviceID, $0) },
                              uniquingKeysWith: { first, _ in first })
        let now = service.clock()
        // Revoked devices will never report; they do not hold a stage back.
        let revoked = Set(try await store.devices().filter(\.revoked).map(\.id))
        let stageDevices = rollout.targetDevices.filter { RolloutPlan.stage(of: $0, stages: stages) <= rollout.currentStage && !revoked.contains($0) }
        let states = stageDevices.map { rows[$0]?.state ?? DeploymentState.pending.rawValue }
        let failed = states.filter { $0 == DeploymentState.failed.rawValue }.count
        let active = states.filter { $0 == DeploymentState.active.rawValue }.count
        let finished = failed + active
        let needed = min(rollout.minDevices, stageDevices.count)
        if finished > 0, finished >= needed, Double(failed) / Double(finished) > rollout.maxFailureFraction {
            rollout.reason = "stage \(rollout.currentStage + 1) (\(Int(stages[rollout.currentStage]))%): \(failed) of \(finished) finished devices failed, above the \(Int(rollout.maxFailureFraction * 100))% threshold"
            // Halt and automatic rollback are one change, so a crash cannot leave a halted
            // rollout whose devices keep the failing version.
            if rollout.autoRollback, rollout.previousModelID != nil {
                do {
                    _ = try await rollBack(rollout, reason: "automatic rollback after halt", expectedState: record.state, expectedStage: record.currentStage)
                } catch let error as APIError where error.code == "concurrent_change" {
                    return  // an operator's change came first
                }
                return
            }
            rollout.state = RolloutState.halted.rawValue
            rollout.updatedAt = now
            guard try await store.transitionRollout(rollout, expectedState: record.state, expectedStage: record.currentStage,
                                                    change: nil, now: now) != nil else { return }
            logger.warning("rollout \(rollout.id!) halted: \(rollout.reason!)")
            return
        }
        // Stage devices without a row: left by a controller that stopped between a stage
        // advance and its extension before both became one transaction. They join now.
        let missing = stageDevices.filter { rows[$0] == nil }
        if !missing.isEmpty {
            try await store.extendDeployment(id: rollout.deploymentID, deviceIDs: missing, now: now)
            logger.warning("rollout \(rollout.id!): \(missing.count) devices of reached stages had no deployment; added")
            return
        }
        let successShare = stageDevices.isEmpty ? 1 : Double(active) / Double(stageDevices.count)
        let soaked = now.timeIntervalSince(rollout.stageStartedAt) >= rollout.soakSeconds
        if let gate = rollout.shadowGate {
            // Shadow gate: enough samples from the devices so far, and enough agreement.
            let summary = try await shadowSummary(rollout, devices: Set(stageDevices))
            if summary.samples >= gate.minSamples, let agreement = summary.agreement, agreement < gate.minAgreement {
                rollout.state = RolloutState.halted.rawValue
                rollout.reason = "shadow agreement \(String(format: "%.1f", agreement * 100))% over \(summary.samples) samples is below the required \(String(format: "%.1f", gate.minAgreement * 100))%"
                rollout.updatedAt = now
                guard try await store.transitionRollout(rollout, expectedState: record.state, expectedStage: record.currentStage,
                                                        change: nil, now: now) != nil else { return }
                logger.warning("rollout \(rollout.id!) halted: \(rollout.reason!)")
                return
            }
            guard summary.samples >= gate.minSamples else { return }
        }
        guard successShare >= 1 - rollout.maxFailureFraction, soaked else { return }
        if rollout.currentStage + 1 >= stages.count {
            rollout.state = RolloutState.completed.rawValue
            rollout.reason = nil
            rollout.updatedAt = now
            // Promotion: after a shadow evaluation the evaluated version becomes the active one
            // everywhere, in the same transaction as the completion (only the winner of a race
            // creates it).
            var promotion: RolloutDeploymentChange?
            if rollout.shadowGate != nil, let shadowDeployment = try await store.deployment(id: rollout.deploymentID) {
                rollout.reason = "promoted after shadow evaluation"
                promotion = .promote(modelID: shadowDeployment.modelID, createdBy: "rollout \(rollout.id!)")
            }
            _ = try await store.transitionRollout(rollout, expectedState: record.state, expectedStage: record.currentStage,
                                                  change: promotion, now: now)
        } else {
            rollout.currentStage += 1
            rollout.stageStartedAt = now
            rollout.updatedAt = now
            // The advance and the next stage's devices are one change: a concurrent pause, abort
            // or rollback that commits first wins and no device of the next stage gets the version.
            let next = rollout.targetDevices.filter { RolloutPlan.stage(of: $0, stages: stages) == rollout.currentStage }
            guard try await store.transitionRollout(rollout, expectedState: record.state, expectedStage: record.currentStage,
                                                    change: .extend(deviceIDs: next), now: now) != nil else { return }
            logger.info("rollout \(rollout.id!) advanced to stage \(rollout.currentStage + 1) (\(next.count) more devices)")
        }
    }

    func pause(_ id: Int64) async throws -> RolloutInfo { try await transition(id, from: [.running], to: .paused) }
    func resume(_ id: Int64) async throws -> RolloutInfo { try await transition(id, from: [.paused, .halted], to: .running) }
    func abort(_ id: Int64) async throws -> RolloutInfo { try await transition(id, from: [.running, .paused, .halted], to: .aborted) }

    private func transition(_ id: Int64, from: [RolloutState], to: RolloutState) async throws -> RolloutInfo {
        guard var rollout = try await store.rollout(id: id) else { throw APIError(.notFound, "unknown_rollout", "no rollout \(id)") }
        let current = RolloutState(rawValue: rollout.state) ?? .running
        guard from.contains(current) else {
            throw APIError(.conflict, "invalid_transition", "rollout \(id) is \(current.rawValue); cannot become \(to.rawValue)")
        }
        let expectedState = rollout.state, expectedStage = rollout.currentStage
        rollout.state = to.rawValue
        if to == .running { rollout.stageStartedAt = service.clock(); rollout.reason = nil }
        rollout.updatedAt = service.clock()
        guard let stored = try await store.transitionRollout(rollout, expectedState: expectedState, expectedStage: expectedStage,
                                                             change: nil, now: service.clock()) else {
            throw APIError(.conflict, "concurrent_change", "rollout \(id) changed meanwhile; look again and retry")
        }
        return try await info(stored)
    }

    /// Deploys the previous version (new manifest, higher sequence) to every device the
    /// rollout reached.
    /// `record` is the rollout as it should be stored apart from the rollback itself;
    /// `expectedState`/`expectedStage` are what the store must still hold (by default the
    /// record's own), so a concurrent change wins or loses as a whole.
    func rollBack(_ record: RolloutRecord, reason: String, expectedState: String? = nil, expectedStage: Int? = nil) async throws -> RolloutInfo {
        var rollout = record
        guard rollout.state != RolloutState.rolledBack.rawValue else {
            throw APIError(.conflict, "invalid_transition", "rollout \(rollout.id!) is already rolled back")
        }
        guard let previous = rollout.previousModelID else {
            throw APIError(.conflict, "no_previous_version", "there is no earlier version to roll back to")
        }
        rollout.state = RolloutState.rolledBack.rawValue
        rollout.reason = [rollout.reason, reason].compactMap { $0 }.joined(separator: "; ")
        rollout.updatedAt = service.clock()
        guard let stored = try await store.transitionRollout(rollout, expectedState: expectedState ?? record.state,
                                                             expectedStage: expectedStage ?? record.currentStage,
                                                             change: .rollBack(modelID: previous, createdBy: "rollout \(rollout.id!)"),
                                                             now: service.clock()) else {
            throw APIError(.conflict, "concurrent_change", "rollout \(rollout.id!) changed meanwhile; look again and retry")
        }
        logger.warning("rollout \(rollout.id!) rolled back: \(stored.reason ?? reason)")
        return try await info(stored)
    }

    func rollBack(_ id: Int64) async throws -> RolloutInfo {
        guard let rollout = try await store.rollout(id: id) else { throw APIError(.notFound, "unknown_rollout", "no rollout \(id)") }
        return try await rollBack(rollout, reason: "rolled back by an operator")
    }

    /// Shadow counts of `devices` (or all devices of the rollout), each device's weight
    /// capped as the gate's (ShadowGateWeighting).
    func shadowSummary(_ rollout: RolloutRecord, devices: Set<String>? = nil) async throws -> ShadowSummary {
        let reports = try await store.shadowStats(deploymentID: rollout.deploymentID)
            .filter { devices?.contains($0.deviceID) ?? true }.compactMap(\.report)
        let cap = rollout.shadowGate.map {
            ShadowGateWeighting.cap(minSamples: $0.minSamples, devices: devices?.count ?? rollout.targetDevices.count)
        }
        return ShadowGateWeighting.summary(of: reports, cap: cap)
    }

    /// Share of samples on which the models agreed. Noised counts (docs/PRIVACY.md) can be
    /// negative, or agreements can exceed samples, so the share is clamped to 0...1, and
    /// there is none until the samples are positive.
    static func agreement(agreements: Int, samples: Int) -> Double? {
        guard samples > 0 else { return nil }
        return min(max(Double(agreements) / Double(samples), 0), 1)
    }

    func info(_ rollout: RolloutRecord) async throws -> RolloutInfo {
        guard let deployment = try await store.deployment(id: rollout.deploymentID) else {
            throw APIError(.internalServerError, "internal", "rollout \(rollout.id!) lost its deployment")
        }
        let model = try await store.model(id: deployment.modelID)
        let previous = try await rollout.previousModelID.asyncMap { try await store.model(id: $0) } ?? nil
        let rows = Dictionary(try await store.deviceDeployments(deploymentID: rollout.deploymentID).map { ($0.deviceID, $0) },
                              uniquingKeysWith: { first, _ in first })
        let names = Dictionary(try await store.devices().map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
        let stages = rollout.stages
        var stageInfos: [RolloutStageInfo] = stages.map { RolloutStageInfo(percent: $0, devices: 0, counts: [:], startedAt: nil) }
        for device in rollout.targetDevices {
            let stage = RolloutPlan.stage(of: device, stages: stages)
            stageInfos[stage].devices += 1
            stageInfos[stage].counts[rows[device]?.state ?? "waiting", default: 0] += 1
        }
        if rollout.currentStage < stageInfos.count { stageInfos[rollout.currentStage].startedAt = rollout.stageStartedAt }
        if rollout.shadowGate != nil {
            for index in stageInfos.indices {
                let members = Set(rollout.targetDevices.filter { RolloutPlan.stage(of: $0, stages: stages) == index })
                stageInfos[index].shadow = try await shadowSummary(rollout, devices: members)
            }
        }
        let failures = rows.values.filter { $0.state == DeploymentState.failed.rawValue }.sorted { $0.deviceID < $1.deviceID }.map {
            DeviceDeploymentInfo(deviceID: $0.deviceID, deviceName: names[$0.deviceID] ?? "", state: .failed, reason: $0.reason,
                                 updatedAt: $0.updatedAt, pushAttempts: $0.pushAttempts)
        }
        return RolloutInfo(id: rollout.id!, deploymentID: rollout.deploymentID, sequence: deployment.sequence, model: model?.name ?? "?",
                           version: model?.version ?? "?", previousVersion: previous?.version, state: RolloutState(rawValue: rollout.state) ?? .running,
                           reason: rollout.reason, currentStage: rollout.currentStage, stages: stageInfos, soakSeconds: rollout.soakSeconds,
                           maxFailureFraction: rollout.maxFailureFraction, minDevices: rollout.minDevices, autoRollback: rollout.autoRollback,
                           rollbackDeploymentID: rollout.rollbackDeploymentID, failures: failures, shadowGate: rollout.shadowGate,
                           promotionDeploymentID: rollout.promotionDeploymentID, createdAt: rollout.createdAt,
                           updatedAt: rollout.updatedAt)
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        switch self {
        case .some(let value): return try await transform(value)
        case .none: return nil
        }
    }
}
