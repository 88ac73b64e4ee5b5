import BitModel
import CBitKernels
import Foundation

/// Contiguous pixel ranges for `threads` threads: about two per thread, none smaller than
/// about 16K values.
func pixelRanges(_ pixels: Int, channels: Int, threads: Int) -> [Range<Int>] {
    let (chunks, size) = partition(pixels, parts: threads * 2, minimum: max(1, 16_384 / max(channels, 1)))
    return (0..<chunks).compactMap { task in
        let start = task * size
        return start < pixels ? start..<min(pixels, start + size) : nil
    }
}

extension ExecutionContext {
    /// Runs `body` over contiguous pixel ranges, in parallel when there is enough work.
    func forEachPixelRange(_ pixels: Int, channels: Int, _ body: (Range<Int>) -> Void) {
        let ranges = pixelRanges(pixels, channels: channels, threads: pool.threadCount)
        pool.run(tasks: ranges.count) { task, _ in body(ranges[task]) }
    }
}

/// sign(x) -> packed bits, for binarized values no producer could emit directly.
final class BinarizeStep: PlannedStep {
    private let channels: Int
    override var kind: String { "binarize" }

    init(label: String, input: ValueID, output: ValueID, outputShape: ValueShape) {
        channels = outputShape.channels
        super.init(label: label, inputs: [input], output: output, outputShape: outputShape)
    }

    override func execute(_ context: ExecutionContext) {
        let input = context.floats(at: inputOffsets[0]), output = context.words(at: outputOffset)
        let words = outputShape.wordsPerPixel
        let isa = context.kernels.isa
        context.forEachPixelRange(outputShape.pixels, channels: channels) { range in
            bk_binarize(isa, input + range.lowerBound * channels, range.count, channels, output + range.lowerBound * words)
        }
    }
}

/// y = multiplier[c] * x + bias[c] (BatchNorm or scale that could not be folded).
final class ChannelAffineStep: PlannedStep {
    private let multiplier: [Float]
    private let bias: [Float]
    override var kind: String { "channelAffine" }

    init(label: String, input: ValueID, output: ValueID, outputShape: ValueShape, multiplier: [Float], bias: [Float]) {
        self.multiplier = multiplier
        self.bias = bias
        super.init(label: label, inputs: [input], output: output, outputShape: outputShape)
    }

    override func execute(_ context: ExecutionContext) {
        let input = context.floats(at: inputOffsets[0]), output = context.floats(at: outputOffset)
        let c = outputShape.channels
        multiplier.withUnsafeBufferPointer { m in
            bias.withUnsafeBufferPointer { b in
                context.forEachPixelRange(outputShape.pixels, channels: c) { range in
                    for p in range {
                        for i in 0..<c { output[p * c + i] = m[i] * input[p * c + i] + b[i] }
                    }
                }
            }
        }
    }
}

final class AddStep: PlannedStep {
    override var kind: String { "add" }

    override func execute(_ context: ExecutionContext) {
        let a = context.floats(at: inputOffsets[0]), b = context.floats(at: inputOffsets[1])
        let output = context.floats(at: outputOffset)
        let c = outputShape.channels
        context.forEachPixelRange(outputShape.pixels, channels: c) { range in
            for i in (range.lowerBound * c)..<(range.upperBound * c) { output[i] = a[i] + b[i] }
        }
    }
}

/// Pointwise activations: ReLU, PReLU (per-channel slope) and clip/hardtanh.
final class ActivationStep: PlannedStep {
    enum Function {
        case relu
        case sign
        case prelu(slope: [Float])
        case clip(min: Float, max: Float)
    }

    private let function: Function
    override var kind: String {
        switch function {
        case .relu: return "relu"
        case .sign: return "sign"
        case .prelu: return "prelu"
        case .clip: return "clip"
        }
    }

    init(label: String, input: ValueID, output: ValueID, outputShape: ValueShape, function: Function) {
        self.function = function
        super.init(label: label, inputs: [input], output: output, outputShape: outputShape)
    }

    override func execute(_ context: ExecutionContext) {
        let input = context.floats(at: inputOffsets[0]), output = context.floats(at: outputOffset)
        let c = outputShape.channels
        context.forEachPixelRange(outputShape.pixels, channels: c) { range in
            let elements = (range.lowerBound * c)..<(range.upperBound * c)
            switch function {
            case .relu:
                for i in elements { output[i] = max(input[i], 0) }
            case .sign:
                for i in elements { output[i] = input[i] >= 0 ? 1 : -1 }
            case .clip(let low, let high):
                // NaN stays NaN, as in ONNX Clip.
                for i in elements { let x = input[i]; output[i] = x < low ? low : (x > high ? high : x) }
            case .prelu(let slope):
                for p in range {
                    for i in 0..<c {
                        let x = input[p * c + i]
                        output[p * c + i] = x < 0 ? x * slope[i] : x
                    }
                }
            }
        }
    }
}

/// Copies a value unchanged: NHWC flatten is a reinterpretation of the same floats.
final class CopyStep: PlannedStep {
    override var kind: String { "flatten" }

    override func execute(_ context: ExecutionContext) {
        let input = context.floats(at: inputOffsets[0]), output = context.floats(at: outputOffset)
        output.update(from: input, count: outputShape.elementCount)
    }
}

/// Softmax over channels at every pixel, computed stably (max subtracted).
final class SoftmaxStep: PlannedStep {
    override var kind: String { "softmax" }

    override func execute(_ context: ExecutionContext) {
        let input = context.floats(at: inputOffsets[0]), output = context.floats(at: outputOffset)
        let c = outputShape.channels
        for p in 0..<outputShape.pixels {
            let x = input + p * c, y = output + p * c
            var largest = -Float.infinity
            for i in 0..<c { largest = max(largest, x[i]) }
            var sum: Float = 0
            for i in 0..<c { y[i] = exp(x[i] - largest); sum += y[i] }
            for i in 0..<c { y[i] /= sum }
        }
    }
}

/// Concatenation along channels.
final class ConcatStep: PlannedStep {
    private let channelCounts: [Int]
    override var kind: String { "concat" }

    init(label: String, inputs: [ValueID], channelCounts: [Int], output: ValueID, outputShape: ValueShape) {
        self.channelCounts = channelCounts
        super.init(label: label, inputs: inputs, output: output, outputShape: outputShape)
    }

    override func execute(_ context: ExecutionContext) {
        let output = context.floats(at: outputOffset)
        let total = outputShape.channels
        var offset = 0
        for (index, c) in channelCounts.enumerated() {
            let input = context.floats(at: inputOffsets[index])
            for p in 0..<outputShape.pixels {
                (output + p * total + offset).update(from: input + p * c, count: c)
            }
            offset += c
        }
    }
}
