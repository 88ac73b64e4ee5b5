import FleetKit
import Foundation
import Testing

/// Every admin route refuses a missing, wrong or device token; device routes refuse admin
/// and revoked credentials; admin actions and refusals land in the audit log.
@Suite("Authorization and audit")
struct AuthorizationTests {
    @Test("admin and device routes check their tokens, and admin actions are audited")
    func tokens() async throws {
        let fleet = try TestFleet()
        defer { fleet.shutdown() }
        fleet.controllerFlags = ["--auth-failure-limit", "1000"]
        try fleet.startController()
        try fleet.startAgent("x", token: try await fleet.enrollmentToken())
        let (deviceID, credential) = try fleet.agentIdentity("x")

        // The matrix is every controller route: docs/API.md's table, which
        // APIDocumentationTests keeps equal to the route table (method, path, access), so a
        // new route is in it by construction.
        let routes = try Self.documentedRoutes()
        for required in ["GET /api/v1/privacy", "PUT /api/v1/privacy", "GET /api/v1/devices/:id/uploads", "POST /api/v1/login-links",
                         "POST /api/v1/rollouts/:id/:action", "POST /api/v1/reports", "GET /api/v1/blobs/:sha256", "GET /metrics"] {
            #expect(routes.contains { "\($0.method) \($0.path)" == required }, "\(required) is in the matrix")
        }
        let requests = routes.flatMap { route in Self.concrete(route.path, deviceID: deviceID).map { (route.method, $0, route.access) } }
        let body = { (method: String) in ["POST", "PUT"].contains(method) ? Data("{}".utf8) : nil }
        var checked: [String: Int] = [:]
        for (method, path, access) in requests where access == "admin" {
            for token in [nil, "adm_wrong", credential, fleet.adminToken + "x"] {
                let (data, response) = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: token)
                    .send(method, path, body: body(method), acceptStatuses: [401])
                #expect(response.statusCode == 401, "\(method) \(path) with \(token == nil ? "no token" : "a bad token")")
                #expect(try FleetJSON.decoder.decode(APIErrorBody.self, from: data).error.code == "unauthorized", "\(method) \(path)")
            }
            checked[access, default: 0] += 1
            // The refusal is about the token: the admin token gets past it (reads only, so
            // the matrix changes nothing).
            if method == "GET" {
                let (_, response) = try await fleet.admin.send(method, path, acceptStatuses: Set(200..<600))
                #expect(response.statusCode != 401, "\(method) \(path) with the admin token")
            }
        }
        // Device routes refuse no token, the admin token and garbage, and take the device's.
        for (method, path, access) in requests where access == "device" {
            for token in [nil, fleet.adminToken!, "\(deviceID).wrong", "nonsense"] {
                let (_, response) = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: token)
                    .send(method, path, body: method == "POST" ? Data("{}".utf8) : nil, acceptStatuses: [401])
                #expect(response.statusCode == 401, "\(method) \(path) with \(token == nil ? "no token" : "a bad token")")
            }
            let (_, own) = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: credential)
                .send(method, path, body: method == "POST" ? Data("{}".utf8) : nil, acceptStatuses: Set(200..<600))
            #expect(own.statusCode != 401, "\(method) \(path) with the device's credential")
            checked[access, default: 0] += 1
        }
        for (method, path, access) in requests where access == "enrollment" {
            let wrong = EnrollRequest(token: "enr_wrong", name: "z", labels: [:], pushURL: "", agentVersion: "t")
            let (_, response) = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: nil)
                .send(method, path, body: try FleetJSON.encoder.encode(wrong), acceptStatuses: [401])
            #expect(response.statusCode == 401, "\(method) \(path) with an unknown enrollment token")
            checked[access, default: 0] += 1
        }
        for (method, path, access) in requests where access == "anonymous" {
            let (_, response) = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: nil).send(method, path)
            #expect(response.statusCode == 200, "\(method) \(path) needs no token")
            checked[access, default: 0] += 1
        }
        #expect(checked.values.reduce(0, +) == requests.count, "every route has a known access: \(checked)")
        // A revoked device is refused at once, on every device route.
        _ = try await fleet.admin.send("POST", "/api/v1/devices/\(deviceID)/revoke")
        for (method, path, access) in requests where access == "device" {
            let (_, revoked) = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: credential)
                .send(method, path, body: method == "POST" ? Data("{}".utf8) : nil, acceptStatuses: [401])
            #expect(revoked.statusCode == 401, "\(method) \(path) with a revoked credential")
        }
        // Enrollment tokens are single-use.
        let token = try await fleet.enrollmentToken()
        let enroll = EnrollRequest(token: token, name: "y", labels: [:], pushURL: "", agentVersion: "t")
        _ = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: nil).json("POST", "/api/v1/enroll", body: enroll, as: EnrollResponse.self)
        let (_, reused) = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: nil)
            .send("POST", "/api/v1/enroll", body: try FleetJSON.encoder.encode(enroll), acceptStatuses: [401])
        #expect(reused.statusCode == 401)

        let audit = try await fleet.admin.json("GET", "/api/v1/audit?since=3600", as: [AuditEntry].self)
        #expect(audit.contains { $0.actor == "admin" && $0.action == "POST /api/v1/devices/\(deviceID)/revoke" && $0.status == 200 })
        #expect(audit.contains { $0.actor == "admin" && $0.action == "POST /api/v1/enrollment-tokens" && $0.status == 201 })
        #expect(audit.contains { $0.actor == "unauthenticated" && $0.status == 401 && $0.remote == "127.0.0.1" })
        let printed = try fleet.fleetctl(["audit", "--since", "1h"])
        #expect(printed.contains("POST /api/v1/devices/\(deviceID)/revoke"))
        // Guessing is throttled: with a limit of 5 failures a minute, the address is then
        // refused even with the right token.
        let throttled = try TestFleet()
        defer { throttled.shutdown() }
        throttled.controllerFlags = ["--auth-failure-limit", "5"]
        try throttled.startController()
        var statuses: [Int] = []
        for guess in 0..<8 {
            let (_, response) = try await FleetHTTPClient(baseURL: throttled.controllerURL, token: "adm_guess\(guess)")
                .send("GET", "/api/v1/status", acceptStatuses: [401, 429])
            statuses.append(response.statusCode)
        }
        #expect(statuses == [401, 401, 401, 401, 401, 429, 429, 429])
        let (_, locked) = try await throttled.admin.send("GET", "/api/v1/status", acceptStatuses: [429])
        #expect(locked.statusCode == 429, "no oracle while locked out")

        // No secret appears in the controller's log.
        let log = fleet.controller!.output
        #expect(!log.contains(credential) && !log.contains(token))
    }

    /// The controller's routes as docs/API.md lists them (the agent's own table, with its
    /// "anyone" access, is left out).
    static func documentedRoutes() throws -> [(method: String, path: String, access: String)] {
        let text = try String(contentsOf: repositoryRoot.appendingPathComponent("docs/API.md"), encoding: .utf8)
        let regex = try NSRegularExpression(pattern: #"^\| `([A-Z]+)` \| `(/api/v1[^`]*|/metrics)` \| (admin|device|enrollment|anonymous) \|"#,
                                            options: .anchorsMatchLines)
        return regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { match in
            let group = { (index: Int) in String(text[Range(match.range(at: index), in: text)!]) }
            return (group(1), group(2), group(3))
        }
    }

    /// Requests for a route pattern: ids filled in, and one request per rollout action.
    static func concrete(_ pattern: String, deviceID: String) -> [String] {
        let path = pattern.replacingOccurrences(of: "/devices/:id", with: "/devices/\(deviceID)")
            .replacingOccurrences(of: ":sha256", with: String(repeating: "0", count: 64))
            .replacingOccurrences(of: ":id", with: "1")
        guard path.contains(":action") else { return [path] }
        return ["pause", "resume", "abort", "rollback"].map { path.replacingOccurrences(of: ":action", with: $0) }
    }
}
