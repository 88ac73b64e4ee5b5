import Foundation
import Hummingbird

/// Enrollment is the one write anyone can attempt: failed attempts (unknown, expired or
/// used tokens) count per address like failed authentications, and a locked address is
/// refused before the database is touched.
struct EnrollmentThrottle: RouterMiddleware {
    let throttle: AuthThrottle
    let clock: @Sendable () -> Date

    func handle(_ request: Request, context: FleetRequestContext,
                next: (Request, FleetRequestContext) async throws -> Response) async throws -> Response {
        let address = "enroll \(context.remoteHost)"
        if await throttle.isLocked(address, now: clock()) {
            throw APIError(.tooManyRequests, "too_many_failures", "too many failed enrollments from this address; retry in a minute")
        }
        do {
            return try await next(request, context)
        } catch let error as APIError where error.status == .unauthorized || error.status == .badRequest {
            await throttle.recordFailure(address, now: clock())
            throw error
        }
    }
}
