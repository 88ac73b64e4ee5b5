import FleetKit
import Foundation
import Hummingbird
import NIOCore

/// Records every admin request that changes something (and every refused admin request):
/// who, what, when, from where, and how it ended. Reads are not recorded; secrets never
/// are (they travel in headers and bodies, which the log does not keep).
struct AuditMiddleware: RouterMiddleware {
    let store: any FleetStore
    let clock: @Sendable () -> Date

    func handle(_ request: Request, context: FleetRequestContext,
                next: (Request, FleetRequestContext) async throws -> Response) async throws -> Response {
        let mutating = request.method != .get && request.method != .head
        do {
            let response = try await next(request, context)
            if mutating { await record(request, context, status: Int(response.status.code)) }
            return response
        } catch let error as APIError {
            if mutating || error.status == .unauthorized || error.status == .tooManyRequests { await record(request, context, status: Int(error.status.code)) }
            throw error
        } catch {
            if mutating { await record(request, context, status: 500) }
            throw error
        }
    }

    private func record(_ request: Request, _ context: FleetRequestContext, status: Int) async {
        let remote = context.remoteHost
        let actor = status == 401 || status == 429 ? "unauthenticated" : "admin"
        let entry = AuditEntry(at: clock(), actor: actor, action: "\(request.method.rawValue) \(request.uri.path)", status: status, remote: remote)
        do {
            try await store.insertAudit(entry)
        } catch {
            context.logger.error("cannot write the audit log: \(error)")
        }
    }
}
