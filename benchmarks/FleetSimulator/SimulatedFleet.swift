import FleetKit
import Foundation
import NIOCore
import NIOPosix

/// A real controller (started here or given by URL) and N simulated devices enrolled in it.
final class SimulatedFleet: @unchecked Sendable {
    let controllerURL: URL
    let admin: FleetHTTPClient
    let controllerProcess: ControllerProcess?
    let stats = SimulationStats()
    let group: EventLoopGroup
    private(set) var agents: [SimulatedAgent] = []
    private var pushTask: Task<Void, Error>?

    init(options: FleetOptions) throws {
        if let url = options.controller ?? ProcessInfo.processInfo.environment["BITFLEET_CONTROLLER_URL"] {
            guard let token = options.adminToken ?? ProcessInfo.processInfo.environment["BITFLEET_ADMIN_TOKEN"] else {
                throw SimulationError("--controller needs --admin-token or BITFLEET_ADMIN_TOKEN")
            }
            guard let parsed = URL(string: url), parsed.scheme == "http", parsed.host != nil else {
                throw SimulationError("--controller must be an http://HOST:PORT URL (the simulated devices speak plain HTTP), got '\(url)'")
            }
            controllerURL = parsed
            admin = FleetHTTPClient(baseURL: controllerURL, token: token, timeout: 60)
            controllerProcess = nil
        } else {
            let binary = options.controllerBinary.map { URL(fileURLWithPath: $0) }
                ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("fleet-controller")
            let process = try ControllerProcess(binary: binary, heartbeatInterval: options.heartbeatInterval,
                                                extraArguments: options.controllerArguments.split(separator: " ").map(String.init))
            controllerProcess = process
            controllerURL = process.url
            admin = FleetHTTPClient(baseURL: controllerURL, token: process.adminToken, timeout: 60)
        }
        group = MultiThreadedEventLoopGroup(numberOfThreads: options.clientThreads)
    }

    func stop() {
        pushTask?.cancel()
        controllerProcess?.stop()
        try? group.syncShutdownGracefully()
    }

    var controllerMemory: (current: Int, peak: Int)? {
        controllerProcess.flatMap { ProcessMemory.resident(pid: $0.pid) }
    }

    var controllerCPUSeconds: Double? {
        controllerProcess.flatMap { ProcessMemory.cpuSeconds(pid: $0.pid) }
    }

    /// Creates one single-use token per device and enrolls them, `parallel` at a time.
    func enroll(count: Int, push: Bool, parallel: Int = 16) async throws -> Duration {
        let link = ControllerLink(host: controllerURL.host ?? "127.0.0.1", port: controllerURL.port ?? 80, group: group)
        agents = (0..<count).map { SimulatedAgent(index: $0, link: link, stats: stats) }
        let snapshot = agents
        let (pushURL, task) = try await PushReceiver.start { index in snapshot.indices.contains(index) ? snapshot[index] : nil }
        pushTask = task
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (position, agent) in snapshot.enumerated() {
                if position >= parallel { try await group.next() }
                group.addTask {
                    let token = try await self.admin.json("POST", "/api/v1/enrollment-tokens",
                                                          body: EnrollmentTokenRequest(expiresInSeconds: 3600, labels: [:]),
                                                          as: EnrollmentTokenResponse.self).token
                    try await agent.enroll(token: token, pushURL: push ? "\(pushURL)/sim/\(agent.index)" : "")
                }
            }
            try await group.waitForAll()
        }
        return ContinuousClock.now - started
    }

    /// Every device heartbeats every `interval`, devices evenly phased, until `deadline`.
    /// Open loop: a heartbeat that is late is sent at once and its lateness is counted.
    /// `signedReplies: false` sends no nonce (as an agent before signed replies), so the
    /// controller's cost of signing each reply can be measured side by side.
    func heartbeat(every interval: Duration, until deadline: ContinuousClock.Instant, aggregateEvery: Int, signedReplies: Bool = true) async {
        let start = ContinuousClock.now
        let count = agents.count
        await withTaskGroup(of: Void.self) { group in
            for (position, agent) in agents.enumerated() {
                group.addTask {
                    var due = start + interval * (Double(position) / Double(count))
                    while due < deadline {
                        try? await Task.sleep(until: due, clock: .continuous)
                        if Task.isCancelled { return }
                        do {
                            let service = try await agent.heartbeat(aggregateEvery: aggregateEvery, signedReply: signedReplies)
                            self.stats.recordLatency(service: service, fromSchedule: ContinuousClock.now - due)
                        } catch {
                            self.stats.count("heartbeat failed: \(error)")
                        }
                        due += interval
                    }
                }
            }
        }
    }
}
