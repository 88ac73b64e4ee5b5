import Dispatch

/// Runs inference on a thread of its own, not on Swift's cooperative pool or a NIO event
/// loop: a Bi-Real-Net inference takes tens of milliseconds on a Pi core (longer with the
/// engine's own worker threads busy), and blocking a cooperative thread for that long
/// stalls the agent's HTTP server, heartbeats and installs with it. One serial queue,
/// because a model's session runs one inference at a time anyway.
enum InferenceWorker {
    private static let queue: DispatchQueue = {
        let queue = DispatchQueue(label: "bitfleet.inference", qos: .userInitiated)
        queue.setSpecific(key: marker, value: true)
        return queue
    }()
    /// Set on the inference queue: work can check where it runs.
    static let marker = DispatchSpecificKey<Bool>()

    static func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }
}
