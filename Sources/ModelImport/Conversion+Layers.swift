import BitModel

extension Conversion {
    func outputDims(_ a: Activation, window: Window2D, channels: Int) -> [Int] {
        [1, channels, window.outputHeight(input: a.dims[2]) ?? 0, window.outputWidth(input: a.dims[3]) ?? 0]
    }

    /// Kernel, strides and explicit or auto padding of a Conv/pool node.
    func makeWindow(_ node: ONNXNode, kernel: [Int], input a: Activation, extraPads: [Int] = [0, 0, 0, 0]) throws -> Window2D {
        // Bounded before any arithmetic on them (the file format's limits), so none overflows.
        guard kernel.count == 2, kernel.allSatisfy({ (1...ModelLimits.maxKernelSize).contains($0) }) else {
            throw ImportError.node(node, "kernel \(kernel) is outside 1...\(ModelLimits.maxKernelSize)")
        }
        let strides = node.ints("strides") ?? [1, 1]
        guard strides.count == 2, strides.allSatisfy({ (1...ModelLimits.maxStride).contains($0) }) else { throw ImportError.node(node, "strides \(strides) are invalid") }
        var pads = node.ints("pads") ?? [0, 0, 0, 0]
        guard pads.count == 4, pads.allSatisfy({ (0...ModelLimits.maxKernelSize).contains($0) }) else { throw ImportError.node(node, "pads \(pads) are invalid") }
        switch node.string("auto_pad") ?? "NOTSET" {
        case "NOTSET", "": break
        case "VALID": pads = [0, 0, 0, 0]
        case let mode where mode.hasPrefix("SAME"):
            for axis in 0..<2 {
                let size = a.dims[2 + axis]
                let out = (size + strides[axis] - 1) / strides[axis]
                let total = max(0, (out - 1) * strides[axis] + kernel[axis] - size)
                let small = total / 2, large = total - small
                pads[axis] = mode == "SAME_UPPER" ? small : large
                pads[axis + 2] = mode == "SAME_UPPER" ? large : small
            }
        case let mode: throw ImportError.node(node, "auto_pad '\(mode)' is not supported")
        }
        // ONNX pads: [top, left, bottom, right] for 2-D.
        let window = Window2D(kernelH: kernel[0], kernelW: kernel[1], strideH: strides[0], strideW: strides[1],
                              padTop: pads[0] + extraPads[0], padLeft: pads[1] + extraPads[1],
                              padBottom: pads[2] + extraPads[2], padRight: pads[3] + extraPads[3])
        guard window.outputHeight(input: a.dims[2]) != nil, window.outputWidth(input: a.dims[3]) != nil else {
            throw ImportError.node(node, "a \(kernel) window with pads \(pads) does not fit input \(a.dims)")
        }
        guard [window.padTop, window.padBottom].allSatisfy({ $0 < kernel[0] }), [window.padLeft, window.padRight].allSatisfy({ $0 < kernel[1] }) else {
            throw ImportError.node(node, "padding \(pads) is not smaller than the kernel \(kernel)")
        }
        return window
    }

    /// A constant Pad of the spatial axes (in the tensor's ONNX view), absorbed by the next Conv.
    mutating func convertPad(_ node: ONNXNode) throws -> String {
        let mode = node.string("mode") ?? "constant"
        guard mode == "constant" else { throw ImportError.node(node, "pad mode '\(mode)' is not supported (constant only)") }
        let pads: [Int]
        var value = 0.0
        if graph.opset < 11 {
            pads = node.ints("pads") ?? []
            value = Double(node.float("value", default: 0))
            guard pads.allSatisfy({ abs($0) <= ModelLimits.maxKernelSize }) else {
                throw ImportError.node(node, "pads \(pads) are out of range")
            }
        } else {
            pads = try constant(1, of: node, role: "pads").integers("pads", of: node, limit: ModelLimits.maxKernelSize)
            if let c = try optionalConstant(2, of: node, role: "constant value") { value = c.values.first ?? 0 }
            if node.inputs.count > 3, !node.inputs[3].isEmpty { throw ImportError.node(node, "the axes input is not supported") }
        }
        let source = try input(0, of: node)
        guard let a = source.activation, a.isSpatial else {
            throw ImportError.node(node, "only padding of a 4-D activation is supported, the input is \(source.kindName)")
        }
        // ONNX axis order of the view: NCHW (top = pads[2]) or NHWC (top = pads[1]).
        let (h, w, c) = a.layout == .nchw ? (2, 3, 1) : (1, 2, 3)
        guard pads.count == 8, pads[0] == 0, pads[4] == 0, pads[c] == 0, pads[c + 4] == 0, pads.allSatisfy({ $0 >= 0 }) else {
            throw ImportError.node(node, "only non-negative spatial padding of a 4-D tensor is supported, got pads \(pads) for \(a.onnxDims)")
        }
        if case .padded = source { throw ImportError.node(node, "two Pads in a row are not supported") }
        try bind(node, .padded(source, pads: [pads[h], pads[w], pads[h + 4], pads[w + 4]], value: value))
        return "padding with \(value), absorbed by the next Conv"
    }

    mutating func convertConv(_ node: ONNXNode) throws -> String {
        var source = try input(0, of: node)
        var extraPads = [0, 0, 0, 0]
        var padValue = 0.0
        if case .padded(let inner, let pads, let value) = source {
            source = inner
            extraPads = pads
            padValue = value
        }
        let a: Activation
        let binaryInput: Bool
        switch source {
        case .real(let x): (a, binaryInput) = (x, false)
        case .sign(let x): (a, binaryInput) = (x, true)
        case .shiftedSign:
            guard padValue == 0 else { throw ImportError.node(node, "padding a shifted binarized input is not supported") }
            (a, binaryInput) = (try activation(0, of: node), false)
        case let other: throw ImportError.node(node, "input is \(other.kindName)")
        }
        guard a.isSpatial else { throw ImportError.node(node, "needs a 4-D input, got \(a.dims)") }
        guard a.layout == .nchw else {
            throw ImportError.node(node, "reads an NHWC-viewed tensor \(a.onnxDims) as NCHW; a Transpose(perm=[0,3,1,2]) before it would make it one")
        }
        let weights = try constant(1, of: node, role: "weights")
        guard weights.dims.count == 4 else { throw ImportError.node(node, "weights of shape \(weights.dims) are not 4-D") }
        let (outC, groupInC, kh, kw) = (weights.dims[0], weights.dims[1], weights.dims[2], weights.dims[3])
        let groups = node.int("group", default: 1)
        if let dilations = node.ints("dilations"), dilations.contains(where: { $0 != 1 }) {
            throw ImportError.node(node, "dilations \(dilations) are not supported")
        }
        guard groups >= 1, groups <= a.channels, groupInC * groups == a.channels, outC % groups == 0, outC > 0 else {
            throw ImportError.node(node, "weights \(weights.dims) with group \(groups) do not fit an input with \(a.channels) channels")
        }
        let window = try makeWindow(node, kernel: node.ints("kernel_shape") ?? [kh, kw], input: a, extraPads: extraPads)
        guard window.kernelH == kh, window.kernelW == kw else { throw ImportError.node(node, "kernel_shape disagrees with the weights \(weights.dims)") }
        var bias = [Double](repeating: 0, count: outC)
        if let b = try optionalConstant(2, of: node, role: "bias") {
            guard b.count == outC else { throw ImportError.node(node, "bias has \(b.count) values for \(outC) channels") }
            bias = b.values
        }
        // ONNX [O, I/g, kh, kw] -> engine [O, kh, kw, I/g]
        var transposed = [Double](repeating: 0, count: weights.count)
        for o in 0..<outC {
            for i in 0..<groupInC {
                for y in 0..<kh {
                    for x in 0..<kw {
                        transposed[((o * kh + y) * kw + x) * groupInC + i] = weights.values[((o * groupInC + i) * kh + y) * kw + x]
                    }
                }
            }
        }
        let dims = outputDims(a, window: window, channels: outC)
        if groups > 1 {
            guard padValue == 0 else { throw ImportError.node(node, "a grouped convolution of an input padded with \(padValue) is not supported") }
            let input = binaryInput ? signValues(of: a) : a
            let layer = GroupedConv2DLayer(inChannels: a.channels, outChannels: outC, groups: groups, window: window,
                                           weights: builder.addTensor(Tensor(shape: [outC, kh, kw, groupInC], floats: transposed.map { Float($0) })),
                                           bias: builder.addTensor(Tensor(shape: [outC], floats: bias.map { Float($0) })))
            let value = builder.append(.groupedConv2D(layer), inputs: [input.value], name: node.name)
            try bind(node, .real(Activation(value: value, dims: dims)))
            let kind = groups == a.channels && outC == groups ? "depthwise" : "grouped (\(groups) groups)"
            return "float \(kind) conv \(kh)x\(kw) \(a.channels)->\(outC) stride \(window.strideH)\(binaryInput ? " on binarized inputs" : "")"
        }
        if binaryInput {
            switch BinaryWeights.classify(transposed, rowLength: kh * kw * groupInC) {
            case .binary(let binary):
                let pad: BinaryPadValue
                switch padValue {
                case 0: pad = .zero
                case 1: pad = .plusOne
                case -1: pad = .minusOne
                default: throw ImportError.node(node, "padding a binarized input with \(padValue) is not supported (0, +1 or -1)")
                }
                let value = builder.binaryConv2D(bits(of: a), inChannels: a.channels, outChannels: outC, window: window, padValue: pad,
                                                 weights: binary.signs, multiplier: binary.alpha, bias: bias.map { Float($0) }, name: node.name)
                try bind(node, .real(Activation(value: value, dims: dims)))
                let scaled = binary.alpha.contains { $0 != 1 }
                return "binary conv \(kh)x\(kw) \(a.channels)->\(outC) stride \(window.strideH): binarized input and \(scaled ? "s_o * (+-1) weights (per-channel scale)" : "+-1 weights")\(bias.contains { $0 != 0 } ? " plus bias" : ""), \(pad.rawValue) padding"
            case .nearlyBinary(let row, let deviation):
                throw ImportError.node(node, "the weights of output channel \(row) look binary (+-s per channel) but their magnitudes differ by \(deviation) relative, more than float rounding; export the binarized weights exactly (e.g. alpha * sign(w)) or keep this layer's input real-valued")
            case .real:
                guard padValue == 0 else {
                    throw ImportError.node(node, "real-valued weights on a binarized input padded with \(padValue) are not supported")
                }
                let value = builder.conv2D(signValues(of: a).value, inChannels: a.channels, outChannels: outC, window: window,
                                           weights: transposed.map { Float($0) }, bias: bias.map { Float($0) }, name: node.name)
                try bind(node, .real(Activation(value: value, dims: dims)))
                return "float conv \(kh)x\(kw) \(a.channels)->\(outC) on binarized inputs (weights are not s_o * (+-1), so they stay full precision)"
            }
        }
        guard padValue == 0 else { throw ImportError.node(node, "padding a real-valued input with \(padValue) is not supported") }
        let value = builder.conv2D(a.value, inChannels: a.channels, outChannels: outC, window: window, weights: transposed.map { Float($0) },
                                   bias: bias.map { Float($0) }, name: node.name)
        try bind(node, .real(Activation(value: value, dims: dims)))
        return "float conv \(kh)x\(kw) \(a.channels)->\(outC) stride \(window.strideH) (real-valued input)"
    }

    mutating func convertDense(_ node: ONNXNode) throws -> String {
        let source = try input(0, of: node)
        let a: Activation
        let binaryInput: Bool
        switch source {
        case .real(let x): (a, binaryInput) = (x, false)
        case .sign(let x): (a, binaryInput) = (x, true)
        case .shiftedSign: (a, binaryInput) = (try activation(0, of: node), false)
        case let other: throw ImportError.node(node, "input is \(other.kindName)")
        }
        guard a.dims.count == 2 else { throw ImportError.node(node, "needs a [1, K] input (flatten first), got \(a.onnxDims)") }
        let k = a.dims[1]
        let b = try constant(1, of: node, role: "weights")
        guard b.dims.count == 2 else { throw ImportError.node(node, "weights of shape \(b.dims) are not 2-D") }
        let isGemm = node.opType == "Gemm"
        if isGemm && node.int("transA", default: 0) != 0 { throw ImportError.node(node, "transA=1 is not supported") }
        let transB = isGemm && node.int("transB", default: 0) != 0
        let n = transB ? b.dims[0] : b.dims[1]
        guard (transB ? b.dims[1] : b.dims[0]) == k else {
            throw ImportError.node(node, "weights \(b.dims)\(transB ? " (transposed)" : "") do not take \(k) inputs")
        }
        let alpha = isGemm ? Double(node.float("alpha", default: 1)) : 1
        let beta = isGemm ? Double(node.float("beta", default: 1)) : 1
        // Engine [N, K] with columns in engine feature order.
        var matrix = [Double](repeating: 0, count: n * k)
        for o in 0..<n {
            for e in 0..<k {
                let i = a.onnxIndex(ofEngineFeature: e)
                matrix[o * k + e] = alpha * (transB ? b.values[o * k + i] : b.values[i * n + o])
            }
        }
        var bias = [Double](repeating: 0, count: n)
        if isGemm, let c = try optionalInput(2, of: node) {
            guard case .constant(let constant) = c else { throw ImportError.node(node, "bias C must be a constant") }
            if constant.count == 1 {
                bias = [Double](repeating: beta * constant.values[0], count: n)
            } else if constant.count == n {
                bias = constant.values.map { beta * $0 }
            } else {
                throw ImportError.node(node, "bias C of shape \(constant.dims) does not broadcast to [1, \(n)]")
            }
        }
        let dims = [1, n]
        let permutedNote = a.flattenedFrom != nil ? " (columns permuted from NCHW to NHWC flatten order)" : ""
        if binaryInput {
            switch BinaryWeights.classify(matrix, rowLength: k) {
            case .binary(let binary):
                let value = builder.binaryDense(bits(of: a), inFeatures: k, outFeatures: n, weights: binary.signs,
                                                multiplier: binary.alpha, bias: bias.map { Float($0) }, name: node.name)
                try bind(node, .real(Activation(value: value, dims: dims)))
                return "binary dense \(k)->\(n): binarized input and \(binary.alpha.contains { $0 != 1 } ? "s_o * (+-1) weights (per-feature scale)" : "+-1 weights")\(bias.contains { $0 != 0 } ? " plus bias" : "")" + permutedNote
            case .nearlyBinary(let row, let deviation):
                throw ImportError.node(node, "the weights of output \(row) look binary (+-s per output) but their magnitudes differ by \(deviation) relative, more than float rounding; export the binarized weights exactly (e.g. alpha * sign(w)) or keep this layer's input real-valued")
            case .real:
                // Real-valued weights on binarized inputs (a float classifier): run in float.
                let value = builder.dense(signValues(of: a).value, inFeatures: k, outFeatures: n, weights: matrix.map { Float($0) },
                                          bias: bias.map { Float($0) }, name: node.name)
                try bind(node, .real(Activation(value: value, dims: dims)))
                return "float dense \(k)->\(n) on binarized inputs (weights are not s_o * (+-1), so they stay full precision)" + permutedNote
            }
        }
        let value = builder.dense(a.value, inFeatures: k, outFeatures: n, weights: matrix.map { Float($0) },
                                  bias: bias.map { Float($0) }, name: node.name)
        try bind(node, .real(Activation(value: value, dims: dims)))
        return "float dense \(k)->\(n)" + permutedNote
    }
}
