import BitModel
import Crypto
import FleetKit
import Foundation
import ModelImport
import BitEngine

/// The controller's behaviour, independent of HTTP: the registry, enrollment, heartbeats,
/// deployments and their manifests. Routes translate requests into these calls.
struct FleetService: Sendable {
    let store: any FleetStore
    let blobs: any BlobStore
    /// The signing key, followed across `rotate-signing-key` while running.
    let keyring: SigningKeyring
    var signer: ManifestSigner { keyring.current }
    let fleetID: String
    let configuration: ControllerConfiguration
    let clock: @Sendable () -> Date
    let metrics = ControllerMetrics()
    let caches = HeartbeatCaches()
    let ingest = DeviceIngestLimiter()
    var transfers = TransferLimiter(permits: 32, queueLimit: 32)
    /// Makes the id of a newly enrolled device. Stage membership hashes the id, so tests
    /// inject seeded ids to make which device is a canary reproducible.
    var makeDeviceID: @Sendable () -> String = { "dev_" + Secrets.randomToken(bytes: 9) }

    // MARK: Registry

    /// Validates and stores a model: a `.bnn` file, or an ONNX file converted here.
    func uploadModel(_ data: Data, name: String?, version: String?, createdBy: String) async throws -> ModelRecord {
        var bytes = data
        let model: Model
        if bytes.starts(with: [0x89, 0x42, 0x4E, 0x4E]) {
            do {
                model = try ModelReader.read(bytes)
            } catch let error as ModelFormatError {
                throw APIError(.badRequest, "invalid_model", "the .bnn file is invalid: \(error)")
            }
        } else {
            do {
                var converted = try ONNXConverter.convert(data: bytes, options: ConversionOptions(name: name, version: version ?? "")).model
                try SelfTests.addVector(to: &converted)
                bytes = try ModelWriter.data(for: converted)
                model = converted
            } catch let error as ImportError {
                throw APIError(.badRequest, "invalid_model", "neither a .bnn file nor a convertible ONNX model: \(error)")
            }
        }
        let modelName = name ?? model.metadata.name
        guard Self.isValidName(modelName) else {
            throw APIError(.badRequest, "invalid_name", "model name '\(modelName)' must be 1-100 letters, digits, '.', '_' or '-'")
        }
        if let version, !Self.isValidName(version) {
            throw APIError(.badRequest, "invalid_version", "version '\(version)' must be 1-100 letters, digits, '.', '_' or '-'")
        }
        let sha = try blobs.put(bytes)
        let statistics = try ModelStatistics(model)
        let metadataJSON = String(decoding: try FleetJSON.encoder.encode(model.metadata), as: UTF8.self)
        do {
            return try await store.insertModel(name: modelName, version: version, sha256: sha, size: bytes.count,
                                               metadataJSON: metadataJSON, binaryMACs: statistics.binaryMACs,
                                               createdBy: createdBy, now: clock())
        } catch let error as StoreError {
            throw APIError(.conflict, "conflict", error.description)
        }
    }

    static func isValidName(_ name: String) -> Bool {
        (1...100).contains(name.count) && name.allSatisfy { $0.isLetter || $0.isNumber || "._-".contains($0) } && name.unicodeScalars.allSatisfy(\.isASCII)
    }

    func modelInfo(_ record: ModelRecord) -> ModelVersionInfo {
        let metadata = try? FleetJSON.decoder.decode(ModelMetadata.self, from: Data(record.metadataJSON.utf8))
        return ModelVersionInfo(id: record.id ?? 0, name: record.name, version: record.version, sha256: record.sha256, size: record.size,
                                description: metadata?.description ?? "", labels: metadata?.labels ?? [],
                                inputShape: metadata?.input.shape ?? [], outputShape: metadata?.output.shape ?? [],
                                binaryMACs: record.binaryMACs, properties: metadata?.properties ?? [:],
                                createdAt: record.createdAt, createdBy: record.createdBy)
    }

    /// The version named, of the model named; the model may be omitted when only one exists.
    func resolveModel(name: String?, version: String) async throws -> ModelRecord {
        let all = try await store.models()
        let names = Set(all.map(\.name))
        let modelName: String
        if let name {
            guard names.contains(name) else { throw APIError(.notFound, "unknown_model", "no model named '\(name)'; known: \(names.sorted().joined(separator: ", "))") }
            modelName = name
        } else {
            guard names.count == 1, let only = names.first else {
                throw APIError(.badRequest, "model_required", names.isEmpty ? "no models uploaded yet" : "several models exist (\(names.sorted().joined(separator: ", "))); name one")
            }
            modelName = only
        }
        guard let record = all.first(where: { $0.name == modelName && $0.version == version }) else {
            let versions = all.filter { $0.name == modelName }.map(\.version)
            throw APIError(.notFound, "unknown_version", "model '\(modelName)' has no version '\(version)'; known: \(versions.joined(separator: ", "))")
        }
        return record
    }

    // MARK: Enrollment

    func createEnrollmentToken(_ request: EnrollmentTokenRequest) async throws -> EnrollmentTokenResponse {
        guard (60...(90 * 86_400)).contains(request.expiresInSeconds) else {
            throw APIError(.badRequest, "invalid_expiry", "expiry must be between 1 minute and 90 days")
        }
        let secret = "enr_" + Secrets.randomToken()
        let fingerprint = ControllerKeyFingerprint.of(publicKeyBase64: signer.publicKeyBase64)
        let token = EnrollmentToken(secret: secret, fingerprint: fingerprint)
        let now = clock()
        let expires = now.addingTimeInterval(Double(request.expiresInSeconds))
        let labels = String(decoding: try FleetJSON.encoder.encode(request.labels), as: UTF8.self)
        try await store.insertEnrollmentToken(EnrollmentTokenRecord(tokenHash: Secrets.hash(secret), labelsJSON: labels,
                                                                   createdAt: now, expiresAt: expires, usedAt: nil, usedBy: nil))
        return EnrollmentTokenResponse(token: token.text, expiresAt: expires, controllerKeyFingerprint: fingerprint)
    }

    func enroll(_ request: EnrollRequest) async throws -> EnrollResponse {
        let deviceID = makeDeviceID()
        // Validate before the one-time token is used up, so a typo does not burn it.
        guard (1...100).contains(request.name.count) else {
            throw APIError(.badRequest, "invalid_name", "device name must be 1-100 characters")
        }
        let pushURL = try Self.validatedPushURL(request.pushURL)
        guard request.labels.count <= 50, request.labels.allSatisfy({ (1...100).contains($0.key.count) && $0.value.count <= 200 }) else {
            throw APIError(.badRequest, "invalid_labels", "at most 50 proposed labels, keys of 1-100 and values of at most 200 characters")
        }
        // The key the answer names and the chain that leads to it, read before the token is
        // used up (a failure here must not burn it).
        let (signer, keyGeneration) = keyring.snapshot
        let announcements = try await caches.setting("keys.\(keyGeneration)") { try await ControllerServer.keyAnnouncements(store) }
        // Only the secret part is stored (hashed); the fingerprint suffix is public.
        let secretPart = EnrollmentToken(parsing: request.token).secret
        guard let token = try await store.consumeEnrollmentToken(hash: Secrets.hash(secretPart), deviceID: deviceID, now: clock()) else {
            throw APIError(.unauthorized, "invalid_enrollment_token", "the enrollment token is unknown, expired or already used")
        }
        // The token's labels are the device's; what the device asks for is kept apart, so a
        // device cannot place itself into `ring=canary` or another site's deployments.
        let labels = (try? FleetJSON.decoder.decode([String: String].self, from: Data(token.labelsJSON.utf8))) ?? [:]
        let secret = Secrets.randomToken()
        let credential = "\(deviceID).\(secret)"
        try await store.insertDevice(DeviceRecord(
            id: deviceID, name: request.name, labelsJSON: String(decoding: try FleetJSON.encoder.encode(labels), as: UTF8.self),
            credentialHash: Secrets.hash(secret), enrolledAt: clock(), lastSeen: clock(), agentVersion: request.agentVersion,
            pushURL: pushURL, activeModelJSON: nil, desiredDeploymentID: nil, revoked: false,
            proposedLabelsJSON: String(decoding: try FleetJSON.encoder.encode(request.labels), as: UTF8.self)))
        let receipt = try signer.sign(EnrollmentReceipt(fleetID: fleetID, deviceID: deviceID, tokenSHA256: Secrets.hash(secretPart),
                                                        credentialSHA256: Secrets.hash(credential)))
        return EnrollResponse(deviceID: deviceID, credential: credential, fleetID: fleetID, publicKey: signer.publicKeyBase64,
                              keyAnnouncements: announcements.isEmpty ? nil : announcements, receipt: receipt)
    }

    /// The controller connects to this URL, so it is the one thing a device names that the
    /// controller acts on: http(s), a host, an optional port and path, nothing else. A query,
    /// fragment or user info has no use for a push and widened the blind SSRF a stolen
    /// credential gives.
    static func validatedPushURL(_ text: String) throws -> String {
        if text.isEmpty { return "" }
        guard text.count <= 500, let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty else {
            throw APIError(.badRequest, "invalid_push_url", "push URL '\(text.prefix(100))' is not an http(s) URL with a host")
        }
        guard url.query == nil, url.fragment == nil, url.user == nil, url.password == nil, !text.contains("?"), !text.contains("#") else {
            throw APIError(.badRequest, "invalid_push_url", "push URL '\(text.prefix(100))' may not have a query, fragment or user info")
        }
        guard !text.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7F }) else {
            throw APIError(.badRequest, "invalid_push_url", "push URL contains spaces or control characters")
        }
        return text
    }

    /// The device behind a `deviceID.secret` credential, if valid and not revoked.
    func authenticateDevice(credential: String) async throws -> DeviceRecord? {
        let parts = credential.split(separator: ".", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        let deviceID = String(parts[0]), secretHash = Secrets.hash(String(parts[1]))
        if let known = caches.authenticatedDevice(id: deviceID) {
            return Secrets.constantTimeEquals(known.credentialHash, secretHash) ? known : nil
        }
        let generation = caches.revocationGeneration
        guard let device = try await store.device(id: deviceID), !device.revoked,
              Secrets.constantTimeEquals(device.credentialHash, secretHash) else {
            return nil
        }
        caches.remember(authenticated: device, generation: generation)
        return device
    }

    /// Revokes at once: the credential cache forgets the device before the store write and
    /// again after it, and a lookup racing the write cannot re-cache it (HeartbeatCaches).
    /// A request already authenticated when the revocation commits may still finish; none
    /// that authenticates after the answer succeeds.
    func revokeDevice(id: String) async throws -> Bool {
        caches.forget(device: id)
        defer { caches.forget(device: id) }
        return try await store.revokeDevice(id: id)
    }

    // MARK: Heartbeats

    func heartbeat(device: DeviceRecord, _ request: HeartbeatRequest, bytes: Int) async throws -> HeartbeatResponse {
        // One key for the whole reply, even if a rotation lands meanwhile, and the
        // announcement chain read for that key.
        let (signer, keyGeneration) = keyring.snapshot
        metrics.heartbeats.increment()
        let start = ContinuousClock.now
        defer { metrics.heartbeatDuration.record(ContinuousClock.now - start) }
        // Every check before any write: a refused heartbeat changes nothing.
        guard request.reports.count <= 1000, request.aggregates.count <= 10_000, request.events.count <= 1000, request.shadow.count <= 100 else {
            throw APIError(.contentTooLarge, "too_many_items", "at most 1000 reports, 10000 aggregate windows, 1000 events and 100 shadow reports per heartbeat")
        }
        try admitIngest(device: device, items: 1 + request.reports.count + request.aggregates.count + request.events.count + request.shadow.count)
        guard request.shadow.allSatisfy(\.isWellFormed) else {
            throw APIError(.badRequest, "invalid_shadow", "a shadow report is malformed")
        }
        guard request.aggregates.allSatisfy(\.isWellFormed) else {
            throw APIError(.badRequest, "invalid_aggregates", "an aggregate window is malformed")
        }
        let pushURL = try Self.validatedPushURL(request.pushURL)
        let activeJSON = try request.activeModel.map { String(decoding: try FleetJSON.encoder.encode($0), as: UTF8.self) }
        let now = clock()
        let plausible = try await plausibleCounts(of: request, device: device, now: now)
        var device = device
        if let proof = request.acceptedManifest {
            try await resynchronise(device: device, proof: proof, now: now)
            device = try await store.device(id: device.id) ?? device
        }
        let desiredID = try await store.ingestHeartbeat(HeartbeatWrite(
            deviceID: device.id, now: now, agentVersion: String(request.agentVersion.prefix(100)), pushURL: pushURL,
            activeModelJSON: activeJSON, reports: request.reports, shadow: plausible.shadow, events: request.events + plausible.refusals,
            aggregates: plausible.aggregates, upload: Self.ledgerEntry(request, bytes: bytes, at: now)))
        var desired: SignedManifest?
        if let desiredID, let (deployment, model) = try await cachedDeployment(id: desiredID),
           request.activeModel?.sequence != deployment.sequence {
            // A device already running its desired deployment gets no manifest: nothing to
            // sign here, nothing to verify on the device.
            desired = try caches.manifest(deviceID: device.id, deploymentID: desiredID, signer: signer) {
                try manifest(for: device.id, deployment: deployment, model: model, signer: $0)
            }
        }
        let keys = try await caches.setting("keys.\(keyGeneration)") { try await ControllerServer.keyAnnouncements(store) }
        let privacy = try await caches.setting("privacy") { try await privacySettings() }
        // One Ed25519 signature per reply (tens of microseconds): it binds what the agent
        // acts on to this device and this heartbeat's nonce. An agent too old to send a
        // nonce still gets the unsigned fields it knows.
        let signed = try request.nonce.map { nonce in
            try signer.sign(HeartbeatReply(fleetID: fleetID, deviceID: device.id, nonce: String(nonce.prefix(128)), issuedAt: now,
                                           desired: desired, heartbeatInterval: configuration.heartbeatInterval,
                                           keyAnnouncements: keys, privacy: privacy))
        }
        return HeartbeatResponse(desired: desired, heartbeatInterval: configuration.heartbeatInterval, keyAnnouncements: keys,
                                 privacy: privacy, signed: signed)
    }

    /// Charges a device's ingestion budget (DeviceIngestLimiter), or refuses with 429.
    func admitIngest(device: DeviceRecord, items: Int) throws {
        let burst = configuration.deviceIngestBurst, perMinute = configuration.deviceIngestPerMinute
        guard ingest.admit(device.id, cost: items, burst: burst, perMinute: perMinute, now: clock()) else {
            var error = APIError(.tooManyRequests, "device_rate_limited",
                                 "device \(device.id) sent more than its ingestion budget (\(Int(burst)) items at once, \(Int(perMinute)) a minute); nothing was stored")
            error.retryAfter = ingest.retryAfter(device.id, cost: items, perMinute: perMinute)
            throw error
        }
    }

    /// The heartbeat's windows and shadow reports that a device could honestly have sent,
    /// and a device event for each one refused (so the operator sees a device lying).
    private func plausibleCounts(of request: HeartbeatRequest, device: DeviceRecord, now: Date)
        async throws -> (aggregates: [AggregateWindow], shadow: [ShadowReport], refusals: [DeviceEvent]) {
        guard !request.aggregates.isEmpty || !request.shadow.isEmpty else { return ([], [], []) }
        let check = IngestionPlausibility(maxInferencesPerSecond: configuration.maxInferencesPerSecond)
        let privacy = try await caches.setting("privacy") { try await privacySettings() }
        var refusals: [DeviceEvent] = []
        var aggregates = request.aggregates.filter { window in
            guard let reason = check.refusal(of: window, device: device, now: now, privacy: privacy) else { return true }
            refusals.append(DeviceEvent(at: now, kind: "refused_aggregate", message: "controller refused a window of \(window.model.prefix(100)) \(window.version.prefix(100)): \(reason)"))
            return false
        }
        if let reason = check.refusal(ofTotal: aggregates, device: device, now: now, privacy: privacy) {
            refusals.append(DeviceEvent(at: now, kind: "refused_aggregate", message: "controller refused all windows of a heartbeat: \(reason)"))
            aggregates = []
        }
        let shadow = request.shadow.filter { report in
            guard let reason = check.refusal(of: report, device: device, now: now, privacy: privacy) else { return true }
            refusals.append(DeviceEvent(at: now, kind: "refused_shadow", message: "controller refused a shadow report for sequence \(report.sequence): \(reason)"))
            return false
        }
        if !refusals.isEmpty { metrics.refusedCounts.increment(by: Int64(refusals.count)) }
        return (aggregates, shadow, refusals)
    }

    /// Deployments and their models never change once created, so they are read once.
    func cachedDeployment(id: Int64) async throws -> (DeploymentRecord, ModelRecord)? {
        if let cached = caches.deployment(id: id) { return cached }
        guard let deployment = try await store.deployment(id: id), let model = try await store.model(id: deployment.modelID) else {
            return nil
        }
        caches.remember(deployment: deployment, model: model)
        return (deployment, model)
    }

    /// The signed manifest of the device's desired deployment.
    func desiredManifest(deviceID: String) async throws -> SignedManifest? {
        guard let device = try await store.device(id: deviceID), let deploymentID = device.desiredDeploymentID,
              let (deployment, model) = try await cachedDeployment(id: deploymentID) else {
            return nil
        }
        return try caches.manifest(deviceID: deviceID, deploymentID: deploymentID, signer: signer) {
            try manifest(for: deviceID, deployment: deployment, model: model, signer: $0)
        }
    }

    func manifest(for deviceID: String, deployment: DeploymentRecord, model: ModelRecord, signer: ManifestSigner) throws -> SignedManifest {
        metrics.manifestsSigned.increment()
        return try signer.sign(DeploymentManifest(fleetID: fleetID, deviceID: deviceID, sequence: deployment.sequence, model: model.name,
                                                  version: model.version, sha256: model.sha256, size: model.size,
                                                  issuedAt: deployment.createdAt, blobPath: "/api/v1/blobs/\(model.sha256)",
                                                  shadow: deployment.shadow ? true : nil))
    }

    // MARK: Deployments

    /// Devices a target selects: listed ids (all must exist), narrowed by labels; never revoked ones.
    func targetDevices(_ target: DeploymentTarget) async throws -> [DeviceRecord] {
        let devices = try await store.devices().filter { !$0.revoked }
        var targets: [DeviceRecord]
        if !target.devices.isEmpty {
            let known = Dictionary(devices.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            let missing = target.devices.filter { known[$0] == nil }
            guard missing.isEmpty else {
                throw APIError(.badRequest, "unknown_device", "unknown or revoked devices: \(missing.joined(separator: ", "))")
            }
            targets = target.devices.compactMap { known[$0] }
        } else {
            targets = devices
        }
        if !target.labels.isEmpty {
            targets = targets.filter { device in target.labels.allSatisfy { device.labels[$0.key] == $0.value } }
        }
        guard !targets.isEmpty else {
            throw APIError(.badRequest, "no_devices", "the target matches no enrolled device")
        }
        return targets
    }

    func deploy(_ request: DeploymentRequest, createdBy: String) async throws -> DeploymentInfo {
        let model = try await resolveModel(name: request.model, version: request.version)
        let targets = try await targetDevices(request.target)
        let deployment = try await store.createDeployment(modelID: model.id!, target: request.target, deviceIDs: targets.map(\.id),
                                                          createdBy: createdBy, now: clock(), shadow: false)
        return try await deploymentInfo(deployment, includeDevices: true)
    }

    func deploymentInfo(_ deployment: DeploymentRecord, includeDevices: Bool) async throws -> DeploymentInfo {
        let model = try await store.model(id: deployment.modelID)
        let rows = try await store.deviceDeployments(deploymentID: deployment.id!)
        var counts: [String: Int] = [:]
        for state in DeploymentState.allCases { counts[state.rawValue] = 0 }
        for row in rows { counts[row.state, default: 0] += 1 }
        var devices: [DeviceDeploymentInfo]?
        if includeDevices {
            let names = Dictionary(try await store.devices().map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
            devices = rows.map {
                DeviceDeploymentInfo(deviceID: $0.deviceID, deviceName: names[$0.deviceID] ?? "", state: DeploymentState(rawValue: $0.state) ?? .pending,
                                     reason: $0.reason, updatedAt: $0.updatedAt, pushAttempts: $0.pushAttempts)
            }
        }
        return DeploymentInfo(id: deployment.id!, sequence: deployment.sequence, model: model?.name ?? "?", version: model?.version ?? "?",
                              sha256: model?.sha256 ?? "", target: deployment.target, createdAt: deployment.createdAt,
                              createdBy: deployment.createdBy, counts: counts, devices: devices)
    }

    // MARK: Privacy

    static let privacySetting = "privacy"

    func privacySettings() async throws -> PrivacySettings {
        guard let text = try await store.setting(Self.privacySetting) else { return PrivacySettings() }
        return (try? FleetJSON.decoder.decode(PrivacySettings.self, from: Data(text.utf8))) ?? PrivacySettings()
    }

    func setPrivacySettings(_ settings: PrivacySettings) async throws {
        guard settings.isValid else {
            throw APIError(.badRequest, "invalid_privacy", "minCount must be 0...1000000 and epsilon in (0, 100]")
        }
        try await store.setSetting(Self.privacySetting, String(decoding: try FleetJSON.encoder.encode(settings), as: UTF8.self))
        caches.forget(setting: "privacy")
    }

    /// The ledger entry of one heartbeat: its size and which fields carried something.
    static func ledgerEntry(_ request: HeartbeatRequest, bytes: Int, at: Date) -> UploadRecord {
        var fields = ["state: agent version, push URL, active model"]
        if !request.aggregates.isEmpty {
            fields.append("aggregates: \(request.aggregates.count) windows (counts per class, latency and confidence histograms, errors)")
        }
        if !request.reports.isEmpty { fields.append("deployment reports: \(request.reports.count)") }
        if !request.events.isEmpty { fields.append("events: \(request.events.count)") }
        if !request.shadow.isEmpty { fields.append("shadow-evaluation counts: \(request.shadow.count)") }
        if let budget = request.epsilonBudget { fields.append("epsilon budget: \(budget)") }
        if let withheld = request.releasesWithheld { fields.append("counts withheld: \(String(withheld.prefix(300)))") }
        return UploadRecord(at: at, bytes: bytes, fields: fields, epsilonSpent: request.epsilonSpent)
    }

    // MARK: Fleet views

    func status(of device: DeviceRecord, now: Date) -> String {
        if device.revoked { return "revoked" }
        guard let seen = device.lastSeen else { return "offline" }
        let age = now.timeIntervalSince(seen)
        if age <= configuration.onlineWithin { return "online" }
        return age <= configuration.offlineAfter ? "stale" : "offline"
    }

    func deviceInfo(_ device: DeviceRecord) async throws -> DeviceInfo {
        var state: DeploymentState?
        var reason: String?
        var sequence: Int64?
        if let deploymentID = device.desiredDeploymentID {
            let row = try await store.deviceDeployment(deploymentID: deploymentID, deviceID: device.id)
            state = row.flatMap { DeploymentState(rawValue: $0.state) }
            reason = row?.reason
            sequence = try await store.deployment(id: deploymentID)?.sequence
        }
        var info = DeviceInfo(id: device.id, name: device.name, labels: device.labels, enrolledAt: device.enrolledAt, lastSeen: device.lastSeen,
                              status: status(of: device, now: clock()), agentVersion: device.agentVersion, pushURL: device.pushURL,
                              activeModel: device.activeModel, desiredSequence: sequence, deploymentState: state, deploymentReason: reason)
        let proposed = device.proposedLabels
        info.proposedLabels = proposed.isEmpty ? nil : proposed
        return info
    }

    func fleetStatus() async throws -> FleetStatus {
        let devices = try await store.devices()
        let now = clock()
        var counts: [String: Int] = [:]
        var versions: [String: Int] = [:]
        for device in devices {
            counts[status(of: device, now: now), default: 0] += 1
            if !device.revoked, let active = device.activeModel { versions["\(active.name) \(active.version)", default: 0] += 1 }
        }
        var latestInfo: DeploymentInfo?
        if let latest = try await store.deployments().first { latestInfo = try await deploymentInfo(latest, includeDevices: false) }
        return FleetStatus(devices: devices.count, online: counts["online"] ?? 0, stale: counts["stale"] ?? 0,
                           offline: counts["offline"] ?? 0, revoked: counts["revoked"] ?? 0, byModelVersion: versions,
                           latestDeployment: latestInfo,
                           onlineThresholdSeconds: configuration.onlineWithin, offlineThresholdSeconds: configuration.offlineAfter)
    }

    func metrics(since: Date, model: String?) async throws -> MetricsSummary {
        let windows = try await store.metricWindows(since: since, model: model)
        var groups: [String: (AggregateWindow, Set<String>, Int)] = [:]
        for row in windows {
            let window = row.window
            if var group = groups[window.key] {
                group.0.merge(window)
                group.1.insert(row.deviceID)
                group.2 += 1
                groups[window.key] = group
            } else {
                groups[window.key] = (window, [row.deviceID], 1)
            }
        }
        // Class names for the table: the labels in each model version's metadata.
        var labels: [String: [String]] = [:]
        for record in try await store.models() { labels["\(record.name)\u{1F}\(record.version)"] = modelInfo(record).labels }
        let entries = groups.values.sorted { ($0.0.model, $0.0.version) < ($1.0.model, $1.0.version) }.map { window, devices, count in
            let confidence = window.confidenceHistogram.enumerated().reduce(0.0) { $0 + (Double($1.offset) + 0.5) / 10 * Double($1.element) }
            return MetricsSummary.Entry(model: window.model, version: window.version, devices: devices.count, windows: count,
                                        inferences: window.inferences, errors: window.errors, classCounts: window.classCounts,
                                        latencyP50Ms: AggregateWindow.latencyPercentile(window.latencyHistogram, 0.5),
                                        latencyP95Ms: AggregateWindow.latencyPercentile(window.latencyHistogram, 0.95),
                                        latencyP99Ms: AggregateWindow.latencyPercentile(window.latencyHistogram, 0.99),
                                        meanConfidence: window.inferences > 0 ? confidence / Double(window.inferences) : nil)
        }.map { entry in
            var named = entry
            named.classLabels = labels["\(entry.model)\u{1F}\(entry.version)"].flatMap { $0.isEmpty ? nil : $0 }
            return named
        }
        return MetricsSummary(since: since, entries: entries)
    }
}
