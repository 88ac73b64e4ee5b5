import Synchronization

/// Bounds blob transfers. At most `permits` stream at once (each costs a file chunk and
/// NIO's write buffers) and at most `queueLimit` more wait for a permit. A request beyond
/// both is not admitted: the route answers 503 with Retry-After at once, so a thousand
/// devices starting a download in the same second cost the controller a bounded number of
/// suspended requests instead of a thousand, and the devices come back a moment later.
/// Waiters are served first come, first served.
final class TransferLimiter: Sendable {
    private struct State {
        var available: Int
        var admitted = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    let permits: Int
    let queueLimit: Int
    private let state: Mutex<State>

    init(permits: Int, queueLimit: Int) {
        self.permits = max(1, permits)
        self.queueLimit = max(0, queueLimit)
        state = Mutex(State(available: self.permits))
    }

    /// Transfers admitted and not yet finished (streaming or waiting).
    var admitted: Int { state.withLock { $0.admitted } }

    /// Admitted transfers waiting for a permit.
    var waiting: Int { state.withLock { $0.waiters.count } }

    /// A ticket for one transfer, or nil when `permits + queueLimit` are already admitted.
    /// The ticket gives its place back when it is released, whether or not the transfer
    /// ever started (a response dropped before its body is written frees it too).
    func admit() -> Ticket? {
        let admitted = state.withLock { state -> Bool in
            guard state.admitted < permits + queueLimit else { return false }
            state.admitted += 1
            return true
        }
        return admitted ? Ticket(limiter: self) : nil
    }

    fileprivate func acquire() async {
        let waiting = state.withLock { state -> Bool in
            if state.available > 0 {
                state.available -= 1
                return false
            }
            return true
        }
        guard waiting else { return }
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state -> Bool in
                // A permit may have come back between the check above and here.
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    fileprivate func finish(holdingPermit: Bool) {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.admitted -= 1
            guard holdingPermit else { return nil }
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }

    /// One admitted transfer: `start()` waits for a permit; the permit and the admission
    /// are returned exactly once, when the ticket is released (deinit), also on failure or
    /// cancellation.
    final class Ticket: Sendable {
        private let limiter: TransferLimiter
        private let started = Mutex(false)

        fileprivate init(limiter: TransferLimiter) { self.limiter = limiter }

        func start() async {
            await limiter.acquire()
            started.withLock { $0 = true }
        }

        deinit { limiter.finish(holdingPermit: started.withLock { $0 }) }
    }
}
