import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy on 127.0.0.1 that forwards to an upstream port and records every byte the
/// client sent, so a test can prove what an agent did (not) send to the controller.
final class RecordingProxy: @unchecked Sendable {
    let port: Int
    private let upstreamPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var recorded = Data()
    private var running = true
    /// Fault injection: close each connection after it carried this many bytes from the
    /// server, mid-response (nil = never).
    private let cutAfterBytes: Int?
    private var cuts = 0

    var cutConnections: Int {
        lock.lock()
        defer { lock.unlock() }
        return cuts
    }

    /// Throttling: each read from the server is held this long before it is forwarded, so
    /// a download takes long enough for a test to crash the agent in the middle of it.
    /// Settable while running (a test throttles only the phases that need it).
    var delayPerRead: useconds_t {
        get { lock.lock(); defer { lock.unlock() }; return delay }
        set { lock.lock(); delay = newValue; lock.unlock() }
    }
    private var delay: useconds_t

    init(upstreamPort: Int, cutAfterBytes: Int? = nil, delayPerRead: useconds_t = 0) throws {
        self.upstreamPort = upstreamPort
        self.cutAfterBytes = cutAfterBytes
        self.delay = delayPerRead
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(listener, 64) == 0 else { throw TestFailure("proxy cannot listen: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        port = Int(UInt16(bigEndian: address.sin_port))
        startAccepting()
    }

    private func startAccepting() {
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    var clientBytes: Data {
        lock.lock()
        defer { lock.unlock() }
        return recorded
    }

    func stop() {
        lock.lock()
        running = false
        lock.unlock()
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = in_port_t(UInt16(upstreamPort).bigEndian)
            let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            if connected != 0 {
                close(client)
                close(upstream)
                continue
            }
            Thread { [self] in pump(from: client, to: upstream, record: true) }.start()
            Thread { [self] in pump(from: upstream, to: client, record: false) }.start()
        }
    }

    private func pump(from source: Int32, to destination: Int32, record: Bool) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var forwarded = 0
        while true {
            var count = read(source, &buffer, buffer.count)
            if count <= 0 { break }
            if !record, case let pause = delayPerRead, pause > 0 { usleep(pause) }
            if !record, let limit = cutAfterBytes, forwarded + count > limit {
                // Forward part of this read, then drop both sides: a transfer cut mid-way.
                count = max(0, limit - forwarded)
                // MSG_NOSIGNAL: a peer that already closed must not SIGPIPE the test process.
                _ = buffer.withUnsafeBufferPointer { send(destination, $0.baseAddress, count, Int32(MSG_NOSIGNAL)) }
                lock.lock()
                cuts += 1
                lock.unlock()
                shutdown(destination, Int32(SHUT_RDWR))
                shutdown(source, Int32(SHUT_RDWR))
                return
            }
            forwarded += count
            if record {
                lock.lock()
                recorded.append(contentsOf: buffer[0..<count])
                lock.unlock()
            }
            var offset = 0
            while offset < count {
                let written = buffer[offset..<count].withUnsafeBufferPointer {
                    send(destination, $0.baseAddress, count - offset, Int32(MSG_NOSIGNAL))
                }
                if written <= 0 { break }
                offset += written
            }
            if offset < count { break }
        }
        shutdown(destination, Int32(SHUT_WR))
        shutdown(source, Int32(SHUT_RD))
    }
}
