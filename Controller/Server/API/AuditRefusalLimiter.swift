import Foundation

/// Refused requests are audited, but a flood of them must not become a flood of database
/// writes: each address gets at most `perMinute` audit entries for refusals a minute; the
/// rest are counted, and the first entry of the next minute says how many were left out.
actor AuditRefusalLimiter {
    private struct Window {
        var start: Date
        var written: Int
        var suppressed: Int
    }

    let perMinute: Int
    private var windows: [String: Window] = [:]

    init(perMinute: Int = 20) {
        self.perMinute = perMinute
    }

    /// Whether to write this refusal, and how many earlier ones went unrecorded (to say so).
    func admit(_ address: String, now: Date) -> (write: Bool, suppressedBefore: Int) {
        var window = windows[address] ?? Window(start: now, written: 0, suppressed: 0)
        var carried = 0
        if now.timeIntervalSince(window.start) >= 60 {
            carried = window.suppressed
            window = Window(start: now, written: 0, suppressed: 0)
        }
        defer {
            windows[address] = window
            // Bounded without scanning on every request: past 10,000 addresses, forget those
            // whose minute is over, and all of them if a flood keeps more than that current.
            if windows.count > 10_000 {
                windows = windows.filter { now.timeIntervalSince($0.value.start) < 60 }
                if windows.count > 5_000 { windows.removeAll(keepingCapacity: true) }
            }
        }
        guard window.written < perMinute else {
            window.suppressed += 1
            return (false, 0)
        }
        window.written += 1
        return (true, carried)
    }
}
