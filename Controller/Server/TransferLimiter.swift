/// Bounds how many blob transfers stream at once. Each costs a file chunk and NIO's write
/// buffers; a thousand devices starting a download together must not add a thousand of
/// those to the controller's memory. Waiters are served first come, first served; a
/// device whose request times out while waiting simply retries its Range request.
actor TransferLimiter {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(permits: Int) { available = max(1, permits) }

    func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    /// Every acquire must be followed by exactly one release, also when the transfer fails.
    func release() {
        if waiters.isEmpty {
            available += 1
        } else {
            waiters.removeFirst().resume()
        }
    }
}
