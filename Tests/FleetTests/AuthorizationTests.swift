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

        // The admin routes, from the route table in docs/API.md.
        let adminRoutes: [(String, String)] = [
            ("GET", "/api/v1/models"), ("POST", "/api/v1/models"), ("POST", "/api/v1/enrollment-tokens"), ("GET", "/api/v1/devices"),
            ("GET", "/api/v1/devices/\(deviceID)"), ("GET", "/api/v1/devices/\(deviceID)/events"), ("POST", "/api/v1/devices/\(deviceID)/revoke"),
            ("POST", "/api/v1/deployments"), ("GET", "/api/v1/deployments"), ("GET", "/api/v1/deployments/1"), ("POST", "/api/v1/rollouts"),
            ("GET", "/api/v1/rollouts"), ("GET", "/api/v1/rollouts/1"), ("POST", "/api/v1/rollouts/1/pause"), ("GET", "/api/v1/audit"),
            ("GET", "/api/v1/status"), ("GET", "/api/v1/metrics"),
        ]
        for token in [nil, "adm_wrong", credential, fleet.adminToken + "x"] {
            let client = FleetHTTPClient(baseURL: fleet.controllerURL, token: token)
            for (method, path) in adminRoutes {
                let (data, response) = try await client.send(method, path, body: method == "POST" ? Data("{}".utf8) : nil, acceptStatuses: [401])
                #expect(response.statusCode == 401, "\(method) \(path) with \(token == nil ? "no token" : "a bad token")")
                #expect(try FleetJSON.decoder.decode(APIErrorBody.self, from: data).error.code == "unauthorized")
            }
        }
        // Device routes refuse the admin token and garbage.
        for token in [fleet.adminToken!, "\(deviceID).wrong", "nonsense"] {
            let (_, response) = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: token)
                .send("GET", "/api/v1/manifest", acceptStatuses: [401])
            #expect(response.statusCode == 401)
        }
        // A revoked device is refused at once.
        _ = try await fleet.admin.send("POST", "/api/v1/devices/\(deviceID)/revoke")
        let (_, revoked) = try await FleetHTTPClient(baseURL: fleet.controllerURL, token: credential)
            .send("POST", "/api/v1/heartbeat", body: Data("{}".utf8), acceptStatuses: [401])
        #expect(revoked.statusCode == 401)
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
}
