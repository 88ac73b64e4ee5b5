import NIOCore
import NIOHTTP1
import NIOPosix

/// One keep-alive HTTP/1.1 connection carrying one request at a time, the way a device
/// talks to its controller. Written on SwiftNIO rather than URLSession so that a thousand
/// simulated devices cost one event-loop thread, and the latencies measured are the
/// controller's, not a client library's queueing.
final class HTTPConnection: @unchecked Sendable {
    struct Response: Sendable {
        var status: Int
        var body: ByteBuffer
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private let channel: Channel
    private let collector: ResponseCollector
    let host: String
    let port: Int

    private init(channel: Channel, collector: ResponseCollector, host: String, port: Int) {
        self.channel = channel
        self.collector = collector
        self.host = host
        self.port = port
    }

    static func connect(host: String, port: Int, group: EventLoopGroup) async throws -> HTTPConnection {
        let collector = ResponseCollector()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.pipeline.addHTTPClientHandlers().flatMap { channel.pipeline.addHandler(collector) }
            }
            .connect(host: host, port: port).get()
        return HTTPConnection(channel: channel, collector: collector, host: host, port: port)
    }

    var isActive: Bool { channel.isActive }

    func close() { channel.close(promise: nil) }

    /// Sends one request and collects the whole answer; fails after `timeout`.
    func request(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: ByteBuffer? = nil,
                 timeout: TimeAmount = .seconds(30)) async throws -> Response {
        let loop = channel.eventLoop
        let promise = loop.makePromise(of: Response.self)
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: "\(host):\(port)")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        head.headers.add(name: "Content-Length", value: "\(body?.readableBytes ?? 0)")
        let channel = self.channel
        let collector = self.collector
        loop.execute {
            guard collector.begin(promise) else {
                promise.fail(Failure(description: "a request is already in flight on this connection"))
                return
            }
            let timer = loop.scheduleTask(in: timeout) {
                collector.fail(Failure(description: "no answer to \(method) \(path) within \(timeout.nanoseconds / 1_000_000_000) s"))
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
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
    private var body = ByteBuffer()

    func begin(_ promise: EventLoopPromise<HTTPConnection.Response>) -> Bool {
        guard pending == nil else { return false }
        pending = promise
        status = 0
        body.clear()
        return true
    }

    func fail(_ error: Error) {
        let promise = pending
        pending = nil
        promise?.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
        case .body(var part):
            body.writeBuffer(&part)
        case .end:
            let promise = pending
            pending = nil
            promise?.succeed(HTTPConnection.Response(status: status, body: body))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(HTTPConnection.Failure(description: "connection closed by the controller"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error)
        context.close(promise: nil)
    }
}
