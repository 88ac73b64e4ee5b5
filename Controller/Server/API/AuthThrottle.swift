import Foundation

/// Slows down token guessing: an address that fails authentication `limit` times within
/// `window` seconds is refused (429) for everything until its failures age out. While
/// locked out, even a correct token is refused, so the answers give no oracle.
actor AuthThrottle {
    let limit: Int
    let window: TimeInterval
    private var failures: [String: [Date]] = [:]

    init(limit: Int, window: TimeInterval = 60) {
        self.limit = limit
        self.window = window
    }

    func isLocked(_ address: String, now: Date) -> Bool {
        prune(address, now: now)
        return (failures[address]?.count ?? 0) >= limit
    }

    func recordFailure(_ address: String, now: Date) {
        prune(address, now: now)
        failures[address, default: []].append(now)
        if failures.count > 10_000 {
            // Forget addresses whose failures have all aged out.
            failures = failures.compactMapValues { list in
                let recent = list.filter { now.timeIntervalSince($0) <= window }
                return recent.isEmpty ? nil : recent
            }
        }
    }

    private func prune(_ address: String, now: Date) {
        guard var list = failures[address] else { return }
        list.removeAll { now.timeIntervalSince($0) > window }
        failures[address] = list.isEmpty ? nil : list
    }
}
