import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A man in the middle for HTTP/1.1 on 127.0.0.1: forwards each request to an upstream
/// port (one request per connection, `Connection: close` both ways) and lets a test
/// rewrite or replace the body of answers to one path. It records the request bodies and
/// the original answers to that path, so a test can replay an old one.
final class RewritingProxy: @unchecked Sendable {
    /// What happens to an answer to `path`: forwarded, rewritten, or replaced by a
    /// recorded earlier answer (a replay).
    enum Mode: Sendable {
        case pass
        case rewrite(@Sendable (Data) -> Data)
        case replay(index: Int)
    }

    let port: Int
    let path: String
    private let upstreamPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var _mode = Mode.pass
    private var _answers: [Data] = []
    private var _requests: [Data] = []
    private var _rewritten = 0

    init(upstreamPort: Int, path: String) throws {
        self.upstreamPort = upstreamPort
        self.path = path
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw TestFailure("rewriting proxy cannot listen: errno \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    var url: URL { URL(string: "http://127.0.0.1:\(port)")! }

    var mode: Mode {
        get { lock.withLock { _mode } }
        set { lock.withLock { _mode = newValue } }
    }

    /// Original answers to `path`, oldest first.
    var answers: [Data] { lock.withLock { _answers } }
    /// Request bodies sent to `path`, oldest first.
    var requests: [Data] { lock.withLock { _requests } }
    /// Answers the proxy changed (rewritten or replayed).
    var rewritten: Int { lock.withLock { _rewritten } }

    func stop() {
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
            if client < 0 { return }
            Thread { [self] in serve(client) }.start()
        }
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        guard let request = Self.readMessage(client, isResponse: false) else { return }
        let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(upstream) }
        var address = Self.loopback(port: upstreamPort)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return }
        let matches = request.startLine.split(separator: " ").dropFirst().first.map { $0.hasPrefix(path) } ?? false
        if matches { lock.withLock { _requests.append(request.body) } }
        guard Self.write(upstream, request.serialized(body: request.body)),
              let response = Self.readMessage(upstream, isResponse: true) else { return }
        var body = response.body
        let succeeded = response.startLine.split(separator: " ").dropFirst().first?.hasPrefix("2") ?? false
        if matches, succeeded {
            let mode: Mode = lock.withLock {
                _answers.append(response.body)
                return _mode
            }
            switch mode {
            case .pass: break
            case .rewrite(let change):
                body = change(response.body)
                lock.withLock { _rewritten += 1 }
            case .replay(let index):
                body = lock.withLock { _answers.indices.contains(index) ? _answers[index] : response.body }
                lock.withLock { _rewritten += 1 }
            }
        }
        _ = Self.write(client, response.serialized(body: body))
    }

    struct Message {
        var startLine: String
        var headers: [(String, String)]
        var body: Data

        /// Re-serialized with the body's length and `Connection: close`.
        func serialized(body: Data) -> Data {
            var text = startLine + "\r\n"
            for (name, value) in headers where !["content-length", "connection", "transfer-encoding"].contains(name.lowercased()) {
                text += "\(name): \(value)\r\n"
            }
            text += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
            return Data(text.utf8) + body
        }
    }

    /// One HTTP/1.1 message with a Content-Length body (or, for a response without one,
    /// a body up to the close).
    private static func readMessage(_ fd: Int32, isResponse: Bool) -> Message? {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let separator = Data("\r\n\r\n".utf8)
        var headerEnd: Range<Data.Index>?
        while headerEnd == nil {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { return nil }
            data.append(contentsOf: buffer[0..<count])
            headerEnd = data.range(of: separator)
        }
        let head = String(decoding: data[..<headerEnd!.lowerBound], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let startLine = lines.removeFirst()
        let headers = lines.compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var body = Data(data[headerEnd!.upperBound...])
        if let length = headers.first(where: { $0.0.lowercased() == "content-length" }).flatMap({ Int($0.1) }) {
            while body.count < length {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count <= 0 { return nil }
                body.append(contentsOf: buffer[0..<count])
            }
        } else if isResponse {
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count <= 0 { break }
                body.append(contentsOf: buffer[0..<count])
            }
        }
        return Message(startLine: startLine, headers: headers, body: body)
    }

    private static func write(_ fd: Int32, _ data: Data) -> Bool {
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
}
