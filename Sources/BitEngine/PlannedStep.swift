import BitModel

/// What a step sees while it runs: the activation arena, per-thread scratch memory, the
/// thread pool and the kernel family.
struct ExecutionContext {
    let arena: UnsafeMutableRawPointer
    let scratch: UnsafeMutableRawPointer
    let scratchStride: Int
    let pool: ThreadPool
    let kernels: KernelSet

    @inline(__always) func floats(at offset: Int) -> UnsafeMutablePointer<Float> {
        (arena + offset).assumingMemoryBound(to: Float.self)
    }

    @inline(__always) func words(at offset: Int) -> UnsafeMutablePointer<UInt64> {
        (arena + offset).assumingMemoryBound(to: UInt64.self)
    }

    @inline(__always) func scratch(thread: Int) -> UnsafeMutableRawPointer {
        scratch + thread * scratchStride
    }
}

/// One executable step of a plan: a layer, or several layers fused into one. Inputs and
/// the output are values of the model graph; the planner binds them to arena offsets.
class PlannedStep {
    /// Names of the model layers this step covers, e.g. "conv3+bn3+sign4".
    let label: String
    let inputs: [ValueID]
    let output: ValueID
    let outputShape: ValueShape
    var inputOffsets: [Int] = []
    var outputOffset = 0

    init(label: String, inputs: [ValueID], output: ValueID, outputShape: ValueShape) {
        self.label = label
        self.inputs = inputs
        self.output = output
        self.outputShape = outputShape
    }

    /// Bytes of scratch each thread needs while this step runs.
    var scratchBytesPerThread: Int { 0 }

    /// Human-readable kind, for plan dumps.
    var kind: String { "step" }

    /// The micro-kernel CBitKernels chose for this step, if it runs one.
    var kernelName: String? { nil }

    func execute(_ context: ExecutionContext) {
        preconditionFailure("\(type(of: self)) must override execute")
    }
}

/// Splits `count` items into about `parts` contiguous ranges of at least `minimum` items.
@inline(__always)
func partition(_ count: Int, parts: Int, minimum: Int) -> (chunks: Int, size: Int) {
    let chunks = max(1, min(parts, count / max(minimum, 1)))
    return (chunks, (count + chunks - 1) / chunks)
}
