import Foundation

/// A token bucket per device for what devices write: each heartbeat costs 1 plus its
/// reports, events, windows and shadow reports, each `/api/v1/reports` call 1 plus its
/// reports. An honest agent spends a few a minute; one stolen credential replaying
/// heartbeats as fast as it can would otherwise turn into as many write transactions.
/// In memory and per replica: the limit is a bound on each controller's work.
final class DeviceIngestLimiter: @unchecked Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: Date
    }

    private let lock = NSLock()
    private var buckets: [String: Bucket] = [:]
    private let maxDevices = 500_000

    /// Takes `cost` from the device's bucket; false (and nothing taken) when it has less.
    /// A cost above the burst (the largest heartbeat allowed) empties a full bucket.
    func admit(_ deviceID: String, cost requested: Int, burst: Double, perMinute: Double, now: Date) -> Bool {
        let cost = min(Double(requested), burst)
        return lock.withLock {
            var bucket = buckets[deviceID] ?? Bucket(tokens: burst, updated: now)
            let elapsed = max(0, now.timeIntervalSince(bucket.updated))
            bucket.tokens = min(burst, bucket.tokens + elapsed * perMinute / 60)
            bucket.updated = now
            guard bucket.tokens >= cost else {
                buckets[deviceID] = bucket
                return false
            }
            bucket.tokens -= cost
            if buckets.count >= maxDevices, buckets[deviceID] == nil {
                // Full buckets carry no state worth keeping.
                buckets = buckets.filter { $0.value.tokens < burst }
            }
            buckets[deviceID] = bucket
            return true
        }
    }

    /// Seconds until `cost` is available again (for Retry-After).
    func retryAfter(_ deviceID: String, cost: Int, perMinute: Double) -> Int {
        let missing = lock.withLock { Double(cost) - (buckets[deviceID]?.tokens ?? 0) }
        return max(1, Int((missing * 60 / perMinute).rounded(.up)))
    }
}
