import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One keep-alive HTTP/1.1 connection carrying one request at a time, on SwiftNIO. The
/// controller pushes manifests with it (URLSession on Linux costs tens of megabytes when a
/// whole fleet is pushed to at once) and the fleet simulator is a thousand devices with
/// it on one event-loop thread. With a TLS context it speaks HTTPS (agents and fleetctl
/// that trust a private CA, see `PinnedCATransport`).
public final class HTTPConnection: @unchecked Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var body: ByteBuffer
        public var headers = HTTPHeaders()

        /// Seconds from a `Retry-After: N` header (503, 429), if the server sent one.
        public var retryAfter: Int? {
            headers.first(name: "retry-after").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        }
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
        /// The connection was already closed, without an error, when the request was to be
        /// written: nothing was sent, so any request may be tried again on a new connection.
        public var requestNotSent = false

        public init(description: String, requestNotSent: Bool = false) {
            self.description = description
            self.requestNotSent = requestNotSent
        }
    }

    private let channel: Channel
    private let collector: ResponseCollector
    public let host: String
    public let port: Int

    private init(channel: Channel, collector: ResponseCollector, host: String, port: Int) {
        self.channel = channel
        self.collector = collector
        self.host = host
        self.port = port
    }

    /// With `tls`, the connection is HTTPS: the server's certificate must chain to the
    /// context's trust roots and name `host` (DNS name, or IP address in its SAN).
    public static func connect(host: String, port: Int, group: EventLoopGroup, timeout: TimeAmount = .seconds(10),
                               tls: NIOSSLContext? = nil) async throws -> HTTPConnection {
        let collector = ResponseCollector()
        do {
            // SNI carries names only; for an IP address NIOSSL checks the certificate
            // against the address it connected to.
            let serverName = host.isIPAddress ? nil : host
            let channel = try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName))
                        }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(collector)
                    }
                }
                .connect(host: host, port: port).get()
            return HTTPConnection(channel: channel, collector: collector, host: host, port: port)
        } catch ChannelError.connectTimeout {
            throw Failure(description: "timed out (no connection to \(host):\(port) within \(timeout.nanoseconds / 1_000_000_000) s)")
        } catch {
            throw Failure(description: "cannot connect to \(host):\(port): \(error)")
        }
    }

    /// One request on a fresh connection, closed afterwards; `timeout` bounds connecting
    /// and, separately, waiting for the whole answer.
    public static func send(_ method: HTTPMethod, to url: URL, headers: [(String, String)] = [], body: ByteBuffer?,
                            group: EventLoopGroup, timeout: TimeAmount) async throws -> Response {
        guard url.scheme == "http", let host = url.host else { throw Failure(description: "not a plain http URL: \(url)") }
        let connection = try await connect(host: host, port: url.port ?? 80, group: group, timeout: timeout)
        defer { connection.close() }
        var path = url.path.isEmpty ? "/" : url.path
        if let query = url.query { path += "?" + query }
        return try await connection.request(method, path, headers: headers, body: body, timeout: timeout)
    }

    public var isActive: Bool { channel.isActive }

    /// Slices share the body's storage: reporting progress copies nothing.
    public static let progressSliceBytes = 64 * 1024

    public func close() { channel.close(promise: nil) }

    /// Sends one request and collects the whole answer; fails after `timeout`.
    /// `bodyProgress` hears the body bytes the socket has taken so far, in slices of
    /// `progressSliceBytes`, so a long upload can show how far it got.
    public func request(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: ByteBuffer? = nil,
                        timeout: TimeAmount = .seconds(30), bodyProgress: (@Sendable (Int) -> Void)? = nil) async throws -> Response {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: Response.self)
        var fields = HTTPHeaders([("Host", "\(host):\(port)")] + headers)
        fields.add(name: "Content-Length", value: "\(body?.readableBytes ?? 0)")
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: fields)
        let channel = self.channel
        let collector = self.collector
        loop.execute {
            guard collector.begin(promise) else {
                promise.fail(Failure(description: "a request is already in flight on this connection"))
                return
            }
            let timer = loop.scheduleTask(in: timeout) {
                collector.fail(Failure(description: "timed out (no answer to \(method) \(path) within \(timeout.nanoseconds / 1_000_000_000) s)"))
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if var body {
                if let bodyProgress {
                    var sent = 0
                    while body.readableBytes > 0 {
                        let slice = body.readSlice(length: min(Self.progressSliceBytes, body.readableBytes))!
                        sent += slice.readableBytes
                        let total = sent
                        channel.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(slice))).whenSuccess { bodyProgress(total) }
                    }
                } else {
                    channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
                }
            }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil)).whenFailure { collector.fail($0) }
        }
        return try await promise.futureResult.get()
    }
}

/// Assembles the answer to the one outstanding request. Only touched on its event loop.
private final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    private var pending: EventLoopPromise<HTTPConnection.Response>?
    private var status = 0
    private var headers = HTTPHeaders()
    private var body = ByteBuffer()

    /// Why the connection ended while no request was waiting (a failed TLS handshake, the
    /// server closing an idle connection): the next request fails with it instead of a
    /// bare "I/O on closed channel".
    private var endedWhileIdle: Error?

    func begin(_ promise: EventLoopPromise<HTTPConnection.Response>) -> Bool {
        guard pending == nil else { return false }
        if let endedWhileIdle {
            promise.fail(endedWhileIdle)
            return true
        }
        pending = promise
        status = 0
        headers = HTTPHeaders()
        body.clear()
        return true
    }

    func fail(_ error: Error) {
        guard let promise = pending else {
            if endedWhileIdle == nil { endedWhileIdle = error }
            return
        }
        pending = nil
        promise.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            headers = head.headers
        case .body(var part):
            body.writeBuffer(&part)
        case .end:
            let promise = pending
            pending = nil
            promise?.succeed(HTTPConnection.Response(status: status, body: body, headers: headers))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if pending == nil {
            fail(HTTPConnection.Failure(description: "the server closed the connection", requestNotSent: true))
        } else {
            fail(HTTPConnection.Failure(description: "connection lost before the whole answer arrived"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error)
        context.close(promise: nil)
    }
}

extension String {
    /// An IPv4 or IPv6 literal (which TLS SNI must not carry).
    var isIPAddress: Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return withCString { inet_pton(AF_INET, $0, &v4) == 1 || inet_pton(AF_INET6, $0, &v6) == 1 }
    }
}
