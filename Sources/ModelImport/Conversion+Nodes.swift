import BitModel

extension Conversion {
    // One case per operator keeps the mapping readable in one place.
    // swiftlint:disable:next cyclomatic_complexity function_body_length
    mutating func convert(_ node: ONNXNode) throws -> String {
        switch node.opType {
        case "Identity", "Dropout":
            if node.opType == "Dropout", node.outputs.count > 1, !node.outputs[1].isEmpty {
                symbols[node.outputs[1]] = nil
            }
            try bind(node, try input(0, of: node))
            return "dropped identity (inference no-op)"

        case "Cast":
            let to = node.int("to", default: 1)
            let source = try input(0, of: node)
            guard [1, 10, 11, 16].contains(to) else {
                throw ImportError.node(node, "Cast of \(source.kindName) to data type \(to) is not supported: the engine's activations are float")
            }
            if case .comparison = source {
                throw ImportError.node(node, "a comparison cast to float (0/1 values) is not supported; binarize with Where(x >= t, 1, -1) or Sign")
            }
            try bind(node, source)
            return "dropped identity (Cast of a float activation to float)"

        case "Sign":
            return try convertSign(node)

        case "GreaterOrEqual", "Less", "Greater", "LessOrEqual":
            return try convertComparison(node)

        case "Where":
            guard case .comparison(let a, let nonNegative, let tie) = try input(0, of: node) else {
                throw ImportError.node(node, "only Where(x >= t, 1, -1) style binarization is supported (the condition must compare an activation with a constant)")
            }
            let whenTrue = try constant(1, of: node, role: "value if true"), whenFalse = try constant(2, of: node, role: "value if false")
            let positive: Double = nonNegative ? 1 : -1
            guard whenTrue.values.allSatisfy({ $0 == positive }), whenFalse.values.allSatisfy({ $0 == -positive }) else {
                throw ImportError.node(node, "Where must select +1/-1 to be a binarization")
            }
            try bind(node, .sign(a))
            return "binarize with per-channel threshold (x >= t ? +1 : -1)" + (tie.map { "; \($0)" } ?? "")

        case "Conv":
            return try convertConv(node)

        case "Gemm", "MatMul":
            return try convertDense(node)

        case "BatchNormalization":
            let a = try activation(0, of: node)
            if node.int("training_mode", default: 0) != 0 {
                throw ImportError.node(node, "training_mode=1 is not an inference graph")
            }
            guard !(a.isSpatial && a.layout == .nhwc) else {
                throw ImportError.node(node, "normalizes axis 1 of an NHWC-viewed tensor \(a.onnxDims) (its height); not supported")
            }
            let scale = try constant(1, of: node, role: "scale"), shift = try constant(2, of: node, role: "bias")
            let mean = try constant(3, of: node, role: "mean"), variance = try constant(4, of: node, role: "variance")
            let epsilon = Double(node.float("epsilon", default: 1e-5))
            let c = a.channels
            for (role, t) in [("scale", scale), ("bias", shift), ("mean", mean), ("variance", variance)] where t.count != c {
                throw ImportError.node(node, "\(role) has \(t.count) values for \(c) channels")
            }
            var multiplier = [Double](repeating: 0, count: c), bias = [Double](repeating: 0, count: c)
            for i in 0..<c {
                multiplier[i] = scale.values[i] / (variance.values[i] + epsilon).squareRoot()
                bias[i] = shift.values[i] - mean.values[i] * multiplier[i]
            }
            try bind(node, .real(affine(a, multiplier: multiplier, bias: bias, name: node.name)))
            return "BatchNorm as a per-channel affine map (folded into the previous layer where possible)"

        case "Mul", "Add", "Sub", "Div":
            return try convertArithmetic(node)

        case "Neg":
            let a = try activation(0, of: node)
            let ones = [Double](repeating: -1, count: a.channels), zeros = [Double](repeating: 0, count: a.channels)
            try bind(node, .real(affine(a, multiplier: ones, bias: zeros, name: node.name)))
            return "negation as an affine map (folded where possible)"

        case "Relu":
            let a = try activation(0, of: node)
            try bind(node, real(builder.append(.relu, inputs: [a.value], name: node.name), like: a))
            return "float op: relu"

        case "PRelu", "LeakyRelu":
            let a = try activation(0, of: node)
            let slope: [Double]
            if node.opType == "LeakyRelu" {
                slope = [Double](repeating: Double(node.float("alpha", default: 0.01)), count: a.channels)
            } else {
                slope = try perChannel(try constant(1, of: node, role: "slope"), for: a, node: node)
            }
            let value = builder.prelu(a.value, slope: permuted(slope, for: a).map { Float($0) }, name: node.name)
            try bind(node, real(value, like: a))
            return "float op: prelu (per-channel slope)"

        case "Clip":
            let a = try activation(0, of: node)
            var low = -Float.infinity, high = Float.infinity
            if graph.opset < 11 {
                low = node.float("min", default: low)
                high = node.float("max", default: high)
            } else {
                if let c = try optionalConstant(1, of: node, role: "min") { low = Float(c.values.first ?? -.infinity) }
                if let c = try optionalConstant(2, of: node, role: "max") { high = Float(c.values.first ?? .infinity) }
            }
            guard !low.isNaN, !high.isNaN, low <= high else { throw ImportError.node(node, "clip range [\(low), \(high)] is empty") }
            let value = builder.append(.clip(ClipLayer(min: low, max: high)), inputs: [a.value], name: node.name)
            clipSources[value] = (a, low, high)
            try bind(node, real(value, like: a))
            return "float op: clip [\(low), \(high)] (dropped if only a Sign reads it)"

        case "MaxPool", "AveragePool":
            let a = try spatial(0, of: node)
            if node.int("ceil_mode", default: 0) != 0 {
                throw ImportError.node(node, "ceil_mode=1 is not supported")
            }
            if let dilations = node.ints("dilations"), dilations.contains(where: { $0 != 1 }) {
                throw ImportError.node(node, "dilations \(dilations) are not supported")
            }
            guard let kernel = node.ints("kernel_shape"), kernel.count == 2 else {
                throw ImportError.node(node, "needs a 2-D kernel_shape")
            }
            let window = try makeWindow(node, kernel: kernel, input: a)
            let pool = Pool2DLayer(kind: node.opType == "MaxPool" ? .max : .average, window: window,
                                   countIncludesPadding: node.int("count_include_pad", default: 0) != 0)
            let value = builder.append(.pool2D(pool), inputs: [a.value], name: node.name)
            try bind(node, .real(Activation(value: value, dims: outputDims(a, window: window, channels: a.channels))))
            return "float op: \(pool.kind.rawValue) pool \(kernel[0])x\(kernel[1]) stride \(window.strideH)"

        case "GlobalAveragePool":
            let a = try spatial(0, of: node)
            let value = builder.append(.globalAveragePool, inputs: [a.value], name: node.name)
            try bind(node, .real(Activation(value: value, dims: [1, a.channels, 1, 1])))
            return "float op: global average pool"

        case "ReduceMean":
            return try convertReduceMean(node)

        case "Flatten", "Reshape", "Squeeze", "Unsqueeze":
            return try convertReshape(node)

        case "Transpose":
            return try convertTranspose(node)

        case "Concat":
            let axis = node.int("axis", default: 1)
            guard !node.inputs.isEmpty else { throw ImportError.node(node, "has no inputs") }
            var parts: [Activation] = []
            for index in node.inputs.indices { parts.append(try activation(index, of: node)) }
            let first = parts[0]
            let rank = first.onnxDims.count
            let normalized = axis < 0 ? axis + rank : axis
            guard normalized == first.channelAxis else {
                throw ImportError.node(node, "only channel concatenation is supported (axis \(first.channelAxis) of \(first.onnxDims)), got axis \(axis)")
            }
            guard parts.allSatisfy({ $0.flattenedFrom == nil && $0.dims.count == first.dims.count && Array($0.dims.dropFirst(2)) == Array(first.dims.dropFirst(2))
                && ($0.layout == first.layout || !$0.isSpatial) }) else {
                throw ImportError.node(node, "inputs must have equal spatial sizes and layouts: \(parts.map(\.onnxDims))")
            }
            let value = builder.append(.concat, inputs: parts.map(\.value), name: node.name)
            var dims = first.dims
            dims[1] = parts.reduce(0) { $0 + $1.channels }
            try bind(node, .real(Activation(value: value, dims: dims, layout: first.layout)))
            return "float op: concat of \(parts.count) along channels"

        case "Softmax", "LogSoftmax":
            let a = try activation(0, of: node)
            let axis = node.int("axis", default: graph.opset >= 13 ? -1 : 1)
            let rank = a.onnxDims.count
            let normalized = axis < 0 ? axis + rank : axis
            let overChannels = graph.opset >= 13 ? normalized == a.channelAxis
                : (normalized == 1 && (rank == 2 || a.dims[2] * a.dims[3] == 1))
            guard overChannels, a.flattenedFrom == nil else {
                throw ImportError.node(node, "\(node.opType) over axis \(axis) of \(a.onnxDims) is not supported (only over channels/features)")
            }
            let operation: LayerOperation = node.opType == "Softmax" ? .softmax : .logSoftmax
            try bind(node, real(builder.append(operation, inputs: [a.value], name: node.name), like: a))
            return "float op: \(node.opType == "Softmax" ? "softmax" : "log-softmax") over channels"

        case "Pad":
            return try convertPad(node)

        default:
            throw ImportError.node(node, "operator \(node.opType) is not supported on activations (\(try describeInputs(node))): the engine has no layer for it, so running it would need a new one (docs/MODEL_FORMAT.md), and it is not a constant computation the converter could fold; supported on activations: \(ONNXConverter.supportedOperators.joined(separator: ", ")); folded when all inputs are constant: \(ConstantFolder.foldableOperators.sorted().joined(separator: ", "))")
        }
    }

    func describeInputs(_ node: ONNXNode) throws -> String {
        node.inputs.enumerated().map { index, name in
            guard !name.isEmpty else { return "input \(index) omitted" }
            return "input \(index) is " + (symbols[name]?.kindName ?? "missing")
        }.joined(separator: ", ")
    }

    mutating func spatial(_ index: Int, of node: ONNXNode) throws -> Activation {
        let a = try activation(index, of: node)
        guard a.isSpatial else { throw ImportError.node(node, "needs a 4-D [1, C, H, W] input, got \(a.dims)") }
        guard a.layout == .nchw else {
            throw ImportError.node(node, "reads an NHWC-viewed tensor \(a.onnxDims) as NCHW; a Transpose(perm=[0,3,1,2]) before it would make it one")
        }
        return a
    }

    // MARK: - Binarization

    mutating func convertSign(_ node: ONNXNode) throws -> String {
        switch try input(0, of: node) {
        case .real(let a):
            if let clip = clipSources[a.value] {
                if clip.low < 0 && clip.high > 0 {
                    try bind(node, .sign(clip.source))
                    return "binarize, fused into the binary layers that read it (the Clip [\(clip.low), \(clip.high)] before it keeps every sign, so it is skipped)"
                }
                if clip.low == 0 || clip.high == 0 {
                    throw ImportError.node(node, "Sign(Clip(x, \(clip.low), \(clip.high))) is 0 for a whole range of x; a 1-bit engine cannot represent 0")
                }
            }
            try bind(node, .sign(a))
            return "binarize (x >= 0 is +1, ONNX Sign(0) = 0 taken as +1), fused into the binary layers that read it"
        case .sign(let a):
            try bind(node, .sign(a))
            return "binarize of a binarized value: unchanged"
        case .shiftedSign(let a, let offsets):
            guard offsets.allSatisfy({ abs($0) < 1 }) else {
                throw ImportError.node(node, "Sign(Sign(x) + c) with |c| >= 1 is constant; not a binarization")
            }
            try bind(node, .sign(a))
            let tie = offsets.allSatisfy { $0 > 0 } ? "x = 0 gives +1 as in the engine" : "x = 0 gives -1 in ONNX, +1 in the engine"
            return "binarize: Sign(Sign(x) + c) with |c| < 1 is sign(x) (Larq's ste_sign; \(tie))"
        case let other:
            throw ImportError.node(node, "cannot binarize \(other.kindName)")
        }
    }

    /// `x >= t`, `x < t`, `x > t`, `x <= t` with a per-channel constant t, waiting for Where.
    mutating func convertComparison(_ node: ONNXNode) throws -> String {
        var op = node.opType
        var activationIndex = 0, thresholdIndex = 1
        if case .constant = try input(0, of: node) {
            // t < x is x > t, and so on.
            (activationIndex, thresholdIndex) = (1, 0)
            op = ["GreaterOrEqual": "LessOrEqual", "LessOrEqual": "GreaterOrEqual", "Less": "Greater", "Greater": "Less"][op]!
        }
        let a = try activation(activationIndex, of: node)
        let threshold = try perChannel(try constant(thresholdIndex, of: node, role: "comparison threshold"), for: a, node: node)
        let shifted = threshold.allSatisfy { $0 == 0 } ? a
            : affine(a, multiplier: [Double](repeating: 1, count: threshold.count), bias: threshold.map { -$0 }, name: node.name)
        let tie = "x == t gives the other value in ONNX; the engine counts it as x >= t"
        switch op {
        case "GreaterOrEqual": try bind(node, .comparison(shifted, nonNegative: true, tie: nil))
        case "Less": try bind(node, .comparison(shifted, nonNegative: false, tie: nil))
        case "Greater": try bind(node, .comparison(shifted, nonNegative: true, tie: tie))
        default: try bind(node, .comparison(shifted, nonNegative: false, tie: tie))
        }
        let described = threshold.allSatisfy { $0 == 0 } ? "0" : "per-channel thresholds (an affine map x - t)"
        return "comparison with \(described), awaiting Where"
    }

    // MARK: - Arithmetic

    mutating func convertArithmetic(_ node: ONNXNode) throws -> String {
        let lhs = try input(0, of: node), rhs = try input(1, of: node)
        if node.opType == "Sub", let readers = plan.unprovenSTE[node.name] {
            throw ImportError.node(node, "looks like the a - b of a straight-through estimator a - b + b, but b is also read by \(readers), so it cannot be dropped; export the inference form (e.g. torch.sign instead of the STE)")
        }
        // sign(x) + c, sign(x) - c, c + sign(x): Larq's ste_sign is Sign(Sign(x) + 0.1).
        if node.opType == "Add" || node.opType == "Sub" {
            switch (lhs, rhs) {
            case (.sign(let a), .constant(let c)):
                let values = try perChannel(c, for: a, node: node)
                try bind(node, .shiftedSign(a, offsets: node.opType == "Sub" ? values.map { -$0 } : values))
                return "binarized value plus a constant, awaiting Sign"
            case (.constant(let c), .sign(let a)) where node.opType == "Add":
                try bind(node, .shiftedSign(a, offsets: try perChannel(c, for: a, node: node)))
                return "binarized value plus a constant, awaiting Sign"
            default:
                break
            }
        }
        switch (lhs, rhs) {
        case (.real(let a), .real(let b)):
            guard node.opType == "Add" else {
                throw ImportError.node(node, "\(node.opType) of two activations is not supported (only Add); if this is a training-time idiom, export the inference form")
            }
            guard a.onnxDims == b.onnxDims, a.flattenedFrom == nil, b.flattenedFrom == nil, a.layout == b.layout || !a.isSpatial else {
                throw ImportError.node(node, "adds activations of shapes \(a.onnxDims) and \(b.onnxDims); broadcasting is not supported")
            }
            let value = builder.append(.add, inputs: [a.value, b.value], name: node.name)
            try bind(node, real(value, like: a))
            return "float op: add (a shortcut; fused into the binary conv's epilogue where possible)"
        case (.real, .constant), (.constant, .real), (.sign, .constant), (.constant, .sign), (.shiftedSign, .constant), (.constant, .shiftedSign):
            let constantFirst: Bool = { if case .constant = lhs { return true } else { return false } }()
            let a = try activation(constantFirst ? 1 : 0, of: node)
            guard case .constant(let c) = constantFirst ? lhs : rhs else { preconditionFailure() }
            let values = try perChannel(c, for: a, node: node)
            let multiplier: [Double], bias: [Double]
            let ones = [Double](repeating: 1, count: values.count), zeros = [Double](repeating: 0, count: values.count)
            switch (node.opType, constantFirst) {
            case ("Mul", _): (multiplier, bias) = (values, zeros)
            case ("Add", _): (multiplier, bias) = (ones, values)
            case ("Sub", false): (multiplier, bias) = (ones, values.map { -$0 })
            case ("Sub", true): (multiplier, bias) = (ones.map { -$0 }, values)
            case ("Div", false): (multiplier, bias) = (values.map { 1 / $0 }, zeros)
            default: throw ImportError.node(node, "dividing a constant by an activation is not supported")
            }
            try bind(node, .real(affine(a, multiplier: multiplier, bias: bias, name: node.name)))
            return "\(node.opType) by a per-channel constant as an affine map (folded where possible)"
        default:
            throw ImportError.node(node, "\(node.opType) of \(lhs.kindName) and \(rhs.kindName) is not supported")
        }
    }
}
