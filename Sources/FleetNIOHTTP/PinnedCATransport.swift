import FleetKit
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// HTTPS to a controller whose certificate is issued by a private CA: only the CA
/// certificates in one PEM file are trusted (not the system store). URLSession on Linux
/// cannot be given a CA of its own, so agents and fleetctl started with
/// `--ca-certificate` talk to the controller through this instead (SwiftNIO + NIOSSL).
/// Keeps a few idle keep-alive connections; a request on one the server has meanwhile
/// closed is sent once more on a fresh connection.
public final class PinnedCATransport: HTTPTransport {
    private let context: NIOSSLContext
    private let group: EventLoopGroup
    private let idle = Mutex<[HTTPConnection]>([])
    private let uploadProgress: (@Sendable (Int) -> Void)?
    private static let maxIdleConnections = 4

    /// Fails with the file named when it is missing or holds no PEM certificate.
    /// `uploadProgress` hears how many bytes of each request body the socket has taken
    /// (fleetctl's progress bar for a model push).
    public init(caCertificateFile path: String, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                uploadProgress: (@Sendable (Int) -> Void)? = nil) throws {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw HTTPConnection.Failure(description: "cannot read CA certificate \(path): \(error)")
        }
        guard !certificates.isEmpty else { throw HTTPConnection.Failure(description: "no PEM certificate in \(path)") }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(certificates)
        configuration.minimumTLSVersion = .tlsv12
        context = try NIOSSLContext(configuration: configuration)
        self.group = group
        self.uploadProgress = uploadProgress
    }

    public func send(_ request: URLRequest, timeout: TimeInterval) async throws -> (Data, HTTPURLResponse) {
        guard let url = request.url, url.scheme == "https", let host = url.host else {
            throw HTTPConnection.Failure(description: "--ca-certificate needs an https:// controller URL, got \(request.url?.absoluteString ?? "none")")
        }
        let port = url.port ?? 443
        var path = url.path.isEmpty ? "/" : url.path
        if let query = url.query { path += "?" + query }
        let method = HTTPMethod(rawValue: request.httpMethod ?? "GET")
        let headers = (request.allHTTPHeaderFields ?? [:]).map { ($0.key, $0.value) }
        let body = request.httpBody.map { ByteBuffer(bytes: $0) }
        let wait = TimeAmount.milliseconds(Int64(timeout * 1000))

        let reused = takeIdle(host: host, port: port)
        let response: HTTPConnection.Response
        let connection: HTTPConnection
        if let reused {
            do {
                response = try await reused.request(method, path, headers: headers, body: body, timeout: wait, bodyProgress: uploadProgress)
                connection = reused
            } catch {
                reused.close()
                (response, connection) = try await sendOnFreshConnection(host: host, port: port, method, path, headers, body, wait)
            }
        } else {
            (response, connection) = try await sendOnFreshConnection(host: host, port: port, method, path, headers, body, wait)
        }
        putIdle(connection)
        var fields: [String: String] = [:]
        for (name, value) in response.headers { fields[name] = value }
        guard let answer = HTTPURLResponse(url: url, statusCode: response.status, httpVersion: "HTTP/1.1", headerFields: fields) else {
            throw HTTPConnection.Failure(description: "bad response from \(url)")
        }
        return (Data(response.body.readableBytesView), answer)
    }

    /// A connection the server closed before the request could be written (its idle
    /// timer runs from accept, so a slow handshake on a busy controller can lose the race)
    /// sent nothing: that request is tried once more on another fresh connection. A failed
    /// handshake (wrong CA) is reported as it is.
    private func sendOnFreshConnection(host: String, port: Int, _ method: HTTPMethod, _ path: String, _ headers: [(String, String)],
                                       _ body: ByteBuffer?, _ timeout: TimeAmount) async throws -> (HTTPConnection.Response, HTTPConnection) {
        for attempt in 1...2 {
            let connection = try await HTTPConnection.connect(host: host, port: port, group: group, timeout: timeout, tls: context)
            do {
                return (try await connection.request(method, path, headers: headers, body: body, timeout: timeout, bodyProgress: uploadProgress), connection)
            } catch where attempt == 1 && Self.wasNotSent(error) {
                connection.close()
            } catch {
                connection.close()
                throw error
            }
        }
        throw HTTPConnection.Failure(description: "the server closed two new connections before the request could be sent")
    }

    private static func wasNotSent(_ error: Error) -> Bool {
        if case ChannelError.ioOnClosedChannel? = error as? ChannelError { return true }
        return (error as? HTTPConnection.Failure)?.requestNotSent == true
    }

    private func takeIdle(host: String, port: Int) -> HTTPConnection? {
        idle.withLock { connections in
            connections.removeAll { !$0.isActive }
            guard let index = connections.firstIndex(where: { $0.host == host && $0.port == port }) else { return nil }
            return connections.remove(at: index)
        }
    }

    private func putIdle(_ connection: HTTPConnection) {
        let kept = idle.withLock { connections -> Bool in
            guard connection.isActive, connections.count < Self.maxIdleConnections else { return false }
            connections.append(connection)
            return true
        }
        if !kept { connection.close() }
    }

    deinit {
        for connection in idle.withLock({ $0 }) { connection.close() }
    }
}
