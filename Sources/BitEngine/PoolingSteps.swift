import BitModel

/// Max or average pooling over a window. Max ignores padded positions; average divides by
/// the window's valid count, or the full window size when `countIncludesPadding`.
final class PoolStep: PlannedStep {
    private let inputShape: ValueShape
    private let pool: Pool2DLayer
    override var kind: String { pool.kind == .max ? "maxPool" : "averagePool" }

    init(label: String, input: ValueID, output: ValueID, inputShape: ValueShape, outputShape: ValueShape, pool: Pool2DLayer) {
        self.inputShape = inputShape
        self.pool = pool
        super.init(label: label, inputs: [input], output: output, outputShape: outputShape)
    }

    override func execute(_ context: ExecutionContext) {
        let input = context.floats(at: inputOffsets[0]), output = context.floats(at: outputOffset)
        let c = outputShape.channels
        let w = pool.window
        let isMax = pool.kind == .max
        context.forEachPixelRange(outputShape.pixels, channels: c * w.kernelH * w.kernelW) { range in
            for pixel in range {
                let oy = pixel / outputShape.width, ox = pixel % outputShape.width
                let y0 = oy * w.strideH - w.padTop, x0 = ox * w.strideW - w.padLeft
                let out = output + pixel * c
                for i in 0..<c { out[i] = isMax ? -Float.infinity : 0 }
                var valid = 0
                for ky in 0..<w.kernelH {
                    let iy = y0 + ky
                    if iy < 0 || iy >= inputShape.height { continue }
                    for kx in 0..<w.kernelW {
                        let ix = x0 + kx
                        if ix < 0 || ix >= inputShape.width { continue }
                        valid += 1
                        let source = input + (iy * inputShape.width + ix) * c
                        if isMax {
                            for i in 0..<c { out[i] = max(out[i], source[i]) }
                        } else {
                            for i in 0..<c { out[i] += source[i] }
                        }
                    }
                }
                if !isMax {
                    let divisor = Float(pool.countIncludesPadding ? w.kernelH * w.kernelW : max(valid, 1))
                    for i in 0..<c { out[i] /= divisor }
                }
            }
        }
    }
}

final class GlobalAveragePoolStep: PlannedStep {
    private let inputShape: ValueShape
    override var kind: String { "globalAveragePool" }

    init(label: String, input: ValueID, output: ValueID, inputShape: ValueShape, outputShape: ValueShape) {
        self.inputShape = inputShape
        super.init(label: label, inputs: [input], output: output, outputShape: outputShape)
    }

    override func execute(_ context: ExecutionContext) {
        let input = context.floats(at: inputOffsets[0]), output = context.floats(at: outputOffset)
        let c = inputShape.channels
        for i in 0..<c { output[i] = 0 }
        for p in 0..<inputShape.pixels {
            let source = input + p * c
            for i in 0..<c { output[i] += source[i] }
        }
        let scale = Float(inputShape.pixels)
        for i in 0..<c { output[i] /= scale }
    }
}
