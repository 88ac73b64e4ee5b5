import FleetKit
import Foundation
import FuzzSupport

// Fuzzes the controller API's request-body decoding. The first byte picks the body type
// (modulo the number of types), the rest is the body, decoded exactly as the route does and
// then checked by the FleetKit-level validation the controller applies:
//
//   0 POST /api/v1/enrollment-tokens  EnrollmentTokenRequest  Hummingbird's requestDecoder*
//   1 POST /api/v1/enroll             EnrollRequest           requestDecoder*
//   2 POST /api/v1/deployments        DeploymentRequest       requestDecoder*
//   3 POST /api/v1/rollouts           RolloutRequest          requestDecoder*; stage membership
//   4 PUT  /api/v1/privacy            PrivacySettings         requestDecoder*; isValid, then the
//                                                             mechanism agents apply with it
//   5 POST /api/v1/heartbeat          HeartbeatRequest        FleetJSON.decoder; item limits,
//                                                             ShadowReport/AggregateWindow.isWellFormed,
//                                                             merging accepted windows
//   6 POST /api/v1/reports            [DeploymentReport]      requestDecoder*; at most 1000
//
// * FleetRequestContext keeps Hummingbird's default requestDecoder, a JSONDecoder with the
//   .iso8601 date strategy: the same configuration as FleetJSON.decoder, which is used here.
// Checks that live in FleetController (name lengths, push URLs, expiry and threshold
// ranges) sit behind the database and are covered by the controller's tests instead.
//
// Every decoded body must also re-encode with FleetJSON.encoder (the controller stores
// parts of bodies as JSON) and decode back to a stable encoding.

/// Bodies above the controller's 4 MiB JSON limit never reach the decoder.
let maxBody = 4 << 20

/// One input (libFuzzer calls this through Fuzz.main in main.swift).
func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = Fuzz.data(start, count)
    guard let selector = input.first, input.count - 1 <= maxBody else { return 0 }
    let body = Data(input.dropFirst())
    switch Int(selector) % APIBody.allCases.count {
    case 0: check(EnrollmentTokenRequest.self, body) { _ in }
    case 1: check(EnrollRequest.self, body) { _ in }
    case 2: check(DeploymentRequest.self, body) { _ in }
    case 3: check(RolloutRequest.self, body, validateRollout)
    case 4: check(PrivacySettings.self, body, validatePrivacy)
    case 5: check(HeartbeatRequest.self, body, validateHeartbeat)
    default: check([DeploymentReport].self, body) { _ = $0.count <= 1000 }
    }
    return 0
}

enum APIBody: UInt8, CaseIterable {
    case enrollmentToken, enroll, deployment, rollout, privacy, heartbeat, reports
}

func check<T: Codable>(_ type: T.Type, _ body: Data, _ validate: (T) -> Void) {
    guard let value = try? FleetJSON.decoder.decode(T.self, from: body) else { return }
    validate(value)
    do {
        let encoded = try FleetJSON.encoder.encode(value)
        let again = try FleetJSON.encoder.encode(try FleetJSON.decoder.decode(T.self, from: encoded))
        let third = try FleetJSON.encoder.encode(try FleetJSON.decoder.decode(T.self, from: again))
        guard again == third else { Fuzz.fail("\(T.self) does not round-trip stably") }
    } catch {
        Fuzz.fail("a decoded \(T.self) does not re-encode and decode: \(error)")
    }
}

func validateRollout(_ request: RolloutRequest) {
    // RolloutService.start refuses anything but increasing positive percentages ending at 100.
    let stages = request.stages
    guard !stages.isEmpty, stages.last == 100, zip(stages, stages.dropFirst()).allSatisfy({ $0 < $1 }), stages.allSatisfy({ $0 > 0 }) else { return }
    for device in request.target.devices.prefix(16) + ["dev_a", "dev_b"] {
        let stage = RolloutPlan.stage(of: device, stages: stages)
        guard stages.indices.contains(stage) else { Fuzz.fail("stage \(stage) of \(stages)") }
    }
}

func validatePrivacy(_ settings: PrivacySettings) {
    guard settings.isValid else { return }
    // Accepted settings are what every agent applies to every window before it leaves.
    var window = AggregateWindow(start: Date(timeIntervalSince1970: 0), end: Date(timeIntervalSince1970: 60), model: "m", version: "v", classes: 3)
    for i in 0..<20 { window.record(predictedClass: i % 4, latencyMs: Double(i), confidence: Float(i) / 20) }
    var mechanism = PrivacyMechanism(settings: settings, random: SeededRandom(state: 1))
    let released = mechanism.protect(window)
    guard released.isWellFormed else { Fuzz.fail("valid privacy settings \(settings) produce a malformed window") }
}

func validateHeartbeat(_ request: HeartbeatRequest) {
    // FleetService.heartbeat: limits, then every shadow report and window must be well formed.
    guard request.reports.count <= 1000, request.aggregates.count <= 10_000, request.events.count <= 1000, request.shadow.count <= 100,
          request.shadow.allSatisfy(\.isWellFormed), request.aggregates.allSatisfy(\.isWellFormed) else { return }
    // Accepted windows are merged per model/version (mergeAggregates, metrics); accepted
    // shadow reports are merged per deployment.
    var merged: [String: AggregateWindow] = [:]
    for window in request.aggregates {
        if var existing = merged[window.key] {
            existing.merge(window)
            merged[window.key] = existing
        } else {
            merged[window.key] = window
        }
    }
    for window in merged.values {
        for p in [0.5, 0.95, 0.99] { _ = AggregateWindow.latencyPercentile(window.latencyHistogram, p) }
    }
    if var first = request.shadow.first {
        for other in request.shadow.dropFirst() { first.merge(other) }
    }
}

/// SplitMix64, so privacy noise is reproducible under the fuzzer.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum APISeeds {
    static func write(_ seeds: SeedWriter) throws {
        func body(_ kind: APIBody, _ name: String, _ json: String) throws {
            try seeds.write("\(kind.rawValue)-\(kind)-\(name).json", Data([kind.rawValue]) + Data(json.utf8))
        }
        func encoded<T: Encodable>(_ kind: APIBody, _ name: String, _ value: T) throws {
            try seeds.write("\(kind.rawValue)-\(kind)-\(name).json", Data([kind.rawValue]) + FleetJSON.encoder.encode(value))
        }
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)

        try encoded(.enrollmentToken, "valid", EnrollmentTokenRequest(expiresInSeconds: 86_400, labels: ["site": "berlin"]))
        try body(.enrollmentToken, "huge-expiry", #"{"expiresInSeconds":9223372036854775807,"labels":{}}"#)

        try encoded(.enroll, "valid", EnrollRequest(token: "enr_abc", name: "pi-1", labels: ["site": "berlin", "rack": "3"],
                                                    pushURL: "http://10.0.0.7:7070", agentVersion: "1.0"))
        try body(.enroll, "unicode", #"{"token":"\u0000","name":"\ud83d\ude00 pi","labels":{"":""},"pushURL":"","agentVersion":""}"#)

        try encoded(.deployment, "valid", DeploymentRequest(model: "fashion", version: "v2", target: DeploymentTarget(labels: ["site": "berlin"])))
        try encoded(.deployment, "devices", DeploymentRequest(model: nil, version: "v1", target: DeploymentTarget(devices: ["dev_a", "dev_b"])))

        try encoded(.rollout, "valid", RolloutRequest(model: "fashion", version: "v3", target: DeploymentTarget(), stages: [5, 25, 100],
                                                      soakSeconds: 600, maxFailureFraction: 0.1, minDevices: 1, autoRollback: true))
        try encoded(.rollout, "shadow", RolloutRequest(model: nil, version: "v3", target: DeploymentTarget(devices: ["dev_a"]), stages: [100],
                                                       soakSeconds: 0, maxFailureFraction: 0, minDevices: 3, autoRollback: false,
                                                       shadow: ShadowGate(minAgreement: 0.95, minSamples: 100)))
        try body(.rollout, "tiny-stages", #"{"version":"v","target":{"labels":{},"devices":[]},"stages":[1e-300,5e-324,100],"soakSeconds":-0.0,"maxFailureFraction":1,"minDevices":-1,"autoRollback":false}"#)

        try encoded(.privacy, "valid", PrivacySettings(minCount: 5, epsilon: 1))
        try encoded(.privacy, "off", PrivacySettings())
        try body(.privacy, "extreme", #"{"minCount":1000000,"epsilon":1e-300}"#)

        var window = AggregateWindow(start: t0, end: t0.addingTimeInterval(60), model: "fashion", version: "v1", classes: 4)
        for i in 0..<10 { window.record(predictedClass: i % 4, latencyMs: Double(i) / 3, confidence: Float(i) / 10) }
        var noisy = window
        noisy.privacy = "laplace epsilon=1.0"
        noisy.classCounts[1] = -2
        noisy.suppressedClasses = [3]
        var shadow = ShadowReport(sequence: 7, classes: 3)
        shadow.record(activeClass: 1, shadowClass: 1, confidenceDelta: 0.1, latencyDeltaMs: -0.2)
        shadow.record(activeClass: 2, shadowClass: 0, confidenceDelta: -0.3, latencyDeltaMs: 0.5)
        var heartbeat = HeartbeatRequest(agentVersion: "1.0", pushURL: "http://10.0.0.7:7070",
                                         activeModel: ActiveModel(name: "fashion", version: "v1", sha256: String(repeating: "ab", count: 32), sequence: 3),
                                         reports: [DeploymentReport(sequence: 3, state: .active), DeploymentReport(sequence: 4, state: .failed, reason: "self test")],
                                         aggregates: [window, noisy, window], events: [DeviceEvent(at: t0, kind: "manifest_refused", message: "bad signature")],
                                         shadow: [shadow, shadow])
        heartbeat.epsilonSpent = 2.5
        try encoded(.heartbeat, "full", heartbeat)
        try encoded(.heartbeat, "empty", HeartbeatRequest(agentVersion: "", pushURL: "", activeModel: nil, reports: [], aggregates: [], events: []))

        try encoded(.reports, "valid", [DeploymentReport(sequence: 5, state: .downloading), DeploymentReport(sequence: 5, state: .active)])
        try body(.reports, "empty", "[]")
        try body(.reports, "bad-state", #"[{"sequence":-9223372036854775808,"state":"exploded"}]"#)
    }
}
