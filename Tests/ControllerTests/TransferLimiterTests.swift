import Testing
@testable import FleetController

/// The download admission bound: permits stream, a bounded queue waits, the rest are
/// refused; every ticket gives its place back exactly once, started or not.
@Suite("Transfer limiter")
struct TransferLimiterTests {
    @Test("admits permits + queue, refuses the rest, and frees places when tickets go")
    func admissionBound() async {
        let limiter = TransferLimiter(permits: 2, queueLimit: 3)
        var tickets = (0..<5).compactMap { _ in limiter.admit() }
        #expect(tickets.count == 5)
        #expect(limiter.admit() == nil)
        #expect(limiter.admitted == 5)
        tickets.removeLast(2)  // never started: dropped responses free their places too
        #expect(limiter.admitted == 3)
        #expect(limiter.admit() != nil)  // admitted and dropped at once
        #expect(limiter.admitted == 3)
        tickets.removeAll()
        #expect(limiter.admitted == 0)
    }

    @Test("at most `permits` transfers run at once; waiters start first come, first served")
    func permitsAndOrder() async throws {
        let limiter = TransferLimiter(permits: 2, queueLimit: 8)
        let log = StartLog()
        var running: [TransferLimiter.Ticket] = []
        for _ in 0..<2 {
            let ticket = try #require(limiter.admit())
            await ticket.start()
            running.append(ticket)
        }
        // Four more queue up behind the two running transfers, in a known order.
        var waiters: [Task<Void, Never>] = []
        for index in 0..<4 {
            let ticket = try #require(limiter.admit())
            waiters.append(Task {
                await ticket.start()
                await log.started(index)
                try? await Task.sleep(for: .milliseconds(5))
                await log.finished()
                _ = ticket  // the transfer ends (and frees its permit) when the ticket goes
            })
            try await waitUntil { limiter.waiting == index + 1 }
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(await log.order.isEmpty, "no waiter starts while both permits are held")
        running.removeFirst()  // one transfer finishes: the first waiter starts
        try await waitUntil { await log.order.first == 0 }
        running.removeAll()
        for waiter in waiters { await waiter.value }
        #expect(await log.order == [0, 1, 2, 3])
        #expect(await log.mostAtOnce <= 2)
        #expect(limiter.admitted == 0 && limiter.waiting == 0)
    }

    private func waitUntil(_ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while !(await condition()) {
            guard ContinuousClock.now < deadline else { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(2))
        }
    }
}

private actor StartLog {
    private(set) var order: [Int] = []
    private(set) var mostAtOnce = 0
    private var running = 0

    func started(_ index: Int) {
        order.append(index)
        running += 1
        mostAtOnce = max(mostAtOnce, running)
    }

    func finished() { running -= 1 }
}
