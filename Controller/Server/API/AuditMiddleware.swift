import FleetKit
import Foundation
import Hummingbird
import NIOCore

/// Records every admin request that changes something (and refused admin requests, up
/// to AuditRefusalLimiter's rate per address): who, what, when, from where, and how it
/// ended. Reads are not recorded; secrets never are (they travel in headers and bodies,
/// which the log does not keep).
struct AuditMiddleware: RouterMiddleware {
    let store: any FleetStore
    let clock: @Sendable () -> Date
    let refusals: AuditRefusalLimiter

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
        await Self.record(store: store, refusals: refusals, at: clock(), actor: status == 401 || status == 429 ? "unauthenticated" : "admin",
                          action: "\(request.method.rawValue) \(request.uri.path)", status: status, context)
    }

    /// Writes one entry; refusals (401, 403, 429) only within the address's budget, with a
    /// note of those left out before.
    static func record(store: any FleetStore, refusals: AuditRefusalLimiter, at: Date, actor: String, action: String, status: Int,
                       _ context: FleetRequestContext) async {
        let remote = context.remoteHost
        var action = action
        if [401, 403, 429].contains(status) {
            let (write, suppressed) = await refusals.admit(remote, now: at)
            guard write else { return }
            if suppressed > 0 { action += " (and \(suppressed) more refused requests from this address in the minute before, not recorded)" }
        }
        do {
            try await store.insertAudit(AuditEntry(at: at, actor: actor, action: action, status: status, remote: remote))
        } catch {
            context.logger.error("cannot write the audit log: \(error)")
        }
    }
}
