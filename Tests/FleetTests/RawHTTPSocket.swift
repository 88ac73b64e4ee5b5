import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking loopback TCP connection for HTTP at the byte level: tests that need to hold
/// a response half-read (a slow client occupying a transfer slot) or to see whether the
/// server closed the connection after its answer.
final class RawHTTPSocket {
    private var fd: Int32

    /// `receiveBuffer` shrinks the kernel's receive buffer before connecting, so a client
    /// that does not read stalls the server's writes after a few kilobytes.
    /// `host`: an IPv4 address; another local address than 127.0.0.1 makes this connection
    /// come from a non-loopback peer.
    init(port: Int, host: String = "127.0.0.1", receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr(host)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            Glibc.close(fd)
            throw TestFailure("connect to \(host):\(port): errno \(errno)")
        }
    }

    deinit { close() }

    func close() {
        guard fd >= 0 else { return }
        Glibc.close(fd)
        fd = -1
    }

    func send(_ request: String) throws {
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let written = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw TestFailure("send: errno \(errno)") }
            sent += written
        }
    }

    /// Everything the server sends until it closes the connection (or 10 s pass).
    func readUntilClosed() -> (text: String, closedByServer: Bool) {
        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return (String(decoding: received, as: UTF8.self), true) }
            if count < 0 { return (String(decoding: received, as: UTF8.self), false) }
            received += buffer[..<count]
        }
    }

    /// Reads at least `minimum` bytes (or until the server closes or 10 s pass).
    func read(atLeast minimum: Int) -> Int {
        var total = 0
        var buffer = [UInt8](repeating: 0, count: 4096)
        while total < minimum {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            total += count
        }
        return total
    }
}
