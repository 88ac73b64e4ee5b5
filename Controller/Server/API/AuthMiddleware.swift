import FleetKit
import Foundation
import Hummingbird

/// Bearer-token authentication. Admin routes need the admin token (compared by hash in
/// constant time); device routes need a `deviceID.secret` credential of a device that is
/// not revoked. Secrets never appear in logs or error messages.
struct AuthMiddleware: RouterMiddleware {
    enum Required { case admin, device }

    let required: Required
    let service: FleetService
    let throttle: AuthThrottle
    let adminTokenHash: @Sendable () async throws -> String?

    func handle(_ request: Request, context: FleetRequestContext,
                next: (Request, FleetRequestContext) async throws -> Response) async throws -> Response {
        // Admin and device failures count separately: revoked devices behind one NAT must
        // not lock the operator out, nor the other way round.
        let address = "\(required == .admin ? "admin" : "device") \(context.remoteHost)"
        let now = service.clock()
        if await throttle.isLocked(address, now: now) {
            throw APIError(.tooManyRequests, "too_many_failures", "too many failed authentications from this address; retry in a minute")
        }
        do {
            guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
                throw APIError(.unauthorized, "unauthorized", "missing bearer token")
            }
            let token = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
            var context = context
            switch required {
            case .admin:
                guard let expected = try await adminTokenHash(), Secrets.constantTimeEquals(expected, Secrets.hash(token)) else {
                    throw APIError(.unauthorized, "unauthorized", "invalid admin token")
                }
                context.caller = .admin
            case .device:
                guard let device = try await service.authenticateDevice(credential: token) else {
                    throw APIError(.unauthorized, "unauthorized", "invalid or revoked device credential")
                }
                context.caller = .device(device)
            }
            return try await next(request, context)
        } catch let error as APIError where error.status == .unauthorized {
            await throttle.recordFailure(address, now: now)
            throw error
        }
    }
}
