import NIOCore
import NIOHTTPTypes

/// Closes the connection once a response that carries `Connection: close` is written.
/// Hummingbird keeps a connection open unless the *request* asked to close it; the
/// controller uses the response header to shed load (a device refused a download slot is
/// told to come back later and should not hold a connection meanwhile).
final class CloseAfterResponseHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var closeAfterEnd = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            // Informational (1xx) heads precede the real one and never end a response.
            if head.status.kind != .informational {
                closeAfterEnd = head.headerFields[.connection]?.lowercased() == "close"
            }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            guard closeAfterEnd else {
                context.write(data, promise: promise)
                return
            }
            closeAfterEnd = false
            let loopBound = context.loopBound
            context.writeAndFlush(data).whenComplete { result in
                loopBound.value.close(promise: nil)
                promise?.completeWith(result)
            }
        }
    }
}
