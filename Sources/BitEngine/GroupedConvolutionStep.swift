import BitModel

/// Full-precision grouped (and depthwise) convolution, by direct summation: QuickNet's
/// depthwise stem and blur-pool layers are a small share of its work, so a plain loop over
/// the window (vectorized by the compiler across a group's output channels) is enough and
/// keeps this independent of the GEMM kernels. Zero padding, any stride.
final class GroupedConvolutionStep: PlannedStep {
    private let inputShape: ValueShape
    private let window: Window2D
    private let groups: Int
    private let groupIn: Int
    private let groupOut: Int
    /// [O][kh][kw][I/G], with any folded per-channel scale applied.
    private let weights: [Float]
    private let bias: [Float]

    override var kind: String { groups == inputShape.channels && groupOut == 1 ? "depthwiseConv2d" : "groupedConv2d" }

    init(label: String, input: ValueID, output: ValueID, inputShape: ValueShape, outputShape: ValueShape,
         window: Window2D, groups: Int, weights: [Float], bias: [Float]) {
        self.inputShape = inputShape
        self.window = window
        self.groups = groups
        groupIn = inputShape.channels / groups
        groupOut = outputShape.channels / groups
        self.weights = weights
        self.bias = bias
        super.init(label: label, inputs: [input], output: output, outputShape: outputShape)
    }

    override func execute(_ context: ExecutionContext) {
        let input = context.floats(at: inputOffsets[0]), output = context.floats(at: outputOffset)
        let (inC, outC) = (inputShape.channels, outputShape.channels)
        let w = window
        let taps = w.kernelH * w.kernelW * groupIn
        weights.withUnsafeBufferPointer { kernel in
            bias.withUnsafeBufferPointer { bias in
                context.forEachPixelRange(outputShape.pixels, channels: outC * taps) { range in
                    for pixel in range {
                        let oy = pixel / outputShape.width, ox = pixel % outputShape.width
                        let out = output + pixel * outC
                        for o in 0..<outC { out[o] = bias[o] }
                        for ky in 0..<w.kernelH {
                            let iy = oy * w.strideH - w.padTop + ky
                            if iy < 0 || iy >= inputShape.height { continue }
                            for kx in 0..<w.kernelW {
                                let ix = ox * w.strideW - w.padLeft + kx
                                if ix < 0 || ix >= inputShape.width { continue }
                                let source = input + (iy * inputShape.width + ix) * inC
                                let tap = (ky * w.kernelW + kx) * groupIn
                                for g in 0..<groups {
                                    let x = source + g * groupIn
                                    for j in 0..<groupOut {
                                        let o = g * groupOut + j
                                        let row = kernel.baseAddress! + o * taps + tap
                                        var sum: Float = 0
                                        for i in 0..<groupIn { sum += x[i] * row[i] }
                                        out[o] += sum
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
