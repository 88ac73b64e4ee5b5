import Foundation
import Testing
@testable import FleetAgent

/// Refused pushes can come from anyone on the LAN: the agent records a few a minute and
/// counts the rest, so a flood costs neither log lines nor a growing event queue.
@Suite("Refused-push pacing")
struct RefusalLimiterTests {
    @Test("at most perMinute refusals a minute are recorded; the next minute's first says how many were not")
    func paced() {
        var limiter = RefusalLimiter(perMinute: 3)
        let start = Date()
        let decisions = (0..<8).map { limiter.admit(now: start.addingTimeInterval(Double($0))) }
        #expect(decisions.filter { $0 != .suppress }.count == 3)
        #expect(decisions.prefix(3).allSatisfy { $0 == .record(suppressedBefore: 0) })
        #expect(limiter.admit(now: start.addingTimeInterval(61)) == .record(suppressedBefore: 5))
        #expect(limiter.admit(now: start.addingTimeInterval(62)) == .record(suppressedBefore: 0))
    }
}
