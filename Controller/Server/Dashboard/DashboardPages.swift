import BitModel
import FleetKit
import Foundation
import Hummingbird

/// The dashboard's pages, rendered on the server from the same service calls as the API.
struct DashboardPages: Sendable {
    let service: FleetService
    let rollouts: RolloutService
    let sessions: DashboardSessions
    /// The same per-address limit on failed sign-ins as the API's admin authentication.
    let throttle: AuthThrottle
    let refusals: AuditRefusalLimiter
    typealias E = HTML

    // MARK: Plumbing

    func html(_ text: String, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "text/html; charset=utf-8"
        fields[.cacheControl] = "no-store"
        // No external asset, no framing; the inline style and polling script are ours.
        fields[.contentSecurityPolicy] = "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func redirect(_ location: String, cookie: String? = nil) -> Response {
        var headers: HTTPFields = [.location: location]
        if let cookie { headers[.setCookie] = cookie }
        return Response(status: .seeOther, headers: headers)
    }

    /// Renders a signed-in page, or sends the browser to the sign-in form.
    func signedIn(_ request: Request, title: String, _ body: (String) async throws -> String) async throws -> Response {
        guard let csrf = try await sessions.csrf(for: request) else { return redirect("/login") }
        let fragment = request.uri.queryParameters["fragment"] != nil
        return html(E.page(title: title, body: try await body(csrf), fragment: fragment, csrf: csrf))
    }

    // MARK: Sign-in

    func loginForm(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let failed = request.uri.queryParameters["failed"] != nil
        return html(E.page(title: "Sign in", body: """
            <h1>Sign in</h1>\(failed ? "<p class=bad>That token is not valid.</p>" : "")
            <form method=post action="/login"><label>Admin token <input type=password name=token size=50 autocomplete=off></label>
            <button>Sign in</button></form>
            <p class=muted>Or open a one-time link from <code>fleetctl dashboard</code>.</p>
            """, fragment: false, csrf: nil))
    }

    func login(_ request: Request, _ context: FleetRequestContext, adminTokenHash: String?) async throws -> Response {
        let address = "admin \(context.remoteHost)"
        guard await !throttle.isLocked(address, now: service.clock()) else {
            try await audit("POST /login", status: 429, context)
            return html(E.page(title: "Sign in", body: "<p class=bad>Too many failed sign-ins from this address; retry in a minute.</p>",
                               fragment: false, csrf: nil), status: .tooManyRequests)
        }
        var request = request
        let fields = formFields(try await request.collectBody(upTo: 16 * 1024))
        guard let token = fields["token"], let expected = adminTokenHash, Secrets.constantTimeEquals(expected, Secrets.hash(token)) else {
            await throttle.recordFailure(address, now: service.clock())
            try await audit("POST /login", status: 401, context)
            return redirect("/login?failed=1")
        }
        try await audit("POST /login", status: 303, context)
        return redirect("/", cookie: try await sessions.create())
    }

    /// Dashboard sign-ins and actions go to the same audit log as the API's.
    func audit(_ action: String, status: Int, _ context: FleetRequestContext) async throws {
        await AuditMiddleware.record(store: service.store, refusals: refusals, at: service.clock(),
                                     actor: status == 401 || status == 429 ? "unauthenticated" : "admin (dashboard)",
                                     action: action, status: status, context)
    }

    func loginLink(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let code = try context.parameters.require("code")
        // Guessing link codes counts as failed sign-ins: once locked, no database write.
        let address = "admin \(context.remoteHost)"
        guard await !throttle.isLocked(address, now: service.clock()) else {
            try await audit("GET /login/link", status: 429, context)
            return html(E.page(title: "Sign in", body: "<p class=bad>Too many failed sign-ins from this address; retry in a minute.</p>",
                               fragment: false, csrf: nil), status: .tooManyRequests)
        }
        guard try await sessions.consumeLoginLink(code) else {
            await throttle.recordFailure(address, now: service.clock())
            try await audit("GET /login/link", status: 401, context)
            return redirect("/login?failed=1")
        }
        try await audit("GET /login/link", status: 303, context)
        // Only paths on this server: not "//host", not "/\\host" (browsers read both as another host).
        let next = request.uri.queryParameters["next"].map(String.init).flatMap {
            $0.hasPrefix("/") && !$0.hasPrefix("//") && !$0.contains("\\") ? $0 : nil
        } ?? "/"
        return redirect(next, cookie: try await sessions.create())
    }

    func logout(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        var request = request
        let fields = formFields(try await request.collectBody(upTo: 16 * 1024))
        guard let csrf = try await sessions.csrf(for: request), let sent = fields["csrf"], Secrets.constantTimeEquals(csrf, sent) else {
            return html("<p>Invalid or missing CSRF token.</p>", status: .forbidden)
        }
        try await sessions.end(request)
        return redirect("/login", cookie: "\(DashboardSessions.cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    // MARK: Pages

    func overview(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        try await signedIn(request, title: "Overview") { _ in
            let status = try await service.fleetStatus()
            var body = "<h1>Fleet overview</h1><div class=cards>"
            for (name, value, css) in [("online", status.online, "ok"), ("stale", status.stale, "warn"), ("offline", status.offline, "bad"), ("revoked", status.revoked, "muted")] {
                body += "<div class=card><div class=\"n \(css)\" id=\"devices-\(name)\">\(value)</div>\(name)</div>"
            }
            body += "</div><p class=muted>\(status.devices) devices. Online: seen within \(Int(status.onlineThresholdSeconds)) s; offline: not seen for \(Int(status.offlineThresholdSeconds)) s.</p>"
            body += "<h2>Devices per model version</h2>" + E.barChart(status.byModelVersion.sorted { $0.key < $1.key }.map { ($0.key, Double($0.value)) })
            body += "<h2>Active rollouts</h2>"
            let active = try await service.store.rollouts().filter { ["running", "paused", "halted"].contains($0.state) }
            if active.isEmpty { body += "<p class=muted>none</p>" }
            for record in active.prefix(10) {
                body += try await rolloutSummary(try await rollouts.info(record))
            }
            body += "<h2>Recent failures</h2>"
            var failures: [[String]] = []
            for deployment in try await service.store.deployments().prefix(10) {
                for row in try await service.store.deviceDeployments(deploymentID: deployment.id!) where row.state == DeploymentState.failed.rawValue {
                    failures.append([E.escape(row.deviceID), "#\(deployment.sequence)", E.escape(row.reason ?? ""), E.ago(row.updatedAt, now: service.clock())])
                }
            }
            body += failures.isEmpty ? "<p class=muted>none</p>" : E.table(["device", "deployment", "reason", "when"], Array(failures.prefix(20)))
            return body
        }
    }

    func rolloutSummary(_ r: RolloutInfo) async throws -> String {
        var out = "<p><a href=\"/rollouts/\(r.id)\">Rollout \(r.id)</a>: \(E.escape(r.model)) \(E.escape(r.version)) - <b id=\"rollout-\(r.id)-state\">\(r.state.rawValue)</b>\(r.reason.map { " <span class=muted>(\(E.escape($0)))</span>" } ?? "")</p><table>"
        for (index, stage) in r.stages.enumerated() {
            let active = stage.counts["active"] ?? 0, failed = stage.counts["failed"] ?? 0
            let inProgress = ["pending", "notified", "downloading", "installed"].reduce(0) { $0 + (stage.counts[$1] ?? 0) }
            out += "<tr><td>stage \(index + 1) (\(Int(stage.percent))%)\(index == r.currentStage ? " &#9664;" : "")</td><td>\(E.progress(active: active, failed: failed, inProgress: inProgress, total: stage.devices))</td><td>\(active)/\(stage.devices) active, \(failed) failed</td></tr>"
        }
        return out + "</table>"
    }

    func devices(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        try await signedIn(request, title: "Devices") { _ in
            let query = request.uri.queryParameters
            let search = query["q"].map { String($0).lowercased() } ?? ""
            let statusFilter = query["status"].map(String.init) ?? ""
            let labelFilter = query["label"].map(String.init) ?? ""
            let versionFilter = query["version"].map(String.init) ?? ""
            let sort = query["sort"].map(String.init) ?? "name"
            var infos: [DeviceInfo] = []
            for device in try await service.store.devices() { infos.append(try await service.deviceInfo(device)) }
            infos = infos.filter { info in
                (search.isEmpty || info.name.lowercased().contains(search) || info.id.lowercased().contains(search))
                    && (statusFilter.isEmpty || info.status == statusFilter)
                    && (versionFilter.isEmpty || info.activeModel?.version == versionFilter)
                    && (labelFilter.isEmpty || info.labels.contains { "\($0.key)=\($0.value)" == labelFilter })
            }
            switch sort {
            case "seen": infos.sort { ($0.lastSeen ?? .distantPast) > ($1.lastSeen ?? .distantPast) }
            case "status": infos.sort { ($0.status, $0.name) < ($1.status, $1.name) }
            default: infos.sort { $0.name < $1.name }
            }
            let now = service.clock()
            var body = "<h1>Devices</h1><form method=get action=\"/devices\">"
            body += "<input name=q placeholder=\"search name or id\" value=\"\(E.escape(search))\"> "
            body += "<select name=status><option value=\"\">any status</option>" + ["online", "stale", "offline", "revoked"].map { "<option\($0 == statusFilter ? " selected" : "")>\($0)</option>" }.joined() + "</select> "
            body += "<input name=label placeholder=\"label k=v\" value=\"\(E.escape(labelFilter))\"> <input name=version placeholder=\"version\" value=\"\(E.escape(versionFilter))\" size=6> "
            body += "<select name=sort>" + [("name", "by name"), ("seen", "by last seen"), ("status", "by status")].map { "<option value=\($0.0)\($0.0 == sort ? " selected" : "")>\($0.1)</option>" }.joined() + "</select> <button>Filter</button></form><br>"
            body += "<p class=muted id=device-count>\(infos.count) devices</p>"
            body += E.table(["name", "status", "model", "deployment", "last seen", "labels"], infos.map { info in
                let css = info.status == "online" ? "ok" : info.status == "stale" ? "warn" : "bad"
                return ["<a href=\"/devices/\(E.escape(info.id))\">\(E.escape(info.name))</a>", "<span class=\(css)>\(info.status)</span>",
                        E.escape(info.activeModel.map { "\($0.name) \($0.version)" } ?? "-"),
                        E.escape(info.deploymentState.map { "\($0.rawValue)" + (info.desiredSequence.map { " #\($0)" } ?? "") } ?? "-"),
                        E.ago(info.lastSeen, now: now), E.escape(info.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))]
            })
            return body
        }
    }

    func device(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        return try await signedIn(request, title: "Device") { _ in
            guard let record = try await service.store.device(id: id) else { return "<h1>No device \(E.escape(id))</h1>" }
            let info = try await service.deviceInfo(record)
            let now = service.clock()
            var body = "<h1>\(E.escape(info.name)) <span class=muted>\(E.escape(info.id))</span></h1>"
            body += "<p>Status <b>\(info.status)</b>, last seen \(E.ago(info.lastSeen, now: now)), agent \(E.escape(info.agentVersion)), push address \(E.escape(info.pushURL.isEmpty ? "-" : info.pushURL))</p>"
            body += "<p>Running <b>\(E.escape(info.activeModel.map { "\($0.name) \($0.version) (sequence \($0.sequence))" } ?? "no model"))</b>. Labels: \(E.escape(info.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")))\(info.proposedLabels.map { " (the device asked for: " + E.escape($0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")) + "; not used for targeting)" } ?? "")</p>"
            body += "<h2>History of versions and failures</h2>"
            var history: [[String]] = []
            for (deployment, row) in try await service.store.deviceHistory(deviceID: id) {
                let model = try await service.store.model(id: deployment.modelID)
                history.append(["#\(deployment.sequence)", E.escape("\(model?.name ?? "?") \(model?.version ?? "?")\(deployment.shadow ? " (shadow)" : "")"),
                                "<span class=\(row.state == "failed" ? "bad" : row.state == "active" ? "ok" : "warn")>\(row.state)</span>",
                                E.escape(row.reason ?? ""), E.ago(row.updatedAt, now: now)])
            }
            body += E.table(["deployment", "version", "state", "reason", "updated"], history)
            body += "<h2>Last aggregates</h2>"
            let windows = try await service.store.metricWindows(since: now.addingTimeInterval(-86_400), model: nil).filter { $0.deviceID == id }
                .sorted { $0.windowStart > $1.windowStart }.prefix(10)
            body += E.table(["window", "version", "inferences", "errors", "classes"], windows.map {
                [E.ago($0.windowStart, now: now), E.escape("\($0.model) \($0.version)"), "\($0.inferences)", "\($0.errors)", E.escape($0.classCountsJSON)]
            })
            body += "<h2>Events</h2>" + E.table(["when", "kind", "message"], try await service.store.events(deviceID: id, limit: 20).map {
                [E.ago($0.at, now: now), E.escape($0.kind), E.escape($0.message)]
            })
            body += "<h2>Privacy ledger</h2><p class=muted>Every upload this device made: only state and aggregates (docs/PRIVACY.md).</p>"
            body += E.table(["when", "bytes", "fields", "epsilon spent"], try await service.store.uploads(deviceID: id, limit: 20).map {
                [E.ago($0.at, now: now), "\($0.bytes)", E.escape($0.fields.joined(separator: "; ")), $0.epsilonSpent.map { String(format: "%.2f", $0) } ?? "-"]
            })
            return body
        }
    }

    func models(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        try await signedIn(request, title: "Models") { _ in
            let devices = try await service.store.devices()
            return "<h1>Models and versions</h1>" + E.table(["model", "version", "size", "binary MACs", "accuracy", "labels", "running on", "uploaded"],
                try await service.store.models().map { record in
                    let info = service.modelInfo(record)
                    let running = devices.filter { $0.activeModel?.sha256 == record.sha256 && $0.activeModel?.name == record.name && !$0.revoked }.count
                    return [E.escape(info.name), E.escape(info.version), "\(info.size)", "\(info.binaryMACs)", E.escape(info.properties["accuracy"] ?? "-"),
                            "\(info.labels.count)", "\(running) devices", E.ago(info.createdAt, now: service.clock())]
                })
        }
    }

    func rolloutList(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        try await signedIn(request, title: "Rollouts") { _ in
            var body = "<h1>Rollouts</h1>"
            for record in try await service.store.rollouts().prefix(30) { body += try await rolloutSummary(try await rollouts.info(record)) }
            return body
        }
    }

    func rollout(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let id = try context.parameters.require("id", as: Int64.self)
        return try await signedIn(request, title: "Rollout \(id)") { csrf in
            guard let record = try await service.store.rollout(id: id) else { return "<h1>No rollout \(id)</h1>" }
            let r = try await rollouts.info(record)
            var body = "<h1>Rollout \(r.id): \(E.escape(r.model)) \(E.escape(r.version))</h1>" + (try await rolloutSummary(r))
            body += "<p class=muted>sequence \(r.sequence); previous version \(E.escape(r.previousVersion ?? "-")); soak \(Int(r.soakSeconds)) s; halt above \(Int(r.maxFailureFraction * 100))% failures after \(r.minDevices) devices; auto-rollback \(r.autoRollback ? "on" : "off")</p>"
            for action in ["pause", "resume", "abort", "rollback"] {
                body += "<form class=inline method=post action=\"/rollouts/\(r.id)/\(action)\"><input type=hidden name=csrf value=\"\(E.escape(csrf))\"><button id=\"action-\(action)\">\(action)</button></form>"
            }
            body += "<h2>Counters per stage</h2>" + E.table(["stage", "devices"] + ["waiting", "pending", "notified", "downloading", "installed", "active", "failed"],
                r.stages.enumerated().map { index, stage in
                    ["\(index + 1) (\(Int(stage.percent))%)", "\(stage.devices)"] + ["waiting", "pending", "notified", "downloading", "installed", "active", "failed"].map { "\(stage.counts[$0] ?? 0)" }
                })
            if let gate = r.shadowGate {
                body += "<h2>Shadow evaluation</h2><p class=muted>gate: \(gate.minSamples) samples, \(String(format: "%.1f", gate.minAgreement * 100))% top-1 agreement</p>"
                body += E.table(["stage", "samples", "agreement", "mean confidence delta", "mean latency delta"], r.stages.enumerated().map { index, stage in
                    let s = stage.shadow
                    return ["\(index + 1)", "\(s?.samples ?? 0)", s?.agreement.map { String(format: "%.1f%%", $0 * 100) } ?? "-",
                            s?.meanConfidenceDelta.map { String(format: "%+.3f", $0) } ?? "-", s?.meanLatencyDeltaMs.map { String(format: "%+.2f ms", $0) } ?? "-"]
                })
            }
            if !r.failures.isEmpty {
                body += "<h2>Failures</h2>" + E.table(["device", "reason"], r.failures.map { [E.escape($0.deviceName.isEmpty ? $0.deviceID : $0.deviceName), E.escape($0.reason ?? "")] })
            }
            return body
        }
    }

    func rolloutAction(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let id = try context.parameters.require("id", as: Int64.self)
        let action = try context.parameters.require("action")
        var request = request
        let fields = formFields(try await request.collectBody(upTo: 16 * 1024))
        guard let csrf = try await sessions.csrf(for: request) else { return redirect("/login") }
        guard let sent = fields["csrf"], Secrets.constantTimeEquals(csrf, sent) else {
            return html("<p>Invalid or missing CSRF token.</p>", status: .forbidden)
        }
        do {
            switch action {
            case "pause": _ = try await rollouts.pause(id)
            case "resume": _ = try await rollouts.resume(id)
            case "abort": _ = try await rollouts.abort(id)
            case "rollback": _ = try await rollouts.rollBack(id)
            default: return html("<p>Unknown action.</p>", status: .notFound)
            }
        } catch let error as APIError {
            try await audit("POST /rollouts/\(id)/\(action)", status: Int(error.status.code), context)
            return html(E.page(title: "Rollout \(id)", body: "<p class=bad>\(E.escape(error.message))</p><p><a href=\"/rollouts/\(id)\">back</a></p>",
                               fragment: false, csrf: csrf), status: error.status)
        }
        try await audit("POST /rollouts/\(id)/\(action)", status: 303, context)
        return redirect("/rollouts/\(id)")
    }

    func audit(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        try await signedIn(request, title: "Audit log") { _ in
            let now = service.clock()
            let entries = try await service.store.audit(since: now.addingTimeInterval(-7 * 86_400), limit: 500)
            return "<h1>Audit log</h1><p class=muted>Admin actions and refused admin requests, last 7 days.</p>"
                + E.table(["when", "who", "from", "action", "status"], entries.map {
                    [E.escape(ISO8601DateFormatter().string(from: $0.at)) + " <span class=muted>(\(E.ago($0.at, now: now)))</span>", E.escape($0.actor),
                     E.escape($0.remote), E.escape($0.action), "<span class=\($0.status >= 400 ? "bad" : "ok")>\($0.status)</span>"]
                })
        }
    }

    func charts(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        try await signedIn(request, title: "Metrics") { _ in
            let labelFilter = request.uri.queryParameters["label"].map(String.init) ?? ""
            let hours = request.uri.queryParameters["hours"].flatMap { Double(String($0)) } ?? 6
            let now = service.clock()
            var windows = try await service.store.metricWindows(since: now.addingTimeInterval(-hours * 3600), model: nil)
            if !labelFilter.isEmpty {
                let devices = Set(try await service.store.devices().filter { $0.labels.contains { "\($0.key)=\($0.value)" == labelFilter } }.map(\.id))
                windows = windows.filter { devices.contains($0.deviceID) }
            }
            var body = "<h1>Metrics</h1><form method=get action=\"/charts\"><input name=label placeholder=\"label k=v (all devices)\" value=\"\(E.escape(labelFilter))\"> "
            body += "<select name=hours>" + [1, 6, 24, 168].map { "<option value=\($0)\(Double($0) == hours ? " selected" : "")>last \($0) h</option>" }.joined() + "</select> <button>Show</button></form>"
            let versions = Dictionary(grouping: windows) { "\($0.model) \($0.version)" }
            body += "<p class=muted id=inference-total>\(windows.map(\.inferences).saturatingSum) inferences in \(versions.count) model versions\(labelFilter.isEmpty ? "" : " on devices with \(E.escape(labelFilter))")</p>"
            let bucket = max(60.0, hours * 3600 / 60)
            func bucketStart(_ date: Date) -> Date { Date(timeIntervalSince1970: (date.timeIntervalSince1970 / bucket).rounded(.down) * bucket) }
            var volume: [(name: String, points: [(Date, Double)])] = []
            var latency: [(name: String, points: [(Date, Double)])] = []
            for (name, rows) in versions.sorted(by: { $0.key < $1.key }) {
                let byTime = Dictionary(grouping: rows) { bucketStart($0.windowStart) }
                volume.append((name, byTime.map { ($0.key, Double($0.value.map(\.inferences).saturatingSum)) }))
                for (percentile, tag) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
                    latency.append(("\(name) \(tag)", byTime.compactMap { time, rows in
                        var histogram = [Int](repeating: 0, count: AggregateWindow.latencyBucketsMs.count + 1)
                        for row in rows { histogram.saturatingAdd(row.window.latencyHistogram.prefix(histogram.count).map { max($0, 0) }) }
                        return AggregateWindow.latencyPercentile(histogram, percentile).map { (time, $0) }
                    }))
                }
                var classes: [Int] = []
                for row in rows { classes.saturatingAdd(row.window.classCounts) }
                let model = try await service.store.models().first { "\($0.name) \($0.version)" == name }
                let labels = model.map { service.modelInfo($0).labels } ?? []
                body += "<h2>Predicted classes: \(E.escape(name))</h2>" + E.barChart(classes.enumerated().map { (labels.indices.contains($0.offset) ? labels[$0.offset] : "class \($0.offset)", Double($0.element)) })
            }
            body += "<h2>Inference volume per \(Int(bucket / 60)) min</h2>" + E.lineChart(volume, unit: "inferences")
            body += "<h2>Latency p50 / p95 / p99</h2>" + E.lineChart(latency, unit: "ms")
            return body
        }
    }
}
