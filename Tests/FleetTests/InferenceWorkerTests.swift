@testable import FleetAgent
import Dispatch
import Foundation
import Testing

@Suite("Inference off the cooperative pool")
struct InferenceWorkerTests {
    /// The agent's /v1/infer runs the model through InferenceWorker: on its own serial queue,
    /// never on a cooperative-pool thread, so a long inference cannot starve the HTTP server.
    @Test("inference work runs on the inference queue, one at a time, and its errors reach the caller")
    func runsOnItsOwnQueue() async throws {
        let onQueue = try await InferenceWorker.run { DispatchQueue.getSpecific(key: InferenceWorker.marker) == true }
        #expect(onQueue)
        #expect(DispatchQueue.getSpecific(key: InferenceWorker.marker) == nil)

        // Eight concurrent callers: the queue is serial, so no two work items overlap.
        let running = Counter()
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await InferenceWorker.run {
                        let concurrent = running.increment()
                        usleep(2_000)
                        running.decrement()
                        return concurrent
                    }
                }
            }
            for try await concurrent in group { #expect(concurrent == 1) }
        }

        struct Refused: Error, Equatable {}
        await #expect(throws: Refused.self) { try await InferenceWorker.run { throw Refused() } }
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func increment() -> Int { lock.lock(); defer { lock.unlock() }; value += 1; return value }
    func decrement() { lock.lock(); value -= 1; lock.unlock() }
}
