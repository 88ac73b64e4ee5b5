import BitModel
import FleetKit
import Foundation
import GRDB
import Hummingbird

/// An API failure: HTTP status plus a stable machine-readable code and a human message,
/// rendered as `{"error": {"code": ..., "message": ...}}`.
struct APIError: HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let message: String
    /// Seconds for a Retry-After header (429 and 503 answers).
    var retryAfter: Int?

    /// HTTPTypes has no name for it: the server cannot store what the request needs.
    static let insufficientStorage = HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        try JSONResponse.make(APIErrorBody(code: code, message: message), status: status,
                              headers: retryAfter.map { [.retryAfter: "\($0)"] } ?? [:])
    }
}

/// Turns every error a route throws into the JSON error format, including Hummingbird's
/// own (unknown route, body too large) and decoding failures, which name the bad field.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Named in "database full" answers, so an operator knows which disk to free.
    var databasePath = "the database"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError {
            let code = error.status == .notFound ? "not_found" : error.status == .contentTooLarge ? "body_too_large" : "http_error"
            return try JSONResponse.make(APIErrorBody(code: code, message: error.body ?? error.status.reasonPhrase), status: error.status)
        } catch let error as AtomicFile.WriteError where error.errno == ENOSPC || error.errno == EDQUOT {
            // A full disk refuses new work clearly; everything already stored keeps being served.
            let directory = URL(fileURLWithPath: error.path).deletingLastPathComponent().path
            return try JSONResponse.make(APIErrorBody(code: "insufficient_storage",
                                                      message: "the controller's disk is full (\(directory)); nothing was stored"),
                                         status: APIError.insufficientStorage)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_FULL {
            // SQLite rolled the transaction back: the change was not made, earlier ones stay.
            context.logger.error("database full: \(error)")
            return try JSONResponse.make(APIErrorBody(code: "insufficient_storage",
                                                      message: "the controller's database \(databasePath) is full (no space left on its disk); nothing was changed"),
                                         status: APIError.insufficientStorage)
        } catch let error as DecodingError {
            return try JSONResponse.make(APIErrorBody(code: "invalid_body", message: "request body: \(describe(error))"), status: .badRequest)
        } catch {
            context.logger.error("internal error: \(error)")
            return try JSONResponse.make(APIErrorBody(code: "internal", message: "internal error"), status: .internalServerError)
        }
    }

    private func describe(_ error: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String { c.codingPath.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .keyNotFound(let key, let c): return "missing field '\((c.codingPath + [key]).map(\.stringValue).joined(separator: "."))'"
        case .typeMismatch(let type, let c): return "field '\(path(c))' should be \(type)"
        case .valueNotFound(let type, let c): return "field '\(path(c))' should be \(type), got null"
        case .dataCorrupted(let c): return "invalid JSON at '\(path(c))': \(c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}

enum JSONResponse {
    static func make<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
        let data = try FleetJSON.encoder.encode(value)
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
