import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// An HTTP failure with what the server said: the status, and the `code`/`message` of a
/// BitFleet JSON error body when there is one.
public struct FleetClientError: Error, CustomStringConvertible, Sendable {
    public var status: Int?
    public var code: String
    public var message: String
    /// Seconds the server asked the client to wait (`Retry-After: N` on 503 or 429).
    public var retryAfter: Int?

    public init(status: Int?, code: String, message: String, retryAfter: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    /// The server is alive but asked to be tried again later: not a failure of the request.
    public var isBusy: Bool { status == 503 || status == 429 }

    /// How long to wait before asking a busy server again: its Retry-After (1–60 s; 1 s if
    /// absent) stretched by a random 0–100 %, so refused clients do not all return together.
    public static func busyDelay(retryAfter: Int?) -> TimeInterval {
        Double(min(60, max(1, retryAfter ?? 1))) * Double.random(in: 1...2)
    }

    public var description: String {
        if let status { return "HTTP \(status) \(code): \(message)" }
        return "\(code): \(message)"
    }
}

/// Carries one request for `FleetHTTPClient`. Throws for transport failures; any HTTP
/// status is a response.
public protocol HTTPTransport: Sendable {
    func send(_ request: URLRequest, timeout: TimeInterval) async throws -> (Data, HTTPURLResponse)
}

/// The default transport: URLSession (libcurl on Linux) with the system's trust store.
public final class URLSessionTransport: HTTPTransport, @unchecked Sendable {
    private let session: URLSession

    public init(timeout: TimeInterval, delegate: URLSessionDelegate? = nil) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = max(timeout * 10, 300)
        configuration.httpMaximumConnectionsPerHost = 4
        session = URLSession(configuration: configuration, delegate: delegate, delegateQueue: nil)
    }

    deinit { session.finishTasksAndInvalidate() }

    public func send(_ request: URLRequest, timeout: TimeInterval) async throws -> (Data, HTTPURLResponse) {
        let (data, response) = try await session.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw URLError(.badServerResponse) }
        return (data, http)
    }
}

/// JSON over HTTP with a bearer token and timeouts on every call. Used by the agent
/// against the controller and by fleetctl; the transport is URLSession unless one is given
/// (HTTPS that trusts only a private CA: `PinnedCATransport`).
public final class FleetHTTPClient: @unchecked Sendable {
    public let baseURL: URL
    public let token: String?
    public let timeout: TimeInterval
    private let transport: any HTTPTransport

    public init(baseURL: URL, token: String?, timeout: TimeInterval = 30, delegate: URLSessionDelegate? = nil,
                transport: (any HTTPTransport)? = nil) {
        self.baseURL = baseURL
        self.token = token
        self.timeout = timeout
        self.transport = transport ?? URLSessionTransport(timeout: timeout, delegate: delegate)
    }

    public func url(_ path: String) -> URL {
        if let absolute = URL(string: path), absolute.scheme != nil { return absolute }
        let trimmed = path.hasPrefix("/") ? String(path.dropFirst()) : path
        return URL(string: trimmed, relativeTo: baseURL.absoluteString.hasSuffix("/") ? baseURL : baseURL.appendingPathComponent(""))!.absoluteURL
    }

    /// Raw request; throws FleetClientError for transport failures and non-2xx statuses.
    public func send(_ method: String, _ path: String, body: Data? = nil, contentType: String = "application/json",
                     headers: [String: String] = [:], acceptStatuses: Set<Int> = []) async throws -> (Data, HTTPURLResponse) {
        var request = URLRequest(url: url(path))
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = body
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let data: Data
        let http: HTTPURLResponse
        do {
            (data, http) = try await transport.send(request, timeout: timeout)
        } catch {
            throw FleetClientError(status: nil, code: "unreachable", message: "\(method) \(request.url?.absoluteString ?? path): \(describe(error))")
        }
        guard (200..<300).contains(http.statusCode) || acceptStatuses.contains(http.statusCode) else {
            let retryAfter = http.value(forHTTPHeaderField: "Retry-After").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            if let body = try? JSONDecoder().decode(APIErrorBody.self, from: data) {
                throw FleetClientError(status: http.statusCode, code: body.error.code, message: body.error.message, retryAfter: retryAfter)
            }
            let text = String(decoding: data.prefix(300), as: UTF8.self)
            throw FleetClientError(status: http.statusCode, code: "http_\(http.statusCode)",
                                   message: text.isEmpty ? HTTPURLResponse.localizedString(forStatusCode: http.statusCode) : text,
                                   retryAfter: retryAfter)
        }
        return (data, http)
    }

    /// Transport failures in words: on Linux, URLError's own text is often just a code.
    private func describe(_ error: Error) -> String {
        guard let error = error as? URLError else { return String(describing: error) }
        switch error.code {
        case .timedOut: return "timed out (no answer within \(Int(timeout)) s)"
        case .cannotConnectToHost: return "connection refused"
        case .networkConnectionLost: return "connection lost mid-transfer"
        case .badServerResponse, .zeroByteResource: return "connection closed without an answer"
        default: return "\(error.localizedDescription) (URLError \(error.code.rawValue))"
        }
    }

    public func json<Response: Decodable>(_ method: String, _ path: String, as type: Response.Type) async throws -> Response {
        let (data, _) = try await send(method, path)
        return try decode(type, data, path: path)
    }

    public func json<Body: Encodable, Response: Decodable>(_ method: String, _ path: String, body: Body, as type: Response.Type) async throws -> Response {
        let (data, _) = try await send(method, path, body: try FleetJSON.encoder.encode(body))
        return try decode(type, data, path: path)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data, path: String) throws -> T {
        do {
            return try FleetJSON.decoder.decode(type, from: data)
        } catch {
            throw FleetClientError(status: nil, code: "bad_response", message: "\(path): unexpected response body: \(error)")
        }
    }
}

public enum FleetJSON {
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
