import BitModel
import CBitKernels
import Foundation

public struct InferenceError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A model ready to run: validated, fused, weights repacked for the selected kernels,
/// one preallocated arena. `run` allocates nothing and gives the same result for the same
/// input whatever the thread count. Runs are serialized; use one session per concurrent
/// caller.
public final class InferenceSession: @unchecked Sendable {
    public let model: Model
    public let threadCount: Int
    public let kernels: KernelSet

    private let plan: ExecutionPlan
    private let arena: AlignedBuffer<UInt8>
    private let scratch: AlignedBuffer<UInt8>
    private let pool: ThreadPool
    private let lock = NSLock()
    private let inputShape: ValueShape
    private let outputShape: ValueShape

    /// - Parameters:
    ///   - threads: worker threads including the caller's (1 = single-threaded).
    ///   - kernels: a kernel family; default: the fastest this CPU supports, or the one
    ///     `BITFLEET_KERNELS` names.
    public init(model: Model, threads: Int = 1, kernels: KernelSet? = nil) throws {
        let selected = try kernels ?? KernelSet.preferred(environment: ProcessInfo.processInfo.environment)
        try selected.checkAvailable()
        guard (1...256).contains(threads) else {
            throw InferenceError("thread count \(threads) is outside 1...256")
        }
        self.model = model
        self.threadCount = threads
        self.kernels = selected
        plan = try Planner.plan(model, kernels: selected, threads: threads)
        arena = AlignedBuffer(count: plan.arenaBytes)
        scratch = AlignedBuffer(count: plan.scratchBytesPerThread * threads)
        pool = ThreadPool(threadCount: threads)
        inputShape = plan.shapes[0]
        outputShape = plan.shapes[plan.output]
    }

    public convenience init(contentsOf url: URL, threads: Int = 1, kernels: KernelSet? = nil) throws {
        try self.init(model: try ModelReader.read(contentsOf: url), threads: threads, kernels: kernels)
    }

    public var inputElementCount: Int { model.metadata.input.elementCount }
    public var outputElementCount: Int { model.metadata.output.elementCount }
    /// Bytes of activations and scratch preallocated for a run.
    public var workingMemoryBytes: Int { plan.arenaBytes + plan.scratchBytesPerThread * threadCount }

    /// The executed steps after fusion: label (the layers it covers), kind, output shape,
    /// and the micro-kernel chosen for it (conv and dense steps).
    public var steps: [(label: String, kind: String, output: String, kernel: String?)] {
        plan.steps.map { ($0.label, $0.kind, plan.shapes[$0.output].description, $0.kernelName) }
    }

    public func run(_ input: [Float]) throws -> [Float] {
        var output = [Float](repeating: 0, count: outputElementCount)
        try input.withUnsafeBufferPointer { inputBuffer in
            try output.withUnsafeMutableBufferPointer { outputBuffer in
                try run(input: inputBuffer, output: outputBuffer)
            }
        }
        return output
    }

    /// Runs the model on `input` (the model's declared input layout) into `output`.
    public func run(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>) throws {
        guard output.count == outputElementCount else {
            throw InferenceError("output buffer has \(output.count) values, the model produces \(outputElementCount)")
        }
        try execute(input: input) { step, context in step.execute(context) } finish: { context in
            Layout.fromNHWC(context.floats(at: plan.outputOffset), layout: model.metadata.output.layout,
                            shape: outputShape, into: output.baseAddress!, kernels: kernels)
        }
    }

    /// Runs every step through `perform` (which must execute it), for kernel traces.
    func runTracing(_ input: [Float], _ perform: (PlannedStep, ExecutionContext) throws -> Void) throws {
        try input.withUnsafeBufferPointer { buffer in
            try execute(input: buffer, perform) { _ in }
        }
    }

    private func execute(input: UnsafeBufferPointer<Float>, _ perform: (PlannedStep, ExecutionContext) throws -> Void,
                         finish: (ExecutionContext) -> Void) throws {
        guard input.count == inputElementCount else {
            throw InferenceError("input has \(input.count) values, the model takes \(inputElementCount) (\(model.metadata.input.shape) \(model.metadata.input.layout.rawValue))")
        }
        lock.lock()
        defer { lock.unlock() }
        let base = UnsafeMutableRawPointer(arena.pointer)
        let context = ExecutionContext(arena: base, scratch: UnsafeMutableRawPointer(scratch.pointer),
                                       scratchStride: plan.scratchBytesPerThread, pool: pool, kernels: kernels)
        Layout.toNHWC(input.baseAddress!, layout: model.metadata.input.layout, shape: inputShape,
                      into: context.floats(at: plan.inputOffset), kernels: kernels)
        for step in plan.steps { try perform(step, context) }
        finish(context)
    }
}

/// Conversions between the caller's layout and the engine's NHWC (a transpose of
/// [channels][pixels] for NCHW).
enum Layout {
    static func toNHWC(_ source: UnsafePointer<Float>, layout: TensorLayout, shape: ValueShape,
                       into destination: UnsafeMutablePointer<Float>, kernels: KernelSet) {
        let (pixels, c) = (shape.height * shape.width, shape.channels)
        if layout != .nchw || c == 1 || pixels == 1 {
            destination.update(from: source, count: shape.elementCount)
        } else {
            bk_transpose(kernels.isa, source, c, pixels, destination)
        }
    }

    static func fromNHWC(_ source: UnsafePointer<Float>, layout: TensorLayout, shape: ValueShape,
                         into destination: UnsafeMutablePointer<Float>, kernels: KernelSet) {
        let (pixels, c) = (shape.height * shape.width, shape.channels)
        if layout != .nchw || c == 1 || pixels == 1 {
            destination.update(from: source, count: shape.elementCount)
        } else {
            bk_transpose(kernels.isa, source, pixels, c, destination)
        }
    }
}
