import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP-aware proxy on 127.0.0.1 in front of one upstream port, playing the attacker
/// on the network: it parses every request a client sends (also several on one kept-alive
/// connection), records it whole (method, path, body bytes as sent), and can make chosen
/// requests fail: the request is read and recorded, then the connection is closed before a
/// byte reaches the server, so the client sees a failed send and retries.
final class InterceptingProxy: @unchecked Sendable {
    struct Captured: Sendable {
        var method: String
        var path: String
        var head: String
        var body: Data
        /// Whether the proxy failed this request instead of forwarding it.
        var dropped: Bool
    }

    let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var captured: [Captured] = []
    private var failures: [String: Int] = [:]
    private var stopped = false

    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw TestFailure("intercepting proxy cannot listen: errno \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    var url: URL { URL(string: "http://127.0.0.1:\(port)")! }

    /// Every request seen so far, in order.
    var requests: [Captured] {
        lock.lock()
        defer { lock.unlock() }
        return captured
    }

    /// The next `count` requests to `path` fail (recorded, never forwarded).
    func fail(next count: Int, path: String) {
        lock.lock()
        failures[path] = count
        lock.unlock()
    }

    func remainingFailures(path: String) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return failures[path] ?? 0
    }

    func stop() {
        lock.lock()
        let first = !stopped
        stopped = true
        lock.unlock()
        guard first else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    deinit { stop() }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return address
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if connected != 0 {
                close(client)
                close(upstream)
                continue
            }
            let closer = Closer(client: client, upstream: upstream)
            Thread { [self] in requests(from: client, to: upstream, closer: closer) }.start()
            Thread { [self] in responses(from: upstream, to: client, closer: closer) }.start()
        }
    }

    /// Client to server, one whole request at a time, so each can be recorded and failed.
    private func requests(from client: Int32, to upstream: Int32, closer: Closer) {
        defer { closer.finished() }
        var pending = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            while let (request, length) = Self.parse(pending) {
                pending.removeFirst(length)
                let drop: Bool = {
                    lock.lock()
                    defer { lock.unlock() }
                    let remaining = failures[request.path] ?? 0
                    if remaining > 0 { failures[request.path] = remaining - 1 }
                    var recorded = request
                    recorded.dropped = remaining > 0
                    captured.append(recorded)
                    return remaining > 0
                }()
                if drop {
                    shutdown(client, Int32(SHUT_RDWR))
                    shutdown(upstream, Int32(SHUT_RDWR))
                    return
                }
                let bytes = Data((request.head + "\r\n\r\n").utf8) + request.body
                guard Self.sendAll(bytes, to: upstream) else { return }
            }
            let count = read(client, &buffer, buffer.count)
            if count <= 0 { break }
            pending.append(contentsOf: buffer[0..<count])
        }
        shutdown(upstream, Int32(SHUT_WR))
    }

    private func responses(from upstream: Int32, to client: Int32, closer: Closer) {
        defer { closer.finished() }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(upstream, &buffer, buffer.count)
            if count <= 0 { break }
            guard Self.sendAll(Data(buffer[0..<count]), to: client) else { break }
        }
        shutdown(client, Int32(SHUT_WR))
    }

    private static func sendAll(_ data: Data, to fd: Int32) -> Bool {
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if written <= 0 { return false }
                offset += written
            }
            return true
        }
    }

    /// A complete request at the start of `data` (Content-Length bodies; the agent sends
    /// no chunked requests) and its length in bytes, or nil if more bytes are needed.
    static func parse(_ data: Data) -> (Captured, Int)? {
        guard let end = data.range(of: Data("\r\n\r\n".utf8)) else { return nil }
        let head = String(decoding: data[data.startIndex..<end.lowerBound], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.first?.split(separator: " ") ?? []
        var length = 0
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces).lowercased() == "content-length" {
                length = Int(parts[1].trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        let bodyStart = end.upperBound
        guard data.endIndex - bodyStart >= length else { return nil }
        let body = Data(data[bodyStart..<(bodyStart + length)])
        let path = requestLine.count > 1 ? String(requestLine[1].split(separator: "?").first ?? "") : ""
        return (Captured(method: requestLine.first.map(String.init) ?? "", path: path, head: head, body: body, dropped: false),
                bodyStart + length - data.startIndex)
    }
}

/// Closes both sockets of a proxied connection once both directions are done.
private final class Closer: @unchecked Sendable {
    private let lock = NSLock()
    private var remaining = 2
    private let client: Int32, upstream: Int32

    init(client: Int32, upstream: Int32) {
        self.client = client
        self.upstream = upstream
    }

    func finished() {
        lock.lock()
        remaining -= 1
        let last = remaining == 0
        lock.unlock()
        guard last else { return }
        close(client)
        close(upstream)
    }
}
