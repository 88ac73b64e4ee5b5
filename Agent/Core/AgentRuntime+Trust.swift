import FleetKit
import Foundation

/// What the agent does with controller answers it cannot trust: heartbeat replies that do
/// not verify and pushed manifests that are refused. Neither changes any state, and
/// neither costs a disk write: the refusal becomes a device event held in memory (sent with
/// the next heartbeat, saved with the next state write that happens anyway). Refused
/// replies come at most one per heartbeat; refused pushes can come from anyone on the LAN,
/// so a flood of them is paced to a few log lines and events a minute.
extension AgentRuntime {
    /// The signed part of a heartbeat reply and the key that signed it, or the refusal
    /// (logged and queued as a `heartbeat_reply_refused` event) thrown.
    func verifiedReply(_ response: HeartbeatResponse, nonce: String, requestAge: TimeInterval) throws -> (HeartbeatReply, String) {
        guard let identity else { throw HeartbeatReplyError.unsigned }
        do {
            let verified = try HeartbeatReplyVerifier.verify(response.signed, pinnedKey: identity.publicKey, fleetID: identity.fleetID,
                                                             deviceID: identity.deviceID, nonce: nonce, requestAge: requestAge)
            return (verified.reply, verified.signingKey)
        } catch {
            let message = "heartbeat reply refused, settings and manifest unchanged: \(error)"
            logger.warning("\(message)")
            appendEvent(DeviceEvent(at: now, kind: "heartbeat_reply_refused", message: String(message.prefix(500))))
            throw error
        }
    }

    /// A pushed manifest that failed verification: an event, no state write, paced.
    func recordRefusedPush(_ reason: String) {
        let message = "push manifest refused: \(reason)"
        let kind = "manifest_refused"
        switch refusals.admit(now: now) {
        case .record(let suppressedBefore):
            if suppressedBefore > 0 {
                appendEvent(DeviceEvent(at: now, kind: "refusals_suppressed", message: "\(suppressedBefore) more refused pushes in the last minute were not recorded"))
            }
            logger.warning("\(message)")
            appendEvent(DeviceEvent(at: now, kind: kind, message: String(message.prefix(500))))
        case .suppress:
            break
        }
    }
}

/// At most `perMinute` refused pushes are logged and recorded per minute; the rest are counted and
/// reported as one summary event when recording resumes.
struct RefusalLimiter: Sendable {
    enum Decision: Equatable { case record(suppressedBefore: Int), suppress }

    var perMinute: Int
    private var windowStart = Date.distantPast
    private var inWindow = 0
    private var suppressed = 0

    init(perMinute: Int = 30) {
        self.perMinute = perMinute
    }

    mutating func admit(now: Date) -> Decision {
        if now.timeIntervalSince(windowStart) >= 60 || now < windowStart {
            windowStart = now
            inWindow = 0
        }
        guard inWindow < perMinute else {
            suppressed += 1
            return .suppress
        }
        inWindow += 1
        defer { suppressed = 0 }
        return .record(suppressedBefore: suppressed)
    }
}

extension Duration {
    /// Seconds as a Double.
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
