import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where `swift build` put the executables: next to the test bundle.
let productsDirectory: URL = {
    let candidate = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    if FileManager.default.fileExists(atPath: candidate.appendingPathComponent("fleet-controller").path) { return candidate }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return root.appendingPathComponent(".build/debug")
}()

/// A real child process (controller, agent, fleetctl) with its output in files, stopped
/// with SIGTERM (then SIGKILL) when the test ends, whatever happens.
final class TestProcess: @unchecked Sendable {
    let name: String
    let process = Process()
    let outputURL: URL

    init(_ executable: String, _ arguments: [String], name: String, directory: URL, environment: [String: String] = [:]) throws {
        self.name = name
        outputURL = directory.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
        let output = try FileHandle(forWritingTo: outputURL)
        process.executableURL = productsDirectory.appendingPathComponent(executable)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { _, new in new }
        process.environment = env
        try process.run()
        TestProcess.registry.add(process)
    }

    var output: String { (try? String(contentsOf: outputURL, encoding: .utf8)) ?? "" }

    /// Waits for a line matching `pattern` (a regex with one capture group) and returns the capture.
    func waitForLine(_ pattern: String, timeout: TimeInterval = 30) throws -> String {
        let regex = try NSRegularExpression(pattern: pattern)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = output
            if let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
               let range = Range(match.range(at: 1), in: text) {
                return String(text[range])
            }
            if !process.isRunning {
                throw TestFailure("\(name) exited (status \(process.terminationStatus)) before printing /\(pattern)/:\n\(text.suffix(2000))")
            }
            usleep(50_000)
        }
        throw TestFailure("\(name) did not print /\(pattern)/ within \(timeout)s:\n\(output.suffix(2000))")
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    func kill9() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { stop() }

    /// Every process started by tests; killed at exit even if a test crashes mid-way.
    final class Registry: @unchecked Sendable {
        private let lock = NSLock()
        private var processes: [Process] = []
        init() { atexit { TestProcess.registry.killAll() } }
        func add(_ process: Process) { lock.lock(); processes.append(process); lock.unlock() }
        func killAll() {
            lock.lock()
            defer { lock.unlock() }
            for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
    }

    static let registry = Registry()
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` until it holds or the timeout passes.
func eventually(_ what: String, timeout: TimeInterval = 30, _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    var lastError: Error?
    while Date() < deadline {
        do {
            if try await condition() { return }
        } catch {
            lastError = error
        }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw TestFailure("timed out after \(timeout)s waiting for: \(what)\(lastError.map { " (last error: \($0))" } ?? "")")
}

func temporaryDirectory(_ prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
