import FleetKit
import Foundation
import Hummingbird

/// Dashboard sign-in: the admin token (or a one-time login link made with the token) is
/// exchanged for a session cookie (HttpOnly, SameSite=Strict, 12 h). Every form carries the
/// session's CSRF token, checked on POST; the cookie itself never authorizes an action.
struct DashboardSessions: Sendable {
    static let cookieName = "bitfleet_session"
    static let lifetime: TimeInterval = 12 * 3600
    let store: any FleetStore
    let clock: @Sendable () -> Date

    /// Creates a session; returns the Set-Cookie value.
    func create() async throws -> String {
        let token = Secrets.randomToken()
        try await store.insertSession(tokenHash: Secrets.hash(token), csrf: Secrets.randomToken(), expiresAt: clock().addingTimeInterval(Self.lifetime))
        return "\(Self.cookieName)=\(token); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(Int(Self.lifetime))"
    }

    /// The session token from the Cookie header.
    static func token(in request: Request) -> String? {
        guard let header = request.headers[.cookie] else { return nil }
        for part in header.split(separator: ";") {
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1).map(String.init)
            if pair.count == 2 && pair[0] == cookieName { return pair[1] }
        }
        return nil
    }

    /// The CSRF token of the request's live session, or nil when not signed in.
    func csrf(for request: Request) async throws -> String? {
        guard let token = Self.token(in: request) else { return nil }
        return try await store.session(tokenHash: Secrets.hash(token), now: clock())
    }

    func end(_ request: Request) async throws {
        if let token = Self.token(in: request) { try await store.deleteSession(tokenHash: Secrets.hash(token)) }
    }

    func createLoginLink() async throws -> String {
        let code = Secrets.randomToken()
        try await store.insertLoginLink(codeHash: Secrets.hash(code), expiresAt: clock().addingTimeInterval(120))
        return code
    }

    func consumeLoginLink(_ code: String) async throws -> Bool {
        try await store.consumeLoginLink(codeHash: Secrets.hash(code), now: clock())
    }
}

/// Parses an application/x-www-form-urlencoded body.
func formFields(_ buffer: ByteBuffer) -> [String: String] {
    var fields: [String: String] = [:]
    for pair in String(buffer: buffer).split(separator: "&") {
        let parts = pair.split(separator: "=", maxSplits: 1).map {
            String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
        }
        if parts.count == 2 { fields[parts[0]] = parts[1] } else if parts.count == 1 { fields[parts[0]] = "" }
    }
    return fields
}
