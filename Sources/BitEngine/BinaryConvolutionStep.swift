import BitModel

/// Binary convolution (and binary dense, as a 1x1 convolution of a 1x1 image): im2col of
/// packed input bits, XOR/popcount GEMM against packed weights, then an epilogue that
/// turns popcounts into exact +-1 dot products and either applies the per-channel affine
/// map (optionally plus a fused residual) or compares against per-channel thresholds and
/// emits packed bits for the next binary layer.
final class BinaryConvolutionStep: PlannedStep {
    enum Output {
        /// y = multiplier * dot + bias (+ residual)
        case real(multiplier: [Float], bias: [Float], residual: Bool)
        /// bit = direction * dot >= threshold (the affine map followed by sign, exactly)
        case sign(direction: [Int32], threshold: [Int32])
    }

    private let inputShape: ValueShape
    private let window: Window2D
    private let padValue: BinaryPadValue
    private let inputWords: Int
    private let depth: Int
    private let channels: Int
    private let paddedChannels: Int
    private let weights: AlignedBuffer<UInt64>
    private let padding: AlignedBuffer<UInt64>
    /// popcount of each channel's weights at each tap, [tap][channel], for zero padding.
    private let tapPopcounts: [Int32]
    private let validity: TapValidity
    private let epilogue: Output
    private let multiplier: AlignedBuffer<Float>
    private let bias: AlignedBuffer<Float>
    private let direction: [Int32]
    private let threshold: [Int32]
    private let direct: Bool
    private let blockPixels: Int
    private let chunkChannels: Int
    private let channelChunks: Int
    private let pixelBlocks: Int
    private let fullDepthBits: Int32

    override var kind: String { outputShape.kind == .bits ? "binaryConv2d->bits" : "binaryConv2d" }

    init(label: String, input: ValueID, residual: ValueID?, output: ValueID,
         inputShape: ValueShape, outputShape: ValueShape, window: Window2D, padValue: BinaryPadValue,
         weights packed: Tensor, epilogue: Output, threads: Int) {
        self.inputShape = inputShape
        self.window = window
        self.padValue = padValue
        self.epilogue = epilogue
        inputWords = inputShape.wordsPerPixel
        let taps = window.kernelH * window.kernelW
        depth = taps * inputWords
        channels = outputShape.channels
        paddedChannels = (channels + 7) / 8 * 8
        fullDepthBits = Int32(taps * inputShape.channels)

        let source = packed.words
        let repacked = AlignedBuffer<UInt64>(count: paddedChannels * depth)
        var popcounts = [Int32](repeating: 0, count: taps * channels)
        for o in 0..<channels {
            for k in 0..<depth {
                let word = source[o * depth + k]
                repacked[((o / 8) * depth + k) * 8 + o % 8] = word
                popcounts[(k / inputWords) * channels + o] += Int32(word.nonzeroBitCount)
            }
        }
        weights = repacked
        tapPopcounts = popcounts

        padding = AlignedBuffer<UInt64>(count: inputWords)
        if padValue == .plusOne {
            for w in 0..<inputWords { padding[w] = ~0 }
            padding[inputWords - 1] = BitPacking.lastWordMask(rowLength: inputShape.channels)
        }
        validity = TapValidity(window: window, inputHeight: inputShape.height, inputWidth: inputShape.width,
                               outputHeight: outputShape.height, outputWidth: outputShape.width)
        switch epilogue {
        case .real(let m, let b, _):
            multiplier = AlignedBuffer(m)
            bias = AlignedBuffer(b)
            direction = []
            threshold = []
        case .sign(let d, let t):
            multiplier = AlignedBuffer(count: 0)
            bias = AlignedBuffer(count: 0)
            direction = d
            threshold = t
        }
        direct = window.kernelH == 1 && window.kernelW == 1 && window.strideH == 1 && window.strideW == 1 && !window.hasPadding

        // Blocks whose im2col rows stay within about 32 KB (L1), split further by channels
        // when the image is too small to keep every thread busy.
        let pixels = outputShape.pixels
        blockPixels = max(8, min(256, 32_768 / max(depth * 8, 1)))
        pixelBlocks = (pixels + blockPixels - 1) / blockPixels
        let channelQuantum = outputShape.kind == .bits ? 64 : 16
        let quanta = (paddedChannels + channelQuantum - 1) / channelQuantum
        let wantedChunks = pixelBlocks >= 2 * threads ? 1 : min(quanta, (2 * threads + pixelBlocks - 1) / pixelBlocks)
        chunkChannels = (quanta + wantedChunks - 1) / wantedChunks * channelQuantum
        channelChunks = (paddedChannels + chunkChannels - 1) / chunkChannels

        super.init(label: label, inputs: residual.map { [input, $0] } ?? [input], output: output, outputShape: outputShape)
    }

    private var columnBytes: Int { direct ? 0 : (blockPixels * depth * 8 + 63) / 64 * 64 }
    private var countBytes: Int { (blockPixels * chunkChannels * 4 + 63) / 64 * 64 }
    override var scratchBytesPerThread: Int { columnBytes + countBytes + chunkChannels * 4 }

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
        let pixels = outputShape.pixels
        context.pool.run(tasks: pixelBlocks * channelChunks) { task, thread in
            let block = task / channelChunks, chunk = task % channelChunks
            let first = block * blockPixels
            let range = first..<min(pixels, first + blockPixels)
            let c0 = chunk * chunkChannels
            let c1 = min(paddedChannels, c0 + chunkChannels)
            let scratch = context.scratch(thread: thread)
            let columns: UnsafePointer<UInt64>
            let lda: Int
            if direct {
                columns = input + first * inputWords
                lda = inputWords
            } else {
                let buffer = scratch.assumingMemoryBound(to: UInt64.self)
                im2col(input: input, inputWidth: inputShape.width, inputHeight: inputShape.height,
                       pixelStride: inputWords, window: window, outputWidth: outputShape.width,
                       pixels: range, padding: padding.pointer, into: buffer)
                columns = UnsafePointer(buffer)
                lda = depth
            }
            let counts = (scratch + columnBytes).assumingMemoryBound(to: Int32.self)
            context.kernels.xorPopcountGemm(columns, lda: lda, rows: range.count,
                                            weights: weights.pointer + (c0 / 8) * depth * 8, depth: depth,
                                            channels: c1 - c0, counts: counts, ldc: c1 - c0)
            let correction = (scratch + columnBytes + countBytes).assumingMemoryBound(to: Int32.self)
            finish(context, pixels: range, channels: c0..<min(c1, channels), counts: counts, ldc: c1 - c0,
                   correction: correction)
        }
    }

    private func finish(_ context: ExecutionContext, pixels: Range<Int>, channels range: Range<Int>,
                        counts: UnsafeMutablePointer<Int32>, ldc: Int, correction: UnsafeMutablePointer<Int32>) {
        let zeroPadding = padValue == .zero && window.hasPadding
        let width = outputShape.width
        let taps = window.kernelH * window.kernelW
        for (row, pixel) in pixels.enumerated() {
            let rowMask = validity.rows[pixel / width], columnMask = validity.columns[pixel % width]
            let rowCounts = counts + row * ldc
            var valid = fullDepthBits
            if zeroPadding && (rowMask != validity.fullRows || columnMask != validity.fullColumns) {
                // Padded taps XORed zero words with the weights: remove their popcount and
                // count only the valid taps in K, which is what a zero-padded float conv sums.
                valid = Int32(rowMask.nonzeroBitCount * columnMask.nonzeroBitCount * inputShape.channels)
                for i in 0..<range.count { correction[i] = 0 }
                for tap in 0..<taps {
                    let ky = tap / window.kernelW, kx = tap % window.kernelW
                    if rowMask >> UInt64(ky) & 1 == 1 && columnMask >> UInt64(kx) & 1 == 1 { continue }
                    let popcounts = tap * channels + range.lowerBound
                    for i in 0..<range.count { correction[i] += tapPopcounts[popcounts + i] }
                }
                for i in 0..<range.count { rowCounts[i] -= correction[i] }
            }
            switch epilogue {
            case .real(_, _, let residual):
                let out = context.floats(at: outputOffset) + pixel * channels
                let m = multiplier.pointer, b = bias.pointer
                if residual {
                    let shortcut = context.floats(at: inputOffsets[1]) + pixel * channels
                    for o in range {
                        let dot = valid - 2 * rowCounts[o - range.lowerBound]
                        out[o] = m[o] * Float(dot) + b[o] + shortcut[o]
                    }
                } else {
                    for o in range {
                        let dot = valid - 2 * rowCounts[o - range.lowerBound]
                        out[o] = m[o] * Float(dot) + b[o]
                    }
                }
            case .sign:
                let outWords = outputShape.wordsPerPixel
                let out = context.words(at: outputOffset) + pixel * outWords
                var word = range.lowerBound / 64
                while word * 64 < range.upperBound {
                    var bits: UInt64 = 0
                    let start = max(word * 64, range.lowerBound), end = min(word * 64 + 64, range.upperBound)
                    for o in start..<end {
                        let dot = valid - 2 * rowCounts[o - range.lowerBound]
                        if direction[o] * dot >= threshold[o] { bits |= 1 << UInt64(o - word * 64) }
                    }
                    out[word] = bits
                    word += 1
                }
            }
        }
    }
}
