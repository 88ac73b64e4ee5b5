import BitModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A fault-injecting TCP proxy on 127.0.0.1 in front of one upstream port. Faults are
/// chosen per connection from a seeded generator, so a failing run can be replayed:
/// - `mode`: `.pass` forwards; `.refuse` accepts and closes at once (a dropped
///   connection); `.blackHole` accepts, reads and never answers. Changing the mode severs
///   the live connections, so kept-alive HTTP connections feel it too.
/// - `dropProbability`: share of connections accepted and closed before any byte;
///   `dropEvery`: every N-th connection so closed (a count, certain to happen).
/// - `cutEvery` with `cutAfterBytes`: of the connections that carry more than that many
///   bytes from the server, every `cutEvery`-th is cut there, mid-response (1 = all), so
///   cuts happen however few connections a kept-alive client opens.
/// - `chunkDelay`: latency added before every forwarded chunk (at most `chunkSize` bytes),
///   both ways; also paces uploads so a test can kill a server mid-transfer.
final class FaultProxy: @unchecked Sendable {
    enum Mode: Sendable { case pass, refuse, blackHole }

    struct Counters: Sendable {
        var connections = 0, dropped = 0, cut = 0, blackHoled = 0
        /// Bytes forwarded from clients to the server.
        var uploaded = 0
        /// Whether a client's bytes are being held back (see `holdUploads(after:)`).
        var holdingUpload = false
    }

    let port: Int
    private let listener: Int32
    private let lock = NSLock()
    private var random: SeededGenerator
    private var live: Set<Int32> = []
    private var stopped = false
    private var _upstreamPort: Int
    private var _mode = Mode.pass
    private var _counters = Counters()
    private var settings: (drop: Double, dropEvery: Int, cutEvery: Int, cutAfter: Int, delay: TimeInterval)
    private var crossings = 0
    private var holdUploadsAt: Int?
    let chunkSize: Int

    init(upstreamPort: Int, seed: UInt64, dropProbability: Double = 0, dropEvery: Int = 0, cutEvery: Int = 0, cutAfterBytes: Int = 0,
         chunkDelay: TimeInterval = 0, chunkSize: Int = 16 * 1024) throws {
        _upstreamPort = upstreamPort
        random = SeededGenerator(seed: seed)
        settings = (dropProbability, dropEvery, cutEvery, cutAfterBytes, chunkDelay)
        self.chunkSize = chunkSize
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else {
            close(fd)
            throw TestFailure("fault proxy cannot listen: errno \(errno)")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    var url: URL { URL(string: "http://127.0.0.1:\(port)")! }

    var upstreamPort: Int {
        get { locked { _upstreamPort } }
        set { locked { _upstreamPort = newValue } }
    }

    var mode: Mode {
        get { locked { _mode } }
        set {
            // Under the lock: a socket leaves `live` (under the lock) before it is closed,
            // so this never shuts down a reused descriptor.
            locked {
                _mode = newValue
                for fd in live { shutdown(fd, Int32(SHUT_RDWR)) }
                live.removeAll()
            }
        }
    }

    var counters: Counters { locked { _counters } }

    /// Stops forwarding client bytes to the server once `bytes` more have gone through,
    /// until `releaseUploads()`: a test can act while an upload is certainly half way,
    /// however slowly its own tasks are scheduled.
    func holdUploads(after bytes: Int) {
        locked { holdUploadsAt = _counters.uploaded + bytes }
    }

    func releaseUploads() {
        locked { holdUploadsAt = nil; _counters.holdingUpload = false }
    }

    private func waitWhileUploadsHeld() {
        while locked({ () -> Bool in
            guard let limit = holdUploadsAt, _counters.uploaded >= limit, !stopped else { return false }
            _counters.holdingUpload = true
            return true
        }) {
            usleep(5_000)
        }
    }

    /// Changes the random faults; live connections keep the ones they were given.
    func setFaults(dropProbability: Double = 0, dropEvery: Int = 0, cutEvery: Int = 0, cutAfterBytes: Int = 0, chunkDelay: TimeInterval = 0) {
        locked { settings = (dropProbability, dropEvery, cutEvery, cutAfterBytes, chunkDelay); crossings = 0 }
    }

    func stop() {
        let first: Bool = locked {
            defer { stopped = true }
            for fd in live { shutdown(fd, Int32(SHUT_RDWR)) }
            live.removeAll()
            return !stopped
        }
        guard first else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    deinit { stop() }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return address
    }

    /// What one connection gets, decided under the lock from the seeded generator.
    private struct Plan { var mode: Mode; var drop: Bool; var cutAfter: Int?; var delay: TimeInterval; var upstream: Int }

    private func plan() -> Plan? {
        locked {
            if stopped { return nil }
            _counters.connections += 1
            let drop = (settings.drop > 0 && Double.random(in: 0..<1, using: &random) < settings.drop)
                || (settings.dropEvery > 0 && _counters.connections % settings.dropEvery == 0)
            return Plan(mode: _mode, drop: drop, cutAfter: settings.cutEvery > 0 ? settings.cutAfter : nil, delay: settings.delay,
                        upstream: _upstreamPort)
        }
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            guard let plan = plan() else { close(client); return }
            if plan.mode == .refuse || plan.drop {
                locked { _counters.dropped += 1 }
                close(client)
                continue
            }
            if plan.mode == .blackHole {
                locked { _counters.blackHoled += 1; live.insert(client) }
                // Swallow whatever arrives and never answer, until the client gives up.
                Thread { [self] in
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    while read(client, &buffer, buffer.count) > 0 {}
                    locked { _ = live.remove(client) }
                    close(client)
                }.start()
                continue
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: plan.upstream)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if connected != 0 {
                // Upstream down: the client sees a dropped connection, as it would directly.
                close(client)
                close(upstream)
                continue
            }
            locked { live.insert(client); live.insert(upstream) }
            let pair = ConnectionPair(client: client, upstream: upstream) { [self] in
                locked { _ = live.remove(client); _ = live.remove(upstream) }
            }
            Thread { [self] in pump(from: client, to: upstream, cutAfter: nil, delay: plan.delay, pair: pair, towardServer: true) }.start()
            Thread { [self] in pump(from: upstream, to: client, cutAfter: plan.cutAfter, delay: plan.delay, pair: pair, towardServer: false) }.start()
        }
    }

    /// Whether the connection crossing the cut threshold now is one to cut.
    private func cutsAtCrossing() -> Bool {
        locked {
            crossings += 1
            return settings.cutEvery > 0 && crossings % settings.cutEvery == 0
        }
    }

    private func pump(from source: Int32, to destination: Int32, cutAfter: Int?, delay: TimeInterval, pair: ConnectionPair, towardServer: Bool) {
        var cutAfter = cutAfter
        defer { pair.finished() }
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var forwarded = 0
        while true {
            var count = read(source, &buffer, buffer.count)
            if count <= 0 { break }
            if delay > 0 { usleep(useconds_t(delay * 1_000_000)) }
            if towardServer { waitWhileUploadsHeld() }
            var cutting = false
            if let limit = cutAfter, forwarded + count > limit {
                if cutsAtCrossing() {
                    count = max(0, limit - forwarded)
                    cutting = true
                } else {
                    cutAfter = nil
                }
            }
            var offset = 0
            while offset < count {
                // MSG_NOSIGNAL: a peer that died (a killed controller) must not SIGPIPE the tests.
                let written = buffer[offset..<count].withUnsafeBufferPointer { send(destination, $0.baseAddress, count - offset, Int32(MSG_NOSIGNAL)) }
                if written <= 0 { break }
                offset += written
            }
            forwarded += offset
            if towardServer { locked { _counters.uploaded += offset } }
            if cutting {
                locked { _counters.cut += 1 }
                shutdown(destination, Int32(SHUT_RDWR))
                shutdown(source, Int32(SHUT_RDWR))
                return
            }
            if offset < count { break }
        }
        shutdown(destination, Int32(SHUT_WR))
        shutdown(source, Int32(SHUT_RD))
    }
}

/// Closes both sockets of a proxied connection once both directions are done.
private final class ConnectionPair: @unchecked Sendable {
    private let lock = NSLock()
    private var remaining = 2
    private let client: Int32, upstream: Int32
    private let onClose: () -> Void

    init(client: Int32, upstream: Int32, onClose: @escaping () -> Void) {
        self.client = client
        self.upstream = upstream
        self.onClose = onClose
    }

    func finished() {
        lock.lock()
        remaining -= 1
        let last = remaining == 0
        lock.unlock()
        guard last else { return }
        onClose()
        close(client)
        close(upstream)
    }
}
