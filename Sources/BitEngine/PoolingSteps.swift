import BitModel
import CBitKernels

/// Max or average pooling over a window. Max ignores padded positions; average divides by
/// the window's valid count, or the full window size when `countIncludesPadding`.
final class PoolStep: PlannedStep {
    let descriptor: bk_pool_desc
    let isMax: Bool
    override var kind: String { isMax ? "maxPool" : "averagePool" }

    init(label: String, input: ValueID, output: ValueID, inputShape: ValueShape, outputShape: ValueShape, pool: Pool2DLayer) {
        let w = pool.window
        descriptor = bk_pool_desc(
            in_h: Int32(inputShape.height), in_w: Int32(inputShape.width), channels: Int32(inputShape.channels),
            out_h: Int32(outputShape.height), out_w: Int32(outputShape.width),
            kernel_h: Int32(w.kernelH), kernel_w: Int32(w.kernelW), stride_h: Int32(w.strideH), stride_w: Int32(w.strideW),
            pad_top: Int32(w.padTop), pad_left: Int32(w.padLeft), count_includes_padding: pool.countIncludesPadding ? 1 : 0)
        isMax = pool.kind == .max
        super.init(label: label, inputs: [input], output: output, outputShape: outputShape)
    }

    override func execute(_ context: ExecutionContext) {
        let input = UnsafePointer(context.floats(at: inputOffsets[0])), output = context.floats(at: outputOffset)
        let isa = context.kernels.isa, isMax = self.isMax
        var descriptor = self.descriptor
        let taps = Int(descriptor.kernel_h * descriptor.kernel_w)
        withUnsafePointer(to: &descriptor) { d in
            context.forEachPixelRange(outputShape.pixels, channels: outputShape.channels * taps) { range in
                if isMax {
                    bk_max_pool(isa, d, input, output, Int32(range.lowerBound), Int32(range.upperBound))
                } else {
                    bk_average_pool(isa, d, input, output, Int32(range.lowerBound), Int32(range.upperBound))
                }
            }
        }
    }
}

/// Mean over all pixels per channel, split over threads by channels.
final class GlobalAveragePoolStep: PlannedStep {
    let inputShape: ValueShape
    override var kind: String { "globalAveragePool" }

    init(label: String, input: ValueID, output: ValueID, inputShape: ValueShape, outputShape: ValueShape) {
        self.inputShape = inputShape
        super.init(label: label, inputs: [input], output: output, outputShape: outputShape)
    }

    override func execute(_ context: ExecutionContext) {
        let input = UnsafePointer(context.floats(at: inputOffsets[0])), output = context.floats(at: outputOffset)
        let isa = context.kernels.isa
        let pixels = inputShape.pixels, channels = inputShape.channels
        let ranges = channelRanges(threads: context.pool.threadCount)
        context.pool.run(tasks: ranges.count) { task, _ in
            bk_global_average_pool(isa, input, pixels, channels, output, ranges[task].lowerBound, ranges[task].upperBound)
        }
    }

    /// One channel range per thread, whole cache lines each, so threads never share one.
    func channelRanges(threads: Int) -> [Range<Int>] {
        let pixels = inputShape.pixels, channels = inputShape.channels
        let (chunks, size) = partition(channels, parts: threads, minimum: max(16, 65_536 / max(pixels, 1)))
        let aligned = (size + 15) / 16 * 16
        return (0..<chunks).compactMap { task in
            let start = task * aligned
            return start < channels ? start..<min(channels, start + aligned) : nil
        }
    }
}
