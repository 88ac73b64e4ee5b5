import BitModel
import CBitKernels

/// Binary convolution (and binary dense, as a 1x1 convolution of a 1x1 image) of packed
/// input bits, with its output transform fused: the per-channel affine map (optionally
/// plus a residual) for a real-valued output, or per-channel thresholds that emit packed
/// bits for the next binary layer. CBitKernels picks the micro-kernel for this shape and
/// CPU, packs the weights for it, and precomputes the zero-padding correction per border
/// pattern; this step only cuts the output into tasks.
final class BinaryConvolutionStep: PlannedStep {
    enum Output {
        /// y = multiplier * dot + bias (+ residual)
        case real(multiplier: [Float], bias: [Float], residual: Bool)
        /// bit = direction * dot >= threshold (the affine map followed by sign, exactly)
        case sign(direction: [Int32], threshold: [Int32])
    }

    let kernel: NativeBinaryConvolution
    let split: WorkSplit
    let residual: Bool
    // What the kernel was made from, for kernel traces (KernelTrace.swift): the model's own
    // tensor (no copy) and the per-channel output transform.
    let descriptor: bk_bconv_desc
    let weights: Tensor
    let epilogue: Output

    override var kind: String { outputShape.kind == .bits ? "binaryConv2d->bits" : "binaryConv2d" }
    override var kernelName: String? { kernel.info.name }
    override var scratchBytesPerThread: Int { kernel.info.scratchBytes }

    init(label: String, input: ValueID, residual: ValueID?, output: ValueID,
         inputShape: ValueShape, outputShape: ValueShape, window: Window2D, padValue: BinaryPadValue,
         weights packed: Tensor, epilogue: Output, kernels: KernelSet, threads: Int) throws {
        var descriptor = bk_bconv_desc(
            in_h: Int32(inputShape.height), in_w: Int32(inputShape.width), in_c: Int32(inputShape.channels),
            out_h: Int32(outputShape.height), out_w: Int32(outputShape.width), out_c: Int32(outputShape.channels),
            kernel_h: Int32(window.kernelH), kernel_w: Int32(window.kernelW),
            stride_h: Int32(window.strideH), stride_w: Int32(window.strideW),
            pad_top: Int32(window.padTop), pad_left: Int32(window.padLeft),
            pad_value: Int32(padValue.native.rawValue), output: 0, residual: 0)
        let words = packed.words
        switch epilogue {
        case .real(let multiplier, let bias, let hasResidual):
            descriptor.output = Int32(BK_OUTPUT_FLOAT.rawValue)
            descriptor.residual = hasResidual ? 1 : 0
            kernel = try words.withUnsafeBufferPointer { w in
                try multiplier.withUnsafeBufferPointer { m in
                    try bias.withUnsafeBufferPointer { b in
                        try NativeBinaryConvolution(
                            label: label, descriptor: descriptor,
                            parameters: bk_bconv_params(weights: w.baseAddress, multiplier: m.baseAddress, bias: b.baseAddress,
                                                        direction: nil, threshold: nil),
                            kernels: kernels)
                    }
                }
            }
        case .sign(let direction, let threshold):
            descriptor.output = Int32(BK_OUTPUT_BITS.rawValue)
            kernel = try words.withUnsafeBufferPointer { w in
                try direction.withUnsafeBufferPointer { d in
                    try threshold.withUnsafeBufferPointer { t in
                        try NativeBinaryConvolution(
                            label: label, descriptor: descriptor,
                            parameters: bk_bconv_params(weights: w.baseAddress, multiplier: nil, bias: nil,
                                                        direction: d.baseAddress, threshold: t.baseAddress),
                            kernels: kernels)
                    }
                }
            }
        }
        self.residual = residual != nil
        self.descriptor = descriptor
        self.weights = packed
        self.epilogue = epilogue
        split = WorkSplit(pixels: outputShape.pixels, channels: outputShape.channels, kernel: kernel.info, threads: threads)
        super.init(label: label, inputs: residual.map { [input, $0] } ?? [input], output: output, outputShape: outputShape)
    }

    /// Thresholds equivalent to `multiplier * dot + bias >= 0` for every integer dot in
    /// [-maxDot, maxDot], found by evaluating that float expression, so fusing never flips
    /// a bit relative to the unfused graph.
    static func thresholds(multiplier: [Float], bias: [Float], maxDot: Int) -> (direction: [Int32], threshold: [Int32]) {
        var direction = [Int32](repeating: 1, count: multiplier.count)
        var threshold = [Int32](repeating: 0, count: multiplier.count)
        let low = -maxDot - 1, high = maxDot + 1
        for o in multiplier.indices {
            let m = multiplier[o], b = bias[o]
            func fires(_ dot: Int) -> Bool { m * Float(dot) + b >= 0 }
            if m.isNaN || b.isNaN {
                threshold[o] = Int32.max
            } else if m == 0 {
                threshold[o] = b >= 0 ? Int32.min : Int32.max
            } else if m > 0 {
                // smallest d with fires(d); fires is monotone non-decreasing in d
                var d = Int(max(Double(low), min(Double(high), (-Double(b) / Double(m)).rounded(.up))))
                while d > low && fires(d - 1) { d -= 1 }
                while d < high && !fires(d) { d += 1 }
                threshold[o] = Int32(d)
            } else {
                // largest d with fires(d): bit = dot <= d, i.e. -dot >= -d
                var d = Int(max(Double(low), min(Double(high), (-Double(b) / Double(m)).rounded(.down))))
                while d < high && fires(d + 1) { d += 1 }
                while d > low && !fires(d) { d -= 1 }
                direction[o] = -1
                threshold[o] = Int32(-d)
            }
        }
        return (direction, threshold)
    }

    override func execute(_ context: ExecutionContext) {
        let input = UnsafePointer(context.words(at: inputOffsets[0]))
        let shortcut = residual ? UnsafePointer(context.floats(at: inputOffsets[1])) : nil
        let output = UnsafeMutableRawPointer(context.arena + outputOffset)
        let kernel = self.kernel.pointer, split = self.split
        context.pool.run(tasks: split.tasks) { task, thread in
            let (pixels, channels) = split.ranges(of: task)
            bk_bconv_run(kernel, input, shortcut, output, Int32(pixels.lowerBound), Int32(pixels.upperBound),
                         Int32(channels.lowerBound), Int32(channels.upperBound), context.scratch(thread: thread))
        }
    }
}

extension BinaryPadValue {
    var native: bk_pad {
        switch self {
        case .zero: return BK_PAD_ZERO
        case .plusOne: return BK_PAD_PLUS_ONE
        case .minusOne: return BK_PAD_MINUS_ONE
        }
    }
}
