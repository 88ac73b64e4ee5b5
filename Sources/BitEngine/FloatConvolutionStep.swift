import BitModel
import CBitKernels

/// Full-precision convolution (and dense, as 1x1 on a 1x1 image) with its bias: im2col
/// and a register-blocked FMA GEMM in CBitKernels, which packs the weights for the
/// micro-kernel it chose.
final class FloatConvolutionStep: PlannedStep {
    let kernel: NativeFloatConvolution
    let split: WorkSplit
    let descriptor: bk_fconv_desc

    override var kind: String { "conv2d" }
    override var kernelName: String? { kernel.info.name }
    override var scratchBytesPerThread: Int { kernel.info.scratchBytes }

    /// `weights`: [O, kh, kw, I] floats; `bias`: O floats.
    init(label: String, input: ValueID, output: ValueID, inputShape: ValueShape, outputShape: ValueShape,
         window: Window2D, weights: [Float], bias: [Float], kernels: KernelSet, threads: Int) throws {
        let descriptor = bk_fconv_desc(
            in_h: Int32(inputShape.height), in_w: Int32(inputShape.width), in_c: Int32(inputShape.channels),
            out_h: Int32(outputShape.height), out_w: Int32(outputShape.width), out_c: Int32(outputShape.channels),
            kernel_h: Int32(window.kernelH), kernel_w: Int32(window.kernelW),
            stride_h: Int32(window.strideH), stride_w: Int32(window.strideW),
            pad_top: Int32(window.padTop), pad_left: Int32(window.padLeft))
        kernel = try NativeFloatConvolution(label: label, descriptor: descriptor, weights: weights, bias: bias, kernels: kernels)
        self.descriptor = descriptor
        split = WorkSplit(pixels: outputShape.pixels, channels: outputShape.channels, kernel: kernel.info, threads: threads)
        super.init(label: label, inputs: [input], output: output, outputShape: outputShape)
    }

    override func execute(_ context: ExecutionContext) {
        let input = UnsafePointer(context.floats(at: inputOffsets[0]))
        let output = context.floats(at: outputOffset)
        let kernel = self.kernel.pointer, split = self.split
        context.pool.run(tasks: split.tasks) { task, thread in
            let (pixels, channels) = split.ranges(of: task)
            bk_fconv_run(kernel, input, output, Int32(pixels.lowerBound), Int32(pixels.upperBound),
                         Int32(channels.lowerBound), Int32(channels.upperBound), context.scratch(thread: thread))
        }
    }
}
