import BitModel
import CBitKernels

/// A layer kernel CBitKernels refused to build (it validates shapes again and can run out
/// of memory).
struct NativeKernelError: Error, CustomStringConvertible {
    var description: String
}

/// Calls a C constructor that reports failure as -1 plus a message.
func makeNativeKernel(_ layer: String, _ create: (UnsafeMutablePointer<CChar>, Int) -> Int32) throws {
    var message = [CChar](repeating: 0, count: 256)
    let status = message.withUnsafeMutableBufferPointer { create($0.baseAddress!, $0.count) }
    guard status == 0 else {
        let text = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw NativeKernelError(description: "layer \(layer): \(text)")
    }
}

/// What a native kernel reports about itself: the micro-kernel it chose and how it wants
/// its work cut.
struct NativeKernelInfo {
    let name: String
    let tilePixels: Int
    let blockPixels: Int
    let channelQuantum: Int
    let scratchBytes: Int

    init(_ info: bk_kernel_info) {
        name = String(cString: info.kernel_name)
        tilePixels = Int(info.tile_pixels)
        blockPixels = Int(info.block_pixels)
        channelQuantum = Int(info.channel_quantum)
        scratchBytes = info.scratch_bytes
    }
}

/// Cuts a layer's output (pixels x channels) into tasks for the thread pool: pixel blocks
/// of at most the kernel's block size, as many as a multiple of the thread count when
/// there are enough pixels (so dynamic claiming ends with every thread busy until the
/// last block), and channel chunks when the image is too small to feed every thread.
struct WorkSplit {
    let pixels: Int
    let channels: Int
    let blockPixels: Int
    let pixelBlocks: Int
    let chunkChannels: Int
    let channelChunks: Int

    init(pixels: Int, channels: Int, kernel: NativeKernelInfo, threads: Int) {
        self.pixels = pixels
        self.channels = channels
        let tile = max(kernel.tilePixels, 1)
        var blocks = (pixels + kernel.blockPixels - 1) / kernel.blockPixels
        if threads > 1 && blocks >= threads {
            let rounded = (blocks + threads - 1) / threads * threads
            if rounded * tile <= pixels { blocks = rounded }
        }
        blockPixels = min(kernel.blockPixels, ((pixels + blocks - 1) / blocks + tile - 1) / tile * tile)
        pixelBlocks = (pixels + blockPixels - 1) / blockPixels
        let quantum = kernel.channelQuantum
        let quanta = (channels + quantum - 1) / quantum
        let wanted = threads == 1 || pixelBlocks >= 2 * threads ? 1 : min(quanta, (2 * threads + pixelBlocks - 1) / pixelBlocks)
        chunkChannels = (quanta + wanted - 1) / wanted * quantum
        channelChunks = (channels + chunkChannels - 1) / chunkChannels
    }

    var tasks: Int { pixelBlocks * channelChunks }

    func ranges(of task: Int) -> (pixels: Range<Int>, channels: Range<Int>) {
        let block = task / channelChunks, chunk = task % channelChunks
        let p0 = block * blockPixels, c0 = chunk * chunkChannels
        return (p0..<min(pixels, p0 + blockPixels), c0..<min(channels, c0 + chunkChannels))
    }
}

/// Owns a CBitKernels binary convolution.
final class NativeBinaryConvolution: @unchecked Sendable {
    let pointer: OpaquePointer
    let info: NativeKernelInfo

    init(label: String, descriptor: bk_bconv_desc, parameters: bk_bconv_params, kernels: KernelSet) throws {
        var created: OpaquePointer?
        var descriptor = descriptor, parameters = parameters
        try makeNativeKernel(label) { bk_bconv_create(&descriptor, &parameters, kernels.isa, &created, $0, $1) }
        pointer = created!
        var raw = bk_kernel_info()
        bk_bconv_info(pointer, &raw)
        info = NativeKernelInfo(raw)
    }

    deinit { bk_bconv_destroy(pointer) }
}

/// Owns a CBitKernels float convolution.
final class NativeFloatConvolution: @unchecked Sendable {
    let pointer: OpaquePointer
    let info: NativeKernelInfo

    init(label: String, descriptor: bk_fconv_desc, weights: [Float], bias: [Float], kernels: KernelSet) throws {
        var created: OpaquePointer?
        var descriptor = descriptor
        try makeNativeKernel(label) { message, size in
            weights.withUnsafeBufferPointer { w in
                bias.withUnsafeBufferPointer { b in
                    bk_fconv_create(&descriptor, w.baseAddress, b.baseAddress, kernels.isa, &created, message, size)
                }
            }
        }
        pointer = created!
        var raw = bk_kernel_info()
        bk_fconv_info(pointer, &raw)
        info = NativeKernelInfo(raw)
    }

    deinit { bk_fconv_destroy(pointer) }
}
