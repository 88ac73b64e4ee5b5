import BitModel
import FleetKit
import FleetNIOHTTP
import Foundation
import Logging
import Prometheus

/// The agent's state machine: enrollment, heartbeats, and the verify -> download ->
/// install -> self-test -> switch pipeline for manifests arriving by push or heartbeat.
/// An actor, so one manifest is handled at a time and state changes are serialized.
public actor AgentRuntime {
    let configuration: AgentConfiguration
    let files: AgentFiles
    let logger: Logger
    let runner: ModelRunner
    /// Thread-safe on its own (a lock), so inference records into it without hopping onto the actor.
    nonisolated let aggregates: AggregateBuffer
    /// Local Prometheus metrics (`GET /metrics` on the agent's listener).
    nonisolated let metrics = PrometheusCollectorRegistry()
    nonisolated let inferences: Counter
    nonisolated let inferenceFailures: Counter
    nonisolated let inferenceLatency: DurationHistogram
    var identity: AgentIdentity?
    var state: AgentState
    var heartbeatInterval: Double
    var pushURL: String
    private var installing = false
    /// Set when the controller offered a manifest older than the last one accepted: it lost
    /// deployments, and the next heartbeat proves what this device accepted (SequenceResync
    /// on the controller) so that it issues the desired version again under a newer sequence.
    private var resyncNeeded = false
    /// Paces what refused pushes and replies cost: log lines and events (see AgentRuntime+Trust).
    var refusals: RefusalLimiter
    /// HTTPS trusting only `caCertificatePath`; nil: URLSession and the system store.
    private let transport: (any HTTPTransport)?

    public init(configuration: AgentConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        refusals = RefusalLimiter(perMinute: configuration.refusedPushEventsPerMinute)
        transport = try configuration.caCertificatePath.map { try PinnedCATransport(caCertificateFile: $0) }
        files = try AgentFiles(configuration.dataDirectory)
        runner = ModelRunner(threads: configuration.threads)
        identity = try files.load(AgentIdentity.self, from: files.identityURL)
        state = try files.load(AgentState.self, from: files.stateURL) ?? AgentState()
        aggregates = AggregateBuffer(files: files, windowLength: configuration.aggregateWindow, maxWindows: configuration.maxBufferedWindows,
                                     legacyEpsilonSpent: state.epsilonSpent)
        heartbeatInterval = configuration.heartbeatInterval ?? 30
        pushURL = configuration.advertisedURL ?? ""
        func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "bitfleet_agent", metricName: metric, unitName: unit, helpText: help)
        }
        inferences = metrics.makeCounter(descriptor: name("inferences", "total", "Inferences served"))
        inferenceFailures = metrics.makeCounter(descriptor: name("inference_failures", "total", "Inference requests that failed"))
        inferenceLatency = metrics.makeDurationHistogram(
            descriptor: name("inference", "seconds", "Model latency per inference"),
            buckets: [.microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
                      .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250)])
    }

    // MARK: Startup

    /// Loads the active model (falling back to the previous slot if it is unusable), so an
    /// agent restarted at any point of an install runs a valid model.
    public func loadInstalledModel() {
        // models/ may hold a file no slot names: an install killed after its rename but
        // before the switch was saved, or a switch saved but the old previous slot not yet
        // removed. It goes, so crashes cannot pile up models; a deployment that still
        // wants it downloads it again.
        defer { removeUnusedModels() }
        // Starting again while a new model is on probation counts against it: an agent
        // that keeps restarting with a new model goes back to the previous one.
        if var probation = state.probation, now < probation.until {
            probation.starts += 1
            state.probation = probation
            try? saveState()
            if probation.starts >= 3 {
                revertProbation(reason: "the agent restarted \(probation.starts) times during the new model's probation")
            }
        }
        var unusable: (model: InstalledModel, error: String)?
        for (slot, model) in [("active", state.active), ("previous", state.previous)] {
            guard let model else { continue }
            do {
                let loaded = try runner.prepare(model, file: files.modelURL(sha256: model.sha256))
                runner.activate(loaded)
                if slot == "previous" {
                    logger.warning("active model unusable; reverted to the previous slot \(model.name) \(model.version)")
                    state.active = model
                    state.previous = nil
                    // The controller must not go on believing the unusable model runs: its
                    // deployment is reported failed, queued durably and sent at once (as a
                    // probation revert is), so the next heartbeat's older model is taken.
                    var failure: DeploymentReport?
                    if let unusable {
                        failure = Self.makeReport(unusable.model.sequence, .failed,
                                                  "reverted to \(model.version) by the device: the installed model cannot be loaded: \(unusable.error)")
                        enqueue(failure!)
                    }
                    try? saveState()
                    if let failure { Task { await self.send(failure) } }
                }
                logger.info("serving \(model.name) \(model.version) (sequence \(model.sequence))")
                if let shadow = state.shadow, let shadowLoaded = try? runner.prepare(shadow, file: files.modelURL(sha256: shadow.sha256)) {
                    runner.setShadow(shadowLoaded)
                }
                return
            } catch {
                logger.error("cannot load \(slot) model \(model.name) \(model.version): \(error)")
                if slot == "active" { unusable = (model, "\(error)") }
            }
        }
    }

    public func setPushURL(_ url: String) { pushURL = url }

    /// Now, by the configured clock (simulated in tests).
    nonisolated var now: Date { configuration.clock() }

    var controller: FleetHTTPClient {
        FleetHTTPClient(baseURL: configuration.controllerURL, token: identity?.credential, timeout: 10, transport: transport)
    }

    /// Enrolls once; the identity (credential, pinned key) is stored with mode 0600. The
    /// controller's key is pinned only if the token (or --controller-key-fingerprint)
    /// vouches for it; otherwise nothing is written and the error names both fingerprints.
    func enrollIfNeeded() async throws {
        if identity != nil { return }
        guard let text = configuration.enrollToken else {
            throw FleetClientError(status: nil, code: "not_enrolled", message: "this agent is not enrolled; pass --enroll-token")
        }
        let token = EnrollmentToken(parsing: text)
        let expected = try EnrollmentTrust.expectedFingerprint(token: token, configured: configuration.controllerKeyFingerprint)
        let client = FleetHTTPClient(baseURL: configuration.controllerURL, token: nil, timeout: 10, transport: transport)
        let response = try await client.json("POST", "/api/v1/enroll", body: EnrollRequest(
            token: token.secret, name: configuration.name, labels: configuration.labels, pushURL: pushURL, agentVersion: agentVersion),
            as: EnrollResponse.self)
        try EnrollmentTrust.check(publicKey: response.publicKey, fleetID: response.fleetID, expected: expected,
                                  announcements: response.keyAnnouncements ?? [])
        try EnrollmentTrust.checkReceipt(response, tokenSecret: token.secret)
        let newIdentity = AgentIdentity(deviceID: response.deviceID, credential: response.credential, fleetID: response.fleetID,
                                        publicKey: response.publicKey, controllerURL: configuration.controllerURL.absoluteString)
        try files.save(newIdentity, to: files.identityURL, secret: true)
        identity = newIdentity
        logger.info("enrolled as \(response.deviceID) in \(response.fleetID), controller key \(ControllerKeyFingerprint.of(publicKeyBase64: response.publicKey) ?? "?")")
    }

    var deviceID: String? { identity?.deviceID }
    public var isEnrolled: Bool { identity != nil }

    // MARK: Heartbeats

    /// Runs until cancelled: enroll (retrying), then heartbeat with jitter.
    public func run() async {
        while !Task.isCancelled {
            do {
                try await enrollIfNeeded()
                break
            } catch let refusal as EnrollmentTrustError {
                // Not a network hiccup: an impostor answered, or the token cannot vouch.
                logger.error("\(refusal.description); retrying in 10 s")
                try? await Task.sleep(for: .seconds(10))
            } catch {
                logger.warning("enrollment failed, retrying: \(error)")
                try? await Task.sleep(for: .seconds(2))
            }
        }
        while !Task.isCancelled {
            do {
                try await heartbeat()
            } catch {
                logger.warning("heartbeat failed (working offline): \(error)")
            }
            try? aggregates.persist()
            closeProbation()
            let interval = NetworkBounds.clampedHeartbeatInterval(configuration.heartbeatInterval ?? heartbeatInterval)
            let jittered = interval * Double.random(in: 0.9...1.1)
            try? await Task.sleep(for: .milliseconds(Int(jittered * 1000)))
        }
    }

    func heartbeat() async throws {
        guard identity != nil else { return }
        let reports = Array(state.pendingReports.prefix(500))
        let events = Array(state.pendingEvents.prefix(100))
        // Noise is drawn once per window and persisted with its charge before it is sent;
        // a retry (also after a restart) resends the same batch (AggregateBuffer.release).
        let release: AggregateBuffer.Release
        do {
            release = try aggregates.release(now: now, settings: state.privacy, budget: configuration.epsilonBudget)
        } catch {
            logger.warning("cannot save the released aggregates, so none are sent: \(error)")
            release = AggregateBuffer.Release(batch: AggregateBuffer.Batch(windows: [], shadow: []), epsilonSpent: aggregates.epsilonSpent,
                                              withheld: "the released copy could not be saved (\(DiskSpace.describe(error, directory: files.root)))")
        }
        var request = HeartbeatRequest(agentVersion: agentVersion, pushURL: pushURL, activeModel: state.active?.activeModel,
                                       reports: reports, aggregates: release.batch.windows, events: events, shadow: release.batch.shadow)
        let accounting = state.privacy.epsilon != nil || release.epsilonSpent > 0 || configuration.epsilonBudget != nil
        request.epsilonSpent = accounting ? release.epsilonSpent : nil
        request.epsilonBudget = configuration.epsilonBudget
        request.releasesWithheld = release.withheld
        let nonce = Secrets.randomToken(bytes: 16)
        request.nonce = nonce
        if resyncNeeded { request.acceptedManifest = state.lastAcceptedManifest }
        let sent = ContinuousClock.now
        let response = try await controller.json("POST", "/api/v1/heartbeat", body: request, as: HeartbeatResponse.self)
        // Nothing of a reply that fails verification is used, not even as an acknowledgement:
        // it counts as a failed heartbeat and everything is sent again.
        let (reply, signingKey) = try verifiedReply(response, nonce: nonce, requestAge: (ContinuousClock.now - sent).inSeconds)
        if request.acceptedManifest != nil { resyncNeeded = false }
        state.epsilonSpent = release.epsilonSpent
        state.privacy = reply.privacy
        aggregates.acknowledge(release.batch)
        for sent in reports { if let index = state.pendingReports.firstIndex(of: sent) { state.pendingReports.remove(at: index) } }
        for sent in events { if let index = state.pendingEvents.firstIndex(of: sent) { state.pendingEvents.remove(at: index) } }
        // Best effort: on a full disk the heartbeat still follows key rotations and the
        // desired manifest (which then fails with a clear "disk full" report); a crash
        // before the next successful write only resends reports (idempotent) and events.
        try? saveState()
        heartbeatInterval = NetworkBounds.clampedHeartbeatInterval(reply.heartbeatInterval)
        if let current = identity, signingKey != current.publicKey {
            // The reply verified with the key its announcement chain leads to from ours.
            var updated = current
            updated.publicKey = signingKey
            try files.save(updated, to: files.identityURL, secret: true)
            identity = updated
            logger.info("pinned the controller's rotated signing key \(ControllerKeyFingerprint.of(publicKeyBase64: signingKey) ?? "?")")
        }
        if let desired = reply.desired {
            await handle(desired, source: "heartbeat")
        }
    }

    // MARK: Manifests

    /// Verifies and applies a manifest. Returns nil when accepted for installation (or
    /// already running), or the reason it was refused.
    @discardableResult
    public func handle(_ signed: SignedManifest, source: String) async -> String? {
        guard let identity else { return "not enrolled" }
        let manifest: DeploymentManifest
        do {
            let verifier = try ManifestVerifier(publicKeyBase64: identity.publicKey, fleetID: identity.fleetID, deviceID: identity.deviceID)
            manifest = try verifier.verify(signed, lastAccepted: state.lastAcceptedSequence)
        } catch let error as ManifestError {
            if case .notNewer(let sequence, let lastAccepted) = error, source == "heartbeat" {
                // Equal: converged already. Older: the controller lost what it signed last.
                if sequence < lastAccepted, state.lastAcceptedManifest != nil { resyncNeeded = true }
                return nil
            }
            let reason = "\(source) manifest refused: \(error)"
            logger.warning("\(reason)")
            appendEvent(DeviceEvent(at: now, kind: "manifest_refused", message: String(reason.prefix(500))))
            try? saveState()
            return reason
        } catch {
            return "\(error)"
        }
        if installing { return nil }
        if manifest.sequence == state.failedSequence, let at = state.failedAt, now.timeIntervalSince(at) < 30 {
            return nil  // a failed deployment is retried slowly, not on every heartbeat
        }
        installing = true
        defer { installing = false }
        if manifest.shadow == true {
            await installShadow(manifest, signed: signed)
        } else {
            await install(manifest, signed: signed)
        }
        return nil
    }

    /// Queues the report durably first (a crash mid-send must not lose an activation),
    /// sends it at once, and forgets it when the controller acknowledged it.
    private func report(_ sequence: Int64, _ deploymentState: DeploymentState, _ reason: String? = nil) async {
        let report = Self.makeReport(sequence, deploymentState, reason)
        enqueue(report)
        try? saveState()
        await send(report)
    }

    static func makeReport(_ sequence: Int64, _ deploymentState: DeploymentState, _ reason: String? = nil) -> DeploymentReport {
        DeploymentReport(sequence: sequence, state: deploymentState, reason: reason.map { String($0.prefix(1000)) })
    }

    /// Adds a report to the durable queue (saved with the next state write).
    private func enqueue(_ report: DeploymentReport) {
        state.pendingReports.append(report)
        if state.pendingReports.count > 200 { state.pendingReports.removeFirst(state.pendingReports.count - 200) }
    }

    /// Sends a queued report now; on failure it stays queued for the next heartbeat.
    private func send(_ report: DeploymentReport) async {
        FailPoint.hit(.beforeReport)
        do {
            _ = try await controller.send("POST", "/api/v1/reports", body: try FleetJSON.encoder.encode([report]))
            FailPoint.hit(.afterReport)
            if let index = state.pendingReports.firstIndex(of: report) { state.pendingReports.remove(at: index) }
            try? saveState()
        } catch {
            // Stays queued; the next heartbeat carries it.
        }
    }

    /// Records an install failure as a device event too, so it is visible on the controller
    /// even for a manifest it has no deployment for (e.g. one signed for another purpose).
    private func recordInstallFailure(_ manifest: DeploymentManifest, _ reason: String) {
        appendEvent(DeviceEvent(at: now, kind: "install_failed",
                                message: String("\(manifest.model) \(manifest.version) (sequence \(manifest.sequence)): \(reason)".prefix(500))))
    }

    func appendEvent(_ event: DeviceEvent) {
        state.pendingEvents.append(event)
        // Bounded: a flood of forged pushes must not grow the state or block heartbeats.
        if state.pendingEvents.count > 200 {
            let dropped = state.pendingEvents.count - 199
            state.pendingEvents.removeFirst(dropped)
            state.pendingEvents.insert(DeviceEvent(at: now, kind: "events_dropped", message: "\(dropped) older events dropped"), at: 0)
        }
    }

    private func install(_ manifest: DeploymentManifest, signed: SignedManifest) async {
        let installed = InstalledModel(name: manifest.model, version: manifest.version, sha256: manifest.sha256.lowercased(), sequence: manifest.sequence)
        logger.info("installing \(manifest.model) \(manifest.version) (sequence \(manifest.sequence))")
        let target = files.modelURL(sha256: installed.sha256)
        do {
            try await fetch(manifest, to: target)
            await report(manifest.sequence, .installed)
            let loaded = try runner.prepare(installed, file: target)
            // The switch is one state write: the previous slot keeps the model we were
            // running, and the activation report is queued in the same write, so a crash
            // right after it cannot leave the controller believing the old model runs.
            // Until that write succeeds nothing in memory changes (a full disk leaves the
            // agent exactly as it was).
            var next = state
            if next.active?.sha256 != installed.sha256 { next.previous = next.active }
            next.active = installed
            next.lastAcceptedSequence = manifest.sequence
            next.lastAcceptedManifest = signed
            next.failedSequence = nil
            next.failedAt = nil
            next.probation = next.previous == nil ? nil
                : Probation(sequence: manifest.sequence, until: now.addingTimeInterval(configuration.probationSeconds), starts: 0, violations: 0)
            next.shadow = nil
            let activation = Self.makeReport(manifest.sequence, .active)
            next.pendingReports.append(activation)
            FailPoint.hit(.beforeStateSave)
            try files.save(next, to: files.stateURL)
            state = next
            FailPoint.hit(.afterStateSave)
            runner.activate(loaded)
            runner.setShadow(nil)
            removeUnusedModels()
            removeStaleDownloads()
            logger.info("activated \(manifest.model) \(manifest.version)")
            await send(activation)
        } catch {
            let reason = DiskSpace.describe(error, directory: files.root)
            logger.error("install of \(manifest.model) \(manifest.version) failed: \(reason)")
            removeUnusedModels()
            state.failedSequence = manifest.sequence
            state.failedAt = now
            recordInstallFailure(manifest, reason)
            await report(manifest.sequence, .failed, reason)
        }
    }

    struct InstallError: Error, CustomStringConvertible { var description: String }

    /// Puts the manifest's verified blob at `target`, downloading (resumably) unless an
    /// identical file is already installed.
    private func fetch(_ manifest: DeploymentManifest, to target: URL) async throws {
        guard manifest.size <= configuration.maxModelBytes else {
            throw InstallError(description: "the model needs \(manifest.size) bytes, this device accepts at most \(configuration.maxModelBytes) (--max-model-bytes)")
        }
        if FileManager.default.fileExists(atPath: target.path), (try? FileDigest.sha256Hex(of: target)) == manifest.sha256.lowercased() {
            return
        }
        // Refuse before fetching a byte if the blob would eat into the free-space reserve:
        // the running model, state and aggregates must always be writable.
        try DiskSpace.requireFree(Int64(manifest.size) + configuration.minFreeBytes, reserve: configuration.minFreeBytes,
                                  for: manifest.size, at: files.root)
        await report(manifest.sequence, .downloading)
        var downloader = BlobDownloader(client: controller, files: files)
        downloader.chunkSize = max(1, configuration.chunkBytes)
        let part = try await downloader.download(manifest)
        try Self.atomicMove(part, to: target)
        FailPoint.hit(.afterRename)
    }

    /// Installs a model for shadow evaluation: same checks as an activation, but it only
    /// runs next to the active model and its results are never served.
    private func installShadow(_ manifest: DeploymentManifest, signed: SignedManifest) async {
        let installed = InstalledModel(name: manifest.model, version: manifest.version, sha256: manifest.sha256.lowercased(), sequence: manifest.sequence)
        let target = files.modelURL(sha256: installed.sha256)
        do {
            try await fetch(manifest, to: target)
            await report(manifest.sequence, .installed)
            let loaded = try runner.prepare(installed, file: target)
            if let active = runner.current, active.session.inputElementCount != loaded.session.inputElementCount
                || active.session.outputElementCount != loaded.session.outputElementCount {
                throw InstallError(description: "the shadow model's input/output shape differs from the active model's")
            }
            state.shadow = installed
            state.lastAcceptedSequence = manifest.sequence
            state.lastAcceptedManifest = signed
            try saveState()
            runner.setShadow(loaded)
            logger.info("shadow-evaluating \(manifest.model) \(manifest.version)")
            await report(manifest.sequence, .active)
        } catch {
            let reason = DiskSpace.describe(error, directory: files.root)
            state.failedSequence = manifest.sequence
            state.failedAt = now
            recordInstallFailure(manifest, reason)
            await report(manifest.sequence, .failed, reason)
        }
    }

    /// rename(2) after fsync: the model file appears complete or not at all.
    static func atomicMove(_ source: URL, to destination: URL) throws {
        FailPoint.hit(.beforeFsync)
        let handle = try FileHandle(forUpdating: source)
        try handle.synchronize()
        try handle.close()
        FailPoint.hit(.beforeRename)
        if rename(source.path, destination.path) != 0 {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: destination.path])
        }
    }

    /// After a successful install every other partial download is abandoned (one install
    /// runs at a time), so it is removed instead of holding disk space forever.
    private func removeStaleDownloads() {
        for file in (try? FileManager.default.contentsOfDirectory(atPath: files.downloads.path)) ?? [] {
            try? FileManager.default.removeItem(at: files.downloads.appendingPathComponent(file))
        }
    }

    /// Deletes every file in models/ that no slot (active, previous, shadow) names.
    private func removeUnusedModels() {
        let keep = Set([state.active?.sha256, state.previous?.sha256, state.shadow?.sha256].compactMap { $0 }.map { "\($0).bnn" })
        for file in (try? FileManager.default.contentsOfDirectory(atPath: files.models.path)) ?? [] where !keep.contains(file) {
            logger.info("removing models/\(file), which no slot names")
            try? FileManager.default.removeItem(at: files.models.appendingPathComponent(file))
        }
    }

    func saveState() throws { try files.save(state, to: files.stateURL) }

    // MARK: Local inference

    nonisolated func infer(body: Data) throws -> ModelRunner.Result {
        let now = configuration.clock()
        do {
            let result = try runner.infer(body: body)
            inferences.increment()
            inferenceLatency.record(.nanoseconds(Int64(result.latencyMs * 1e6)))
            aggregates.record(model: result.model.name, version: result.model.version, classes: result.scores.count,
                              predictedClass: result.topClass, latencyMs: result.latencyMs, confidence: result.confidence, now: now)
            if let shadow = runner.shadowInfer(result.input) {
                aggregates.recordShadow(sequence: shadow.model.sequence, classes: result.scores.count, activeClass: result.topClass,
                                        shadowClass: shadow.topClass, confidenceDelta: Double(shadow.confidence - result.confidence),
                                        latencyDeltaMs: shadow.latencyMs - result.latencyMs)
            }
            if let budget = runner.current?.session.model.metadata.properties["latency_budget_ms"].flatMap(Double.init),
               result.latencyMs > budget * 10 {
                let model = result.model
                Task { await self.probationViolation(model, "latency \(String(format: "%.2f", result.latencyMs)) ms is more than 10x the budget of \(budget) ms") }
            }
            return result
        } catch {
            inferenceFailures.increment()
            if let current = runner.current, !(error is ModelRunner.Failure) {
                let model = current.installed
                Task { await self.probationViolation(model, "inference failed: \(error)") }
            }
            if let current = runner.current {
                aggregates.record(model: current.installed.name, version: current.installed.version,
                                  classes: current.session.outputElementCount, predictedClass: nil, latencyMs: 0, confidence: 0, now: now)
            }
            throw error
        }
    }

    /// Counts a violation against a model on probation; reverts after too many.
    func probationViolation(_ model: InstalledModel, _ reason: String) {
        guard var probation = state.probation, probation.sequence == model.sequence, now < probation.until else { return }
        probation.violations += 1
        probation.lastViolation = reason
        state.probation = probation
        try? saveState()
        if probation.violations >= configuration.probationViolations {
            revertProbation(reason: "\(probation.violations) problems during probation, last: \(reason)")
        }
    }

    /// Returns to the previous slot and reports the new model as failed.
    func revertProbation(reason: String) {
        guard let probation = state.probation, let previous = state.previous else { return }
        do {
            let loaded = try runner.prepare(previous, file: files.modelURL(sha256: previous.sha256))
            let failed = state.active
            state.active = previous
            state.previous = nil
            state.probation = nil
            try saveState()
            runner.activate(loaded)
            logger.warning("reverted from \(failed?.name ?? "?") \(failed?.version ?? "?") to \(previous.name) \(previous.version): \(reason)")
            let sequence = probation.sequence
            Task { await self.report(sequence, .failed, "reverted to \(previous.version) by the device: \(reason)") }
        } catch {
            logger.error("cannot revert to the previous model: \(error)")
        }
    }

    /// Ends a probation that passed its window without trouble.
    func closeProbation() {
        if let probation = state.probation, now >= probation.until {
            state.probation = nil
            try? saveState()
        }
    }

    public struct Status: Codable, Sendable {
        public var deviceID: String?
        public var fleetID: String?
        public var active: ActiveModel?
        public var previous: ActiveModel?
        public var shadow: ActiveModel?
        public var lastAcceptedSequence: Int64
        public var bufferedWindows: Int
        public var pendingReports: Int
        /// Epsilon charged for released noise so far, and this device's limit if it has one.
        public var epsilonSpent: Double
        public var epsilonBudget: Double?
        /// Why the device holds its counts back (e.g. its budget is spent); nil: it releases.
        public var releasesWithheld: String?
    }

    public func status() -> Status {
        Status(deviceID: identity?.deviceID, fleetID: identity?.fleetID, active: state.active?.activeModel, previous: state.previous?.activeModel,
               shadow: state.shadow?.activeModel, lastAcceptedSequence: state.lastAcceptedSequence, bufferedWindows: aggregates.count, pendingReports: state.pendingReports.count,
               epsilonSpent: aggregates.epsilonSpent, epsilonBudget: configuration.epsilonBudget, releasesWithheld: aggregates.releasesWithheld)
    }

    public func persistAggregates() { try? aggregates.persist() }

    /// Prometheus text: counters and histograms plus the models and buffer size now.
    public func prometheusText() -> String {
        var lines = [metrics.emitToString(), "# HELP bitfleet_agent_model_info Models installed on this device",
                     "# TYPE bitfleet_agent_model_info gauge"]
        for (role, model) in [("active", state.active), ("previous", state.previous), ("shadow", state.shadow)] {
            if let model { lines.append("bitfleet_agent_model_info{role=\"\(role)\",model=\"\(model.name)\",version=\"\(model.version)\",sequence=\"\(model.sequence)\"} 1") }
        }
        lines.append("# HELP bitfleet_agent_buffered_windows Aggregate windows waiting to be sent")
        lines.append("# TYPE bitfleet_agent_buffered_windows gauge")
        lines.append("bitfleet_agent_buffered_windows \(aggregates.count)")
        lines.append("# HELP bitfleet_agent_pending_reports Deployment reports waiting to be sent")
        lines.append("# TYPE bitfleet_agent_pending_reports gauge")
        lines.append("bitfleet_agent_pending_reports \(state.pendingReports.count)")
        return lines.joined(separator: "\n") + "\n"
    }
}
