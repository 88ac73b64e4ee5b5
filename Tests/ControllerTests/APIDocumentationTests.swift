import Crypto
import FleetKit
import Foundation
import Testing
@testable import FleetController

/// docs/API.md documents exactly the routes the controller serves.
@Suite("API documentation")
struct APIDocumentationTests {
    @Test("every route is documented and every documented route exists")
    func inSync() async throws {
        let harness = try ServiceHarness()
        let served = Set(harness.routes.specs.map { "\($0.method.rawValue) \($0.path)" })
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/API.md"), encoding: .utf8)
        let regex = try NSRegularExpression(pattern: #"^\| `([A-Z]+)` \| `(/api/v1[^`]*|/metrics)` \|"#, options: .anchorsMatchLines)
        let documented = Set(regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { match in
            "\(text[Range(match.range(at: 1), in: text)!]) \(text[Range(match.range(at: 2), in: text)!])"
        })
        #expect(served.subtracting(documented).isEmpty, "undocumented routes: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
        for spec in harness.routes.specs {
            #expect(text.contains("| `\(spec.path)` | \(spec.access.rawValue) |"), "access of \(spec.path) must be documented as \(spec.access.rawValue)")
        }
    }
}

/// A FleetService on a real SQLite database in a temporary directory.
struct ServiceHarness {
    let directory: URL
    let store: SQLiteFleetStore
    let service: FleetService
    let routes: ControllerRoutes

    /// `deviceIDs` names the devices enrolled next (they decide stage membership); once
    /// they run out, ids are random as in production.
    init(now: @escaping @Sendable () -> Date = { Date() }, deviceIDs: [String] = [],
         configure: (inout ControllerConfiguration) -> Void = { _ in }) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("controller-\(UUID().uuidString.prefix(8))")
        let data = try DataDirectory(directory)
        store = try SQLiteFleetStore(path: data.databasePath)
        var configuration = ControllerConfiguration(dataDirectory: directory)
        configure(&configuration)
        var service = FleetService(store: store, blobs: FileBlobStore(directory: data.blobsURL),
                                   signer: ManifestSigner(privateKey: try data.signingKey()), fleetID: "fleet_test",
                                   configuration: configuration, clock: now)
        if !deviceIDs.isEmpty {
            let queue = IDQueue(deviceIDs)
            service.makeDeviceID = { queue.next() ?? "dev_" + UUID().uuidString.prefix(12).lowercased() }
        }
        self.service = service
        routes = ControllerRoutes(service: service, pushes: PushService(service: service, logger: .init(label: "test")))
    }

    /// How many manifests the service signed so far (`bitfleet_manifests_signed_total`).
    func manifestsSigned() -> Int {
        let text = service.metrics.registry.emitToString()
        let line = text.split(separator: "\n").first { $0.hasPrefix("bitfleet_manifests_signed_total ") }
        return line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
    }
}

/// Hands out the ids a test chose, in order.
final class IDQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var ids: [String]
    init(_ ids: [String]) { self.ids = ids }
    func next() -> String? { lock.withLock { ids.isEmpty ? nil : ids.removeFirst() } }
}
