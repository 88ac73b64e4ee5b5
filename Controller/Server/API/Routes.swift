import FleetKit
import Foundation
import Hummingbird

/// Who may call a route.
enum Access: String, Sendable {
    case admin, device, enrollment, anonymous
}

/// One route of the controller API. The table below is the single source of truth: it
/// registers the handlers, and a test checks docs/API.md lists exactly these routes.
struct RouteSpec: Sendable {
    let method: HTTPRequest.Method
    let path: String
    let access: Access
    let summary: String
    let handler: @Sendable (Request, FleetRequestContext) async throws -> Response
}

struct ControllerRoutes: Sendable {
    /// What a device refused a download slot is told to wait (it adds jitter).
    static let busyRetrySeconds = 1

    let service: FleetService
    let pushes: PushService
    var rollouts: RolloutService { RolloutService(service: service, logger: pushes.logger) }
    var sessions: DashboardSessions { DashboardSessions(store: service.store, clock: service.clock) }

    var specs: [RouteSpec] {
        [
            RouteSpec(method: .get, path: "/api/v1/health", access: .anonymous, summary: "liveness and fleet id", handler: health),
            RouteSpec(method: .get, path: "/metrics", access: .admin, summary: "Prometheus metrics", handler: prometheus),
            RouteSpec(method: .post, path: "/api/v1/models", access: .admin, summary: "upload a .bnn or ONNX model (query: name, version)", handler: uploadModel),
            RouteSpec(method: .get, path: "/api/v1/models", access: .admin, summary: "list model versions", handler: listModels),
            RouteSpec(method: .post, path: "/api/v1/enrollment-tokens", access: .admin, summary: "create a one-time enrollment token", handler: createToken),
            RouteSpec(method: .get, path: "/api/v1/devices", access: .admin, summary: "list devices (query: label=k=v, status)", handler: listDevices),
            RouteSpec(method: .get, path: "/api/v1/devices/:id", access: .admin, summary: "one device", handler: showDevice),
            RouteSpec(method: .get, path: "/api/v1/devices/:id/events", access: .admin, summary: "a device's events (refused manifests...)", handler: deviceEvents),
            RouteSpec(method: .post, path: "/api/v1/devices/:id/revoke", access: .admin, summary: "revoke a device's credential", handler: revokeDevice),
            RouteSpec(method: .post, path: "/api/v1/deployments", access: .admin, summary: "deploy a model version to a target", handler: deploy),
            RouteSpec(method: .get, path: "/api/v1/deployments", access: .admin, summary: "list deployments with per-state counts", handler: listDeployments),
            RouteSpec(method: .get, path: "/api/v1/deployments/:id", access: .admin, summary: "one deployment with per-device states", handler: showDeployment),
            RouteSpec(method: .post, path: "/api/v1/rollouts", access: .admin, summary: "start a staged rollout", handler: startRollout),
            RouteSpec(method: .get, path: "/api/v1/rollouts", access: .admin, summary: "list rollouts", handler: listRollouts),
            RouteSpec(method: .get, path: "/api/v1/rollouts/:id", access: .admin, summary: "one rollout with per-stage counters", handler: showRollout),
            RouteSpec(method: .post, path: "/api/v1/rollouts/:id/:action", access: .admin, summary: "pause, resume, abort or rollback", handler: rolloutAction),
            RouteSpec(method: .get, path: "/api/v1/privacy", access: .admin, summary: "the fleet's privacy settings", handler: getPrivacy),
            RouteSpec(method: .put, path: "/api/v1/privacy", access: .admin, summary: "set the fleet's privacy settings", handler: putPrivacy),
            RouteSpec(method: .get, path: "/api/v1/devices/:id/uploads", access: .admin, summary: "a device's privacy ledger", handler: deviceUploads),
            RouteSpec(method: .post, path: "/api/v1/login-links", access: .admin, summary: "a one-time dashboard sign-in link", handler: loginLink),
            RouteSpec(method: .get, path: "/api/v1/audit", access: .admin, summary: "the audit log (query: since seconds)", handler: audit),
            RouteSpec(method: .get, path: "/api/v1/status", access: .admin, summary: "fleet summary", handler: status),
            RouteSpec(method: .get, path: "/api/v1/metrics", access: .admin, summary: "aggregate inference metrics (query: since seconds, model)", handler: metrics),
            RouteSpec(method: .post, path: "/api/v1/enroll", access: .enrollment, summary: "enroll a device with an enrollment token", handler: enroll),
            RouteSpec(method: .post, path: "/api/v1/heartbeat", access: .device, summary: "device state, reports and aggregates; replies with the desired manifest", handler: heartbeat),
            RouteSpec(method: .post, path: "/api/v1/reports", access: .device, summary: "deployment state changes", handler: reports),
            RouteSpec(method: .get, path: "/api/v1/manifest", access: .device, summary: "the device's desired signed manifest", handler: manifest),
            RouteSpec(method: .get, path: "/api/v1/blobs/:sha256", access: .device, summary: "model blob, with HTTP Range support", handler: blob),
        ]
    }

    // MARK: Public and admin

    func health(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        try JSONResponse.make(["status": "ok", "fleetID": service.fleetID])
    }

    func prometheus(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let text = try await service.metrics.exposition(service: service, rollouts: rollouts)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func uploadModel(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        var request = request
        // Refuse before reading the body when its declared size does not fit (a chunked
        // body is checked once its size is known). A disk that fills up during the transfer
        // fails the blob write instead, which answers 507 as well.
        let reserve = StorageReserve(directory: service.configuration.dataDirectory, reserveBytes: service.configuration.minFreeBytes)
        let declared = request.headers[.contentLength].flatMap { Int($0) }
        if let declared { try reserve.ensureRoom(for: declared, what: "the uploaded model") }
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: service.configuration.maxModelBytes)
        } catch {
            throw APIError(.contentTooLarge, "body_too_large", "models are limited to \(service.configuration.maxModelBytes) bytes")
        }
        guard body.readableBytes > 0 else { throw APIError(.badRequest, "empty_body", "send the model file as the request body") }
        if declared == nil { try reserve.ensureRoom(for: body.readableBytes, what: "the uploaded model") }
        let query = request.uri.queryParameters
        let record = try await service.uploadModel(Data(buffer: body), name: query["name"].map(String.init),
                                                   version: query["version"].map(String.init), createdBy: context.caller?.auditName ?? "?")
        return try JSONResponse.make(service.modelInfo(record), status: .created)
    }

    func listModels(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        try JSONResponse.make(try await service.store.models().map(service.modelInfo))
    }

    func createToken(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let body = try await request.decode(as: EnrollmentTokenRequest.self, context: context)
        return try JSONResponse.make(try await service.createEnrollmentToken(body), status: .created)
    }

    func listDevices(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        var devices: [DeviceInfo] = []
        for device in try await service.store.devices() { devices.append(try await service.deviceInfo(device)) }
        let query = request.uri.queryParameters
        for label in query.getAll("label") {
            let parts = label.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw APIError(.badRequest, "invalid_label", "label filters look like key=value") }
            devices = devices.filter { $0.labels[parts[0]] == parts[1] }
        }
        if let status = query["status"] { devices = devices.filter { $0.status == status } }
        return try JSONResponse.make(devices)
    }

    func showDevice(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        guard let device = try await service.store.device(id: id) else { throw APIError(.notFound, "unknown_device", "no device '\(id)'") }
        return try JSONResponse.make(try await service.deviceInfo(device))
    }

    func deviceEvents(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        guard try await service.store.device(id: id) != nil else { throw APIError(.notFound, "unknown_device", "no device '\(id)'") }
        let events = try await service.store.events(deviceID: id, limit: 200)
        return try JSONResponse.make(events.map { DeviceEvent(at: $0.at, kind: $0.kind, message: $0.message) })
    }

    func revokeDevice(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        guard try await service.revokeDevice(id: id), let device = try await service.store.device(id: id) else {
            throw APIError(.notFound, "unknown_device", "no device '\(id)'")
        }
        return try JSONResponse.make(try await service.deviceInfo(device))
    }

    func deploy(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let body = try await request.decode(as: DeploymentRequest.self, context: context)
        let info = try await service.deploy(body, createdBy: context.caller?.auditName ?? "?")
        return try JSONResponse.make(info, status: .created)
    }

    func listDeployments(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        var infos: [DeploymentInfo] = []
        for deployment in try await service.store.deployments().prefix(200) {
            infos.append(try await service.deploymentInfo(deployment, includeDevices: false))
        }
        return try JSONResponse.make(infos)
    }

    func showDeployment(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let id = try context.parameters.require("id", as: Int64.self)
        guard let deployment = try await service.store.deployment(id: id) else {
            throw APIError(.notFound, "unknown_deployment", "no deployment \(id)")
        }
        return try JSONResponse.make(try await service.deploymentInfo(deployment, includeDevices: true))
    }

    func startRollout(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let body = try await request.decode(as: RolloutRequest.self, context: context)
        let info = try await rollouts.start(body, createdBy: context.caller?.auditName ?? "?")
        return try JSONResponse.make(info, status: .created)
    }

    func listRollouts(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        var infos: [RolloutInfo] = []
        for rollout in try await service.store.rollouts().prefix(100) { infos.append(try await rollouts.info(rollout)) }
        return try JSONResponse.make(infos)
    }

    func showRollout(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let id = try context.parameters.require("id", as: Int64.self)
        guard let rollout = try await service.store.rollout(id: id) else { throw APIError(.notFound, "unknown_rollout", "no rollout \(id)") }
        return try JSONResponse.make(try await rollouts.info(rollout))
    }

    func rolloutAction(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let id = try context.parameters.require("id", as: Int64.self)
        switch try context.parameters.require("action") {
        case "pause": return try JSONResponse.make(try await rollouts.pause(id))
        case "resume": return try JSONResponse.make(try await rollouts.resume(id))
        case "abort": return try JSONResponse.make(try await rollouts.abort(id))
        case "rollback": return try JSONResponse.make(try await rollouts.rollBack(id))
        case let other: throw APIError(.notFound, "unknown_action", "'\(other)' is not pause, resume, abort or rollback")
        }
    }

    func getPrivacy(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        try JSONResponse.make(try await service.privacySettings())
    }

    func putPrivacy(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let body = try await request.decode(as: PrivacySettings.self, context: context)
        try await service.setPrivacySettings(body)
        return try JSONResponse.make(body)
    }

    func deviceUploads(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        guard try await service.store.device(id: id) != nil else { throw APIError(.notFound, "unknown_device", "no device '\(id)'") }
        return try JSONResponse.make(try await service.store.uploads(deviceID: id, limit: 500))
    }

    func loginLink(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let code = try await sessions.createLoginLink()
        return try JSONResponse.make(["path": "/login/link/\(code)", "expiresInSeconds": "120"], status: .created)
    }

    func audit(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let seconds = request.uri.queryParameters["since"].flatMap { Double(String($0)) } ?? 86_400
        return try JSONResponse.make(try await service.store.audit(since: service.clock().addingTimeInterval(-seconds), limit: 1000))
    }

    func status(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        try JSONResponse.make(try await service.fleetStatus())
    }

    func metrics(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let seconds = query["since"].flatMap { Double(String($0)) } ?? 3600
        guard seconds > 0 else { throw APIError(.badRequest, "invalid_since", "since must be a positive number of seconds") }
        return try JSONResponse.make(try await service.metrics(since: service.clock().addingTimeInterval(-seconds),
                                                               model: query["model"].map(String.init)))
    }

    // MARK: Devices

    func enroll(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let body = try await request.decode(as: EnrollRequest.self, context: context)
        return try JSONResponse.make(try await service.enroll(body), status: .created)
    }

    func heartbeat(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        guard let device = context.device else { throw APIError(.unauthorized, "unauthorized", "device credential required") }
        var request = request
        let raw = try await request.collectBody(upTo: context.maxUploadSize)
        let body = try FleetJSON.decoder.decode(HeartbeatRequest.self, from: Data(buffer: raw))
        let response = try await service.heartbeat(device: device, body, bytes: raw.readableBytes)
        return try JSONResponse.make(response)
    }

    func reports(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        guard let device = context.device else { throw APIError(.unauthorized, "unauthorized", "device credential required") }
        let body = try await request.decode(as: [DeploymentReport].self, context: context)
        guard body.count <= 1000 else { throw APIError(.contentTooLarge, "too_many_items", "at most 1000 reports") }
        try service.admitIngest(device: device, items: 1 + body.count)
        for report in body { try await service.store.applyReport(deviceID: device.id, report: report, now: service.clock()) }
        return try JSONResponse.make(["accepted": body.count])
    }

    func manifest(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        guard let device = context.device else { throw APIError(.unauthorized, "unauthorized", "device credential required") }
        guard let manifest = try await service.desiredManifest(deviceID: device.id) else {
            throw APIError(.notFound, "no_deployment", "nothing is deployed to this device")
        }
        return try JSONResponse.make(manifest)
    }

    func blob(_ request: Request, _ context: FleetRequestContext) async throws -> Response {
        let sha = try context.parameters.require("sha256")
        guard let url = service.blobs.url(for: sha), let size = service.blobs.size(of: sha) else {
            throw APIError(.notFound, "unknown_blob", "no blob \(sha.prefix(64))")
        }
        var range = 0..<size
        var status = HTTPResponse.Status.ok
        if let header = request.headers[.range] {
            guard let parsed = ByteRange.parse(header, size: size) else {
                return Response(status: .rangeNotSatisfiable, headers: [.contentRange: "bytes */\(size)"])
            }
            range = parsed
            status = .partialContent
        }
        // Admitted before anything is read: beyond the bound the device is told to come back
        // (its downloader honours Retry-After and resumes at the same offset) and its
        // connection is closed, so a thousand devices starting at once hold neither a
        // thousand suspended requests nor a thousand connections in the controller's memory.
        guard let ticket = service.transfers.admit() else {
            service.metrics.blobRequestsShed.increment()
            return try JSONResponse.make(APIErrorBody(code: "busy", message: "too many downloads in progress; retry in \(Self.busyRetrySeconds) s"),
                                         status: .serviceUnavailable,
                                         headers: [.retryAfter: "\(Self.busyRetrySeconds)", .connection: "close"])
        }
        // Streamed in 64 KiB chunks with backpressure, a bounded number at a time: a
        // thousand devices downloading at once cost the controller a few chunks, not a
        // blob each.
        let file = try await FileIO().loadFile(path: url.path, range: range.lowerBound...(range.upperBound - 1), context: context,
                                               chunkLength: 64 * 1024)
        let body = ResponseBody(contentLength: range.count) { writer in
            // The ticket (captured here) is released when this body is gone, written or not.
            await ticket.start()
            try await file.write(writer)
        }
        var headers: HTTPFields = [.contentType: "application/octet-stream", .acceptRanges: "bytes"]
        if status == .partialContent { headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(size)" }
        return Response(status: status, headers: headers, body: body)
    }
}

/// A single `bytes=` range of an HTTP Range header (RFC 9110), clamped to the size.
enum ByteRange {
    static func parse(_ header: String, size: Int) -> Range<Int>? {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst(6).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard spec.count == 2 else { return nil }
        if spec[0].isEmpty {
            guard let suffix = Int(spec[1]), suffix > 0 else { return nil }
            return max(0, size - suffix)..<size
        }
        guard let start = Int(spec[0]), start >= 0, start < size else { return nil }
        let end = spec[1].isEmpty ? size - 1 : min(Int(spec[1]) ?? -1, size - 1)
        guard end >= start else { return nil }
        return start..<(end + 1)
    }
}
