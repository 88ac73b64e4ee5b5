import BitModel
import CBitKernels

/// A record of every native kernel call of one inference: what each kernel was built from
/// (its descriptor and parameters, as given to CBitKernels), the input it read, the output
/// this engine produced, and the tasks the work was cut into for a given thread count.
///
/// A replay on another architecture (Tests/KernelConformance/replay.c, under qemu-aarch64)
/// rebuilds each kernel from the record with its own micro-kernels and must reproduce the
/// outputs: bit for bit where they are packed bits, within float tolerance where they are
/// floats. It also counts each layer's instructions there.
///
/// File format (little-endian), version 1:
///
///     "BKTRACE1"  u32 version  u32 split threads  u32 record count
///     record:     u32 kind  u32 label bytes, label (UTF-8)
///                 u32 n, n x i32 descriptor fields (the C struct's fields in order)
///                 u32 m, m arrays: u32 element (1 u64, 2 f32, 3 i32), u64 count, payload
///                 u32 t, t x (i32 pixel_begin, pixel_end, channel_begin, channel_end)
///
/// Arrays per kind, in order:
///   1 binary conv:  weights (u64), multiplier, bias (f32, empty for bits), direction,
///                   threshold (i32, empty for floats), input (u64), residual (f32, maybe
///                   empty), output (u64 for bits, f32 otherwise)
///   2 float conv:   weights, bias, input, output (f32)
///   3 binarize:     input (f32), output (u64); descriptor: pixels, channels
///   4 max pool, 5 average pool: input, output (f32); descriptor: bk_pool_desc
///   6 global average pool: input, output (f32); descriptor: pixels, channels
public struct KernelTrace: Sendable {
    public enum Kind: UInt32, Sendable {
        case binaryConvolution = 1, floatConvolution, binarize, maxPool, averagePool, globalAveragePool
    }

    public enum Array: Sendable {
        case words([UInt64])
        case floats([Float])
        case ints([Int32])
    }

    public struct Record: Sendable {
        public var kind: Kind
        public var label: String
        public var descriptor: [Int32]
        public var arrays: [Array]
        public var tasks: [(pixels: Range<Int>, channels: Range<Int>)]
    }

    public var splitThreads: Int
    public var records: [Record]

    public func serialized() -> [UInt8] {
        var bytes: [UInt8] = Swift.Array("BKTRACE1".utf8)
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
        put(UInt32(1))
        put(UInt32(splitThreads))
        put(UInt32(records.count))
        for record in records {
            put(record.kind.rawValue)
            let label = Swift.Array(record.label.utf8)
            put(UInt32(label.count))
            bytes.append(contentsOf: label)
            put(UInt32(record.descriptor.count))
            record.descriptor.forEach { put($0) }
            put(UInt32(record.arrays.count))
            for array in record.arrays {
                switch array {
                case .words(let values): put(UInt32(1)); put(UInt64(values.count)); values.forEach { put($0) }
                case .floats(let values): put(UInt32(2)); put(UInt64(values.count)); values.forEach { put($0.bitPattern) }
                case .ints(let values): put(UInt32(3)); put(UInt64(values.count)); values.forEach { put($0) }
                }
            }
            put(UInt32(record.tasks.count))
            for task in record.tasks {
                put(Int32(task.pixels.lowerBound)); put(Int32(task.pixels.upperBound))
                put(Int32(task.channels.lowerBound)); put(Int32(task.channels.upperBound))
            }
        }
        return bytes
    }
}

extension InferenceSession {
    /// Runs the model once on `input`, recording every native kernel call (see
    /// `KernelTrace`), with the tasks each layer would be cut into on `splitThreads` threads.
    public func kernelTrace(input: [Float], splitThreads: Int) throws -> KernelTrace {
        var records: [KernelTrace.Record] = []
        try runTracing(input) { step, context in
            guard let traceable = step as? TraceableStep else {
                step.execute(context)
                return
            }
            let inputs = traceable.traceInputs(context)
            step.execute(context)
            records.append(traceable.traceRecord(inputs: inputs, output: traceable.traceOutput(context), threads: splitThreads))
        }
        return KernelTrace(splitThreads: splitThreads, records: records)
    }
}

/// A step that calls one native kernel and can describe that call.
protocol TraceableStep: PlannedStep {
    func traceInputs(_ context: ExecutionContext) -> [KernelTrace.Array]
    func traceOutput(_ context: ExecutionContext) -> KernelTrace.Array
    func traceRecord(inputs: [KernelTrace.Array], output: KernelTrace.Array, threads: Int) -> KernelTrace.Record
}

extension ExecutionContext {
    func floatArray(at offset: Int, count: Int) -> KernelTrace.Array {
        .floats(Array(UnsafeBufferPointer(start: floats(at: offset), count: count)))
    }

    func wordArray(at offset: Int, count: Int) -> KernelTrace.Array {
        .words(Array(UnsafeBufferPointer(start: words(at: offset), count: count)))
    }

    /// A value in the arena, as the trace stores it.
    func traceValue(at offset: Int, shape: ValueShape) -> KernelTrace.Array {
        shape.kind == .bits ? wordArray(at: offset, count: shape.pixels * shape.wordsPerPixel)
                            : floatArray(at: offset, count: shape.elementCount)
    }
}

private func wholeChannels(_ ranges: [Range<Int>], channels: Int) -> [(pixels: Range<Int>, channels: Range<Int>)] {
    ranges.map { ($0, 0..<channels) }
}

extension WorkSplit {
    var allTasks: [(pixels: Range<Int>, channels: Range<Int>)] { (0..<tasks).map { ranges(of: $0) } }
}

extension BinaryConvolutionStep: TraceableStep {
    func traceInputs(_ context: ExecutionContext) -> [KernelTrace.Array] {
        let d = descriptor
        let inputWords = Int(d.in_h * d.in_w) * ((Int(d.in_c) + 63) / 64)
        var arrays = [context.wordArray(at: inputOffsets[0], count: inputWords)]
        arrays.append(residual ? context.floatArray(at: inputOffsets[1], count: outputShape.elementCount) : .floats([]))
        return arrays
    }

    func traceOutput(_ context: ExecutionContext) -> KernelTrace.Array {
        context.traceValue(at: outputOffset, shape: outputShape)
    }

    func traceRecord(inputs: [KernelTrace.Array], output: KernelTrace.Array, threads: Int) -> KernelTrace.Record {
        let d = descriptor
        let fields = [d.in_h, d.in_w, d.in_c, d.out_h, d.out_w, d.out_c, d.kernel_h, d.kernel_w, d.stride_h, d.stride_w,
                      d.pad_top, d.pad_left, d.pad_value, d.output, d.residual]
        var arrays: [KernelTrace.Array] = [.words(weights.words)]
        switch epilogue {
        case .real(let multiplier, let bias, _): arrays += [.floats(multiplier), .floats(bias), .ints([]), .ints([])]
        case .sign(let direction, let threshold): arrays += [.floats([]), .floats([]), .ints(direction), .ints(threshold)]
        }
        arrays += inputs + [output]
        let split = WorkSplit(pixels: outputShape.pixels, channels: outputShape.channels, kernel: kernel.info, threads: threads)
        return KernelTrace.Record(kind: .binaryConvolution, label: label, descriptor: fields, arrays: arrays, tasks: split.allTasks)
    }
}

extension FloatConvolutionStep: TraceableStep {
    func traceInputs(_ context: ExecutionContext) -> [KernelTrace.Array] {
        [context.floatArray(at: inputOffsets[0], count: Int(descriptor.in_h * descriptor.in_w * descriptor.in_c))]
    }

    func traceOutput(_ context: ExecutionContext) -> KernelTrace.Array {
        context.traceValue(at: outputOffset, shape: outputShape)
    }

    func traceRecord(inputs: [KernelTrace.Array], output: KernelTrace.Array, threads: Int) -> KernelTrace.Record {
        let d = descriptor
        let depth = Int(d.kernel_h * d.kernel_w * d.in_c)
        var weights = [Float](repeating: 0, count: Int(d.out_c) * depth), bias = [Float](repeating: 0, count: Int(d.out_c))
        bk_fconv_copy_parameters(kernel.pointer, &weights, &bias)
        let fields = [d.in_h, d.in_w, d.in_c, d.out_h, d.out_w, d.out_c, d.kernel_h, d.kernel_w, d.stride_h, d.stride_w,
                      d.pad_top, d.pad_left]
        let split = WorkSplit(pixels: outputShape.pixels, channels: outputShape.channels, kernel: kernel.info, threads: threads)
        return KernelTrace.Record(kind: .floatConvolution, label: label, descriptor: fields,
                                  arrays: [.floats(weights), .floats(bias)] + inputs + [output], tasks: split.allTasks)
    }
}

extension BinarizeStep: TraceableStep {
    func traceInputs(_ context: ExecutionContext) -> [KernelTrace.Array] {
        [context.floatArray(at: inputOffsets[0], count: outputShape.elementCount)]
    }

    func traceOutput(_ context: ExecutionContext) -> KernelTrace.Array {
        context.traceValue(at: outputOffset, shape: outputShape)
    }

    func traceRecord(inputs: [KernelTrace.Array], output: KernelTrace.Array, threads: Int) -> KernelTrace.Record {
        let channels = outputShape.channels
        return KernelTrace.Record(kind: .binarize, label: label, descriptor: [Int32(outputShape.pixels), Int32(channels)],
                                  arrays: inputs + [output],
                                  tasks: wholeChannels(pixelRanges(outputShape.pixels, channels: channels, threads: threads), channels: channels))
    }
}

extension PoolStep: TraceableStep {
    func traceInputs(_ context: ExecutionContext) -> [KernelTrace.Array] {
        [context.floatArray(at: inputOffsets[0], count: Int(descriptor.in_h * descriptor.in_w * descriptor.channels))]
    }

    func traceOutput(_ context: ExecutionContext) -> KernelTrace.Array {
        context.traceValue(at: outputOffset, shape: outputShape)
    }

    func traceRecord(inputs: [KernelTrace.Array], output: KernelTrace.Array, threads: Int) -> KernelTrace.Record {
        let d = descriptor
        let fields = [d.in_h, d.in_w, d.channels, d.out_h, d.out_w, d.kernel_h, d.kernel_w, d.stride_h, d.stride_w,
                      d.pad_top, d.pad_left, d.count_includes_padding]
        let taps = Int(d.kernel_h * d.kernel_w)
        let ranges = pixelRanges(outputShape.pixels, channels: outputShape.channels * taps, threads: threads)
        return KernelTrace.Record(kind: isMax ? .maxPool : .averagePool, label: label, descriptor: fields,
                                  arrays: inputs + [output], tasks: wholeChannels(ranges, channels: outputShape.channels))
    }
}

extension GlobalAveragePoolStep: TraceableStep {
    func traceInputs(_ context: ExecutionContext) -> [KernelTrace.Array] {
        [context.floatArray(at: inputOffsets[0], count: inputShape.elementCount)]
    }

    func traceOutput(_ context: ExecutionContext) -> KernelTrace.Array {
        context.traceValue(at: outputOffset, shape: outputShape)
    }

    func traceRecord(inputs: [KernelTrace.Array], output: KernelTrace.Array, threads: Int) -> KernelTrace.Record {
        KernelTrace.Record(kind: .globalAveragePool, label: label,
                           descriptor: [Int32(inputShape.pixels), Int32(inputShape.channels)], arrays: inputs + [output],
                           tasks: channelRanges(threads: threads).map { (0..<inputShape.pixels, $0) })
    }
}
