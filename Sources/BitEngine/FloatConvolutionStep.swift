import BitModel

/// Full-precision convolution (and dense, as 1x1 on a 1x1 image): im2col into a per-thread
/// block, an FMA GEMM micro-kernel against weights packed in 16-channel panels, then bias.
final class FloatConvolutionStep: PlannedStep {
    private let inputShape: ValueShape
    private let window: Window2D
    private let depth: Int
    private let channels: Int
    private let paddedChannels: Int
    private let weights: AlignedBuffer<Float>
    private let bias: AlignedBuffer<Float>
    private let zero: AlignedBuffer<Float>
    private let direct: Bool
    private let blockPixels: Int
    private let pixelBlocks: Int
    private let chunkChannels: Int
    private let channelChunks: Int

    override var kind: String { "conv2d" }

    /// `weights`: [O, kh, kw, I] floats; `bias`: O floats.
    init(label: String, input: ValueID, output: ValueID, inputShape: ValueShape, outputShape: ValueShape,
         window: Window2D, weights source: [Float], bias: [Float], threads: Int) {
        self.inputShape = inputShape
        self.window = window
        depth = window.kernelH * window.kernelW * inputShape.channels
        channels = outputShape.channels
        paddedChannels = (channels + 15) / 16 * 16
        let packed = AlignedBuffer<Float>(count: paddedChannels * depth)
        for o in 0..<channels {
            for k in 0..<depth {
                packed[((o / 16) * depth + k) * 16 + o % 16] = source[o * depth + k]
            }
        }
        weights = packed
        self.bias = AlignedBuffer(bias)
        zero = AlignedBuffer(count: inputShape.channels)
        direct = window.kernelH == 1 && window.kernelW == 1 && window.strideH == 1 && window.strideW == 1 && !window.hasPadding

        let pixels = outputShape.pixels
        blockPixels = max(6, min(240, 32_768 / max(depth * 4, 1)) / 6 * 6)
        pixelBlocks = (pixels + blockPixels - 1) / blockPixels
        let quanta = paddedChannels / 16
        let wantedChunks = pixelBlocks >= 2 * threads ? 1 : min(quanta, (2 * threads + pixelBlocks - 1) / pixelBlocks)
        chunkChannels = (quanta + wantedChunks - 1) / wantedChunks * 16
        channelChunks = (paddedChannels + chunkChannels - 1) / chunkChannels
        super.init(label: label, inputs: [input], output: output, outputShape: outputShape)
    }

    private var columnBytes: Int { direct ? 0 : (blockPixels * depth * 4 + 63) / 64 * 64 }
    override var scratchBytesPerThread: Int { columnBytes + blockPixels * chunkChannels * 4 }

    override func execute(_ context: ExecutionContext) {
        let input = UnsafePointer(context.floats(at: inputOffsets[0]))
        let output = context.floats(at: outputOffset)
        let pixels = outputShape.pixels
        context.pool.run(tasks: pixelBlocks * channelChunks) { task, thread in
            let block = task / channelChunks, chunk = task % channelChunks
            let first = block * blockPixels
            let range = first..<min(pixels, first + blockPixels)
            let c0 = chunk * chunkChannels, c1 = min(paddedChannels, c0 + chunkChannels)
            let scratch = context.scratch(thread: thread)
            let columns: UnsafePointer<Float>
            let lda: Int
            if direct {
                columns = input + first * inputShape.channels
                lda = inputShape.channels
            } else {
                let buffer = scratch.assumingMemoryBound(to: Float.self)
                im2col(input: input, inputWidth: inputShape.width, inputHeight: inputShape.height,
                       pixelStride: inputShape.channels, window: window, outputWidth: outputShape.width,
                       pixels: range, padding: zero.pointer, into: buffer)
                columns = UnsafePointer(buffer)
                lda = depth
            }
            let result = (scratch + columnBytes).assumingMemoryBound(to: Float.self)
            let ldc = c1 - c0
            context.kernels.sgemm(columns, lda: lda, rows: range.count, weights: weights.pointer + c0 * depth,
                                  depth: depth, channels: ldc, c: result, ldc: ldc)
            let end = min(c1, channels)
            for (row, pixel) in range.enumerated() {
                let out = output + pixel * channels
                let sums = result + row * ldc - c0
                for o in c0..<end { out[o] = sums[o] + bias[o] }
            }
        }
    }
}
