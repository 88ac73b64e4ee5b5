import ArgumentParser
import FleetKit
import Foundation

struct RolloutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Follow and steer staged rollouts.",
        discussion: """
        Examples:
          fleetctl rollout list
          fleetctl rollout show 3 --watch
          fleetctl rollout pause 3; fleetctl rollout resume 3
          fleetctl rollout rollback 3
        """,
        subcommands: [List.self, Show.self, PauseVerb.self, ResumeVerb.self, AbortVerb.self, RollbackVerb.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List rollouts, newest first.")
        @OptionGroup var options: ControllerOptions

        func run() async throws {
            let client = try options.client()
            let rollouts = try await callController { try await client.json("GET", "/api/v1/rollouts", as: [RolloutInfo].self) }
            try options.emit(rollouts) {
                print(table([["ID", "MODEL", "VERSION", "STATE", "STAGE", "ACTIVE", "FAILED", "REASON"]] + rollouts.map { r in
                    let active = r.stages.reduce(0) { $0 + ($1.counts["active"] ?? 0) }
                    let failed = r.stages.reduce(0) { $0 + ($1.counts["failed"] ?? 0) }
                    let total = r.stages.reduce(0) { $0 + $1.devices }
                    return ["\(r.id)", r.model, r.version, r.state.rawValue, "\(r.currentStage + 1)/\(r.stages.count)", "\(active)/\(total)", "\(failed)", r.reason ?? ""]
                }))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a rollout's stages; --watch redraws live progress bars.")
        @OptionGroup var options: ControllerOptions
        @Argument(help: "Rollout id.") var id: Int64
        @Flag(help: "Redraw every second until the rollout completes, halts or is aborted.") var watch = false

        func run() async throws {
            let client = try options.client()
            var lines = 0
            while true {
                let rollout = try await callController { try await client.json("GET", "/api/v1/rollouts/\(id)", as: RolloutInfo.self) }
                if options.json {
                    try printJSON(rollout)
                    if !watch || rollout.state != .running { return }
                } else {
                    let text = render(rollout)
                    if watch && lines > 0 { print("\u{1B}[\(lines)A\u{1B}[J", terminator: "") }
                    print(text)
                    lines = text.split(separator: "\n", omittingEmptySubsequences: false).count
                    if !watch || (rollout.state != .running && rollout.state != .paused) { return }
                }
                try await Task.sleep(for: .seconds(1))
            }
        }

        func render(_ r: RolloutInfo) -> String {
            var out = ["rollout \(r.id): \(r.model) \(r.version) (sequence \(r.sequence))\(r.previousVersion.map { ", previous \($0)" } ?? "") - \(r.state.rawValue)"]
            if let reason = r.reason { out.append("  \(reason)") }
            out.append("  soak \(Int(r.soakSeconds))s, halt above \(Int(r.maxFailureFraction * 100))% failures after \(r.minDevices) devices, auto-rollback \(r.autoRollback ? "on" : "off")")
            for (index, stage) in r.stages.enumerated() {
                let active = stage.counts["active"] ?? 0, failed = stage.counts["failed"] ?? 0
                let width = 30
                let filled = stage.devices == 0 ? width : width * active / stage.devices
                let failedWidth = stage.devices == 0 ? 0 : min(width - filled, width * failed / stage.devices)
                let bar = String(repeating: "#", count: filled) + String(repeating: "x", count: failedWidth) + String(repeating: "-", count: width - filled - failedWidth)
                let marker = index == r.currentStage ? ">" : " "
                let counts = ["waiting", "pending", "notified", "downloading", "installed", "active", "failed"].compactMap { key in
                    stage.counts[key].flatMap { $0 > 0 ? "\(key) \($0)" : nil }
                }.joined(separator: ", ")
                out.append("\(marker) stage \(index + 1) \(String(format: "%3.0f", stage.percent))% [\(bar)] \(active)/\(stage.devices) active  \(counts)")
                if let shadow = stage.shadow, let gate = r.shadowGate {
                    let agreement = shadow.agreement.map { String(format: "%.1f%%", $0 * 100) } ?? "-"
                    let confidence = shadow.meanConfidenceDelta.map { String(format: "%+.3f", $0) } ?? "-"
                    let latency = shadow.meanLatencyDeltaMs.map { String(format: "%+.2f ms", $0) } ?? "-"
                    out.append("      shadow: \(shadow.samples)/\(gate.minSamples) samples, agreement \(agreement) (need \(String(format: "%.1f%%", gate.minAgreement * 100))), confidence \(confidence), latency \(latency)")
                }
            }
            for failure in r.failures.prefix(10) {
                out.append("  failed: \(failure.deviceName) (\(failure.deviceID)): \(failure.reason ?? "no reason")")
            }
            if let rollback = r.rollbackDeploymentID { out.append("  rollback deployment: \(rollback)") }
            if let promotion = r.promotionDeploymentID { out.append("  promoted by deployment \(promotion)") }
            return out.joined(separator: "\n")
        }
    }
}


struct PauseVerb: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Stop advancing stages (devices keep what they run).")
    @OptionGroup var options: ControllerOptions
    @Argument(help: "Rollout id.") var id: Int64

    func run() async throws {
        let client = try options.client()
        let rollout = try await callController { try await client.json("POST", "/api/v1/rollouts/\(id)/pause", as: RolloutInfo.self) }
        try options.emit(rollout) { print("rollout \(rollout.id): \(rollout.state.rawValue)\(rollout.reason.map { " (\($0))" } ?? "")") }
    }
}

struct ResumeVerb: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Continue a paused or halted rollout.")
    @OptionGroup var options: ControllerOptions
    @Argument(help: "Rollout id.") var id: Int64

    func run() async throws {
        let client = try options.client()
        let rollout = try await callController { try await client.json("POST", "/api/v1/rollouts/\(id)/resume", as: RolloutInfo.self) }
        try options.emit(rollout) { print("rollout \(rollout.id): \(rollout.state.rawValue)\(rollout.reason.map { " (\($0))" } ?? "")") }
    }
}

struct AbortVerb: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "abort", abstract: "End the rollout; no further stages.")
    @OptionGroup var options: ControllerOptions
    @Argument(help: "Rollout id.") var id: Int64

    func run() async throws {
        let client = try options.client()
        let rollout = try await callController { try await client.json("POST", "/api/v1/rollouts/\(id)/abort", as: RolloutInfo.self) }
        try options.emit(rollout) { print("rollout \(rollout.id): \(rollout.state.rawValue)\(rollout.reason.map { " (\($0))" } ?? "")") }
    }
}

struct RollbackVerb: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rollback", abstract: "Deploy the previous version to every device the rollout reached.")
    @OptionGroup var options: ControllerOptions
    @Argument(help: "Rollout id.") var id: Int64

    func run() async throws {
        let client = try options.client()
        let rollout = try await callController { try await client.json("POST", "/api/v1/rollouts/\(id)/rollback", as: RolloutInfo.self) }
        try options.emit(rollout) { print("rollout \(rollout.id): \(rollout.state.rawValue)\(rollout.reason.map { " (\($0))" } ?? "")") }
    }
}
