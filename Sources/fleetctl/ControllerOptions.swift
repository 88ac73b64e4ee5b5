import ArgumentParser
import FleetKit
import FleetNIOHTTP
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// How fleetctl finds the controller: flags, then FLEET_CONTROLLER / FLEET_TOKEN, then
/// ~/.config/bitfleet/fleetctl.json ({"controller": "...", "token": "..."}).
struct ControllerOptions: ParsableArguments {
    @Option(help: "Controller URL (env FLEET_CONTROLLER).") var controller: String?
    @Option(help: "Admin token (env FLEET_TOKEN).") var token: String?
    @Option(help: "PEM file of the private CA that issued the controller's HTTPS certificate; only it is trusted (env FLEET_CA_CERTIFICATE).")
    var caCertificate: String?
    @Flag(help: "Print JSON for scripts.") var json = false

    struct ConfigFile: Decodable {
        var controller: String?
        var token: String?
    }

    /// `progress` draws the upload of a request body, whichever transport carries it.
    func client(timeout: TimeInterval = 30, progress: UploadProgress? = nil) throws -> FleetHTTPClient {
        let environment = ProcessInfo.processInfo.environment
        let configURL = URL(fileURLWithPath: environment["FLEETCTL_CONFIG"]
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".config/bitfleet/fleetctl.json").path)
        let file = (FileManager.default.contents(atPath: configURL.path)).flatMap { try? JSONDecoder().decode(ConfigFile.self, from: $0) }
        guard let address = controller ?? environment["FLEET_CONTROLLER"] ?? file?.controller, let url = URL(string: address), url.scheme != nil else {
            throw ValidationError("no controller: pass --controller URL, set FLEET_CONTROLLER, or write \(configURL.path)")
        }
        guard let secret = token ?? environment["FLEET_TOKEN"] ?? file?.token, !secret.isEmpty else {
            throw ValidationError("no admin token: pass --token, set FLEET_TOKEN, or write \(configURL.path)")
        }
        var drawProgress: (@Sendable (Int) -> Void)?
        if let progress { drawProgress = { sent in progress.draw(sent: sent) } }
        let transport = try (caCertificate ?? environment["FLEET_CA_CERTIFICATE"]).map { path -> PinnedCATransport in
            guard url.scheme == "https" else { throw ValidationError("--ca-certificate is for an https:// controller, got \(address)") }
            return try PinnedCATransport(caCertificateFile: path, uploadProgress: drawProgress)
        }
        return FleetHTTPClient(baseURL: url, token: secret, timeout: timeout, delegate: progress, transport: transport)
    }

    func emit<T: Encodable>(_ value: T, human: () -> Void) throws {
        if json { try printJSON(value) } else { human() }
    }
}

/// Runs an API call, turning client errors into a one-line message and exit code 1.
func callController<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as FleetClientError {
        throw CLIError(error.description)
    }
}

/// Parses durations such as 90s, 10m, 24h, 7d.
func parseDuration(_ text: String) throws -> Double {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    guard let unit = text.last, let factor = units[unit], let value = Double(text.dropLast()), value > 0 else {
        if let seconds = Double(text), seconds > 0 { return seconds }
        throw ValidationError("'\(text)' is not a duration like 90s, 10m, 24h or 7d")
    }
    return value * factor
}

func parseLabels(_ entries: [String]) throws -> [String: String] {
    var labels: [String: String] = [:]
    for entry in entries {
        let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("labels look like key=value, got '\(entry)'") }
        labels[parts[0]] = parts[1]
    }
    return labels
}

func ago(_ date: Date?) -> String {
    guard let date else { return "never" }
    let seconds = Int(Date().timeIntervalSince(date))
    switch seconds {
    case ..<60: return "\(max(seconds, 0))s ago"
    case ..<3600: return "\(seconds / 60)m ago"
    case ..<86400: return "\(seconds / 3600)h ago"
    default: return "\(seconds / 86400)d ago"
    }
}
