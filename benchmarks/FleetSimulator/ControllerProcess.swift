import Foundation

/// A real `fleet-controller serve` started for the run in a fresh data directory, so its
/// memory can be read from /proc and it is stopped with the simulator.
final class ControllerProcess: @unchecked Sendable {
    let process = Process()
    let dataDirectory: URL
    private(set) var url: URL!
    private(set) var adminToken: String!
    private var output = ""
    private let lock = NSLock()

    init(binary: URL, heartbeatInterval: Double, extraArguments: [String]) throws {
        dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("bitfleet-sim-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        process.executableURL = binary
        process.arguments = ["serve", "--data-dir", dataDirectory.path, "--listen", "127.0.0.1:0",
                             "--heartbeat-interval", String(heartbeatInterval)] + extraArguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { self.output += String(decoding: data, as: UTF8.self) }
        }
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let text = lock.withLock { output }
            if let address = Self.match(text, after: "listening on "), let token = Self.match(text, after: "admin-token`): ") {
                url = URL(string: address)
                adminToken = token
                return
            }
            guard process.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        stop()
        throw SimulationError("the controller did not start: \(lock.withLock { output })")
    }

    private static func match(_ text: String, after marker: String) -> String? {
        guard let range = text.range(of: marker) else { return nil }
        let rest = text[range.upperBound...]
        let value = rest.prefix { !$0.isWhitespace }
        return value.isEmpty ? nil : String(value)
    }

    var pid: Int32 { process.processIdentifier }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: dataDirectory)
    }
}

/// Resident memory of a process from /proc/PID/status (Linux), in bytes.
enum ProcessMemory {
    static func resident(pid: Int32) -> (current: Int, peak: Int)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func kilobytes(_ key: String) -> Int? {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return nil }
            return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
        }
        guard let current = kilobytes("VmRSS:"), let peak = kilobytes("VmHWM:") else { return nil }
        return (current * 1024, peak * 1024)
    }

    /// CPU seconds (user + system) a process has used, from /proc/PID/stat: with the
    /// number of heartbeats it gives the controller's cost per heartbeat, which unlike
    /// latency does not depend on what else the machine is running.
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let afterName = text.range(of: ") ")?.upperBound else { return nil }
        let fields = text[afterName...].split(separator: " ")
        // Fields 14 and 15 of stat(5) (utime, stime), counted from after the command name.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

struct SimulationError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
