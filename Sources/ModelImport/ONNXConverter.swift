import BitModel
import Foundation

/// Converts ONNX models of binary neural networks to BitFleet models.
///
/// BNN patterns are recognised structurally: a `Sign` (or `Where(x >= 0, 1, -1)`) feeding
/// a `Conv`, `Gemm` or `MatMul` whose constant weights are +-alpha per output channel
/// (+-1 initializers, `Sign(constant)`, or a positive scale times either, XNOR-Net style)
/// becomes a binary layer; BatchNormalization and Mul/Add/Sub/Div by per-channel constants
/// become affine maps that are folded into the preceding layer. Everything else maps to
/// the engine's float ops, or fails naming the node and listing what is supported.
public enum ONNXConverter {
    public static let supportedOperators = [
        "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Constant", "Conv", "Div", "Dropout",
        "Flatten", "Gemm", "GlobalAveragePool", "GreaterOrEqual", "Identity", "LeakyRelu", "Less", "MatMul",
        "MaxPool", "Mul", "PRelu", "Pad", "Relu", "Reshape", "Sign", "Softmax", "Sub", "Where",
    ]

    /// Upper bound on the values all folded constants of one conversion may hold (512 MiB
    /// of doubles; a ResNet-18 sized BNN folds about 11 M).
    static let maxFoldedElements = 1 << 26

    public static func convert(contentsOf url: URL, options: ConversionOptions = ConversionOptions()) throws -> ConversionResult {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw ImportError(url.path, "cannot read the file: \(error.localizedDescription)")
        }
        var named = options
        if named.name == nil { named.name = url.deletingPathExtension().lastPathComponent }
        return try convert(data: data, options: named)
    }

    public static func convert(data: Data, options: ConversionOptions = ConversionOptions()) throws -> ConversionResult {
        let graph = try ONNXGraph(data: data)
        var conversion = Conversion(graph: graph)
        try conversion.run()
        let output = try conversion.outputActivation()

        let inputDims = graph.input.dims
        let metadata = ModelMetadata(
            name: options.name ?? "model", version: options.version, description: options.description,
            producer: "bitfleet-convert 1 (onnx opset \(graph.opset)\(graph.producer.isEmpty ? "" : ", from \(graph.producer)"))",
            input: TensorSpec(name: graph.input.name, shape: inputDims, layout: inputDims.count == 4 ? .nchw : .nc),
            output: TensorSpec(name: graph.output, shape: output.dims, layout: output.dims.count == 4 ? .nchw : .nc),
            preprocessing: options.preprocessing, labels: options.labels, properties: options.properties)
        var model = conversion.builder.build(metadata: metadata, output: output.value)
        model = try GraphRewriter.optimize(model)
        do {
            try model.validate()
        } catch let error as ModelFormatError {
            throw ImportError("converted model", error.description)
        }
        var notes: [String] = []
        if graph.input.symbolicBatch { notes.append("the input's batch dimension is symbolic; the model runs with batch 1") }
        return ConversionResult(model: model, explanation: conversion.explanation, notes: notes)
    }
}

/// The state of one conversion: ONNX names bound to symbols, the engine graph built so far.
struct Conversion {
    let graph: ONNXGraph
    var builder = ModelBuilder()
    var symbols: [String: Symbol] = [:]
    var bitsOf: [ValueID: ValueID] = [:]
    var signsOf: [ValueID: ValueID] = [:]
    var explanation: [NodeExplanation] = []
    /// Elements of all constants made by folding so far (see `folded`).
    var foldedElements = 0

    init(graph: ONNXGraph) {
        self.graph = graph
        for (name, constant) in graph.constants { symbols[name] = .constant(constant) }
        symbols[graph.input.name] = .real(Activation(value: builder.input, dims: graph.input.dims))
    }

    mutating func run() throws {
        for node in graph.nodes {
            let before = builder.layers.count
            let reason = try convert(node)
            let added = builder.layers[before...].enumerated().map { "layer \(before + $0.offset) \($0.element.operation.opName)" }
            explanation.append(NodeExplanation(node: node.name, opType: node.opType,
                                               result: (added.isEmpty ? "" : added.joined(separator: ", ") + ": ") + reason))
        }
    }

    func outputActivation() throws -> Activation {
        guard let symbol = symbols[graph.output] else {
            throw ImportError("graph.output '\(graph.output)'", "no node produces the output")
        }
        guard case .real(let activation) = symbol else {
            throw ImportError("graph.output '\(graph.output)'", "the output is \(symbol.kindName); the engine returns real-valued tensors")
        }
        guard activation.flattenedFrom == nil else {
            throw ImportError("graph.output '\(graph.output)'", "a flattened spatial tensor cannot be the output (its NCHW order would differ)")
        }
        return activation
    }

    // MARK: - Symbols

    func symbol(_ name: String, of node: ONNXNode) throws -> Symbol {
        guard !name.isEmpty, let symbol = symbols[name] else {
            throw ImportError.node(node, "input '\(name)' is not produced by any earlier node, initializer or graph input")
        }
        return symbol
    }

    func input(_ index: Int, of node: ONNXNode) throws -> Symbol {
        guard index < node.inputs.count else {
            throw ImportError.node(node, "expects at least \(index + 1) inputs, has \(node.inputs.count)")
        }
        return try symbol(node.inputs[index], of: node)
    }

    func optionalInput(_ index: Int, of node: ONNXNode) throws -> Symbol? {
        guard index < node.inputs.count, !node.inputs[index].isEmpty else { return nil }
        return try symbol(node.inputs[index], of: node)
    }

    func constant(_ index: Int, of node: ONNXNode, role: String) throws -> ONNXConstant {
        guard case .constant(let constant) = try input(index, of: node) else {
            throw ImportError.node(node, "\(role) (input \(index), '\(node.inputs[index])') must be a constant; it is \(try input(index, of: node).kindName)")
        }
        return constant
    }

    /// A real-valued activation; a binarized one is materialized as +1/-1 floats.
    mutating func activation(_ index: Int, of node: ONNXNode) throws -> Activation {
        switch try input(index, of: node) {
        case .real(let activation):
            return activation
        case .sign(let activation):
            return signValues(of: activation)
        case let symbol:
            throw ImportError.node(node, "input \(index) is \(symbol.kindName); this op needs an activation")
        }
    }

    /// sign(activation) as real +1/-1 values, emitted once per activation.
    mutating func signValues(of activation: Activation) -> Activation {
        var result = activation
        if let existing = signsOf[activation.value] {
            result.value = existing
        } else {
            result.value = builder.append(.sign, inputs: [activation.value], name: "sign-values(\(activation.value))")
            signsOf[activation.value] = result.value
        }
        return result
    }

    mutating func bind(_ node: ONNXNode, _ symbol: Symbol) throws {
        guard let name = node.outputs.first, !name.isEmpty else {
            throw ImportError.node(node, "has no output")
        }
        symbols[name] = symbol
    }

    /// A constant made by folding, counted against a budget: a small file with many folding
    /// nodes must not make the converter hold gigabytes of intermediate constants.
    mutating func folded(_ constant: ONNXConstant, by node: ONNXNode) throws -> ONNXConstant {
        foldedElements += constant.count
        guard foldedElements <= ONNXConverter.maxFoldedElements else {
            throw ImportError.node(node, "constant folding would hold more than \(ONNXConverter.maxFoldedElements) values; the model is too large")
        }
        return constant
    }

    /// The packed-bits value of sign(activation), emitted once per activation.
    mutating func bits(of activation: Activation) -> ValueID {
        if let existing = bitsOf[activation.value] { return existing }
        let value = builder.binarize(activation.value, name: "sign(\(activation.value))")
        bitsOf[activation.value] = value
        return value
    }

    // MARK: - Nodes

    // One case per operator keeps the mapping readable in one place.
    // swiftlint:disable:next cyclomatic_complexity function_body_length
    mutating func convert(_ node: ONNXNode) throws -> String {
        switch node.opType {
        case "Constant":
            try bind(node, .constant(try constantAttribute(node)))
            return "constant"

        case "Identity", "Dropout":
            if node.opType == "Dropout", node.outputs.count > 1, !node.outputs[1].isEmpty {
                symbols[node.outputs[1]] = nil
            }
            try bind(node, try input(0, of: node))
            return "inference no-op"

        case "Sign":
            switch try input(0, of: node) {
            case .constant(let c):
                try bind(node, .constant(try folded(ONNXConstant(dims: c.dims, values: c.values.map { $0 < 0 ? -1 : 1 }), by: node)))
                return "constant folded (sign(0) taken as +1)"
            case .real(let a), .sign(let a):
                try bind(node, .sign(a))
                return "binarize, fused into the binary layers that read it"
            case let other:
                throw ImportError.node(node, "cannot binarize \(other.kindName)")
            }

        case "GreaterOrEqual", "Less":
            let a = try activation(0, of: node)
            let threshold = try constant(1, of: node, role: "comparison threshold")
            guard threshold.values.allSatisfy({ $0 == 0 }) else {
                throw ImportError.node(node, "only comparisons with 0 (the x >= 0 ? 1 : -1 binarization) are supported")
            }
            try bind(node, .comparison(a, nonNegative: node.opType == "GreaterOrEqual"))
            return "comparison with 0, awaiting Where"

        case "Where":
            guard case .comparison(let a, let nonNegative) = try input(0, of: node) else {
                throw ImportError.node(node, "only Where(x >= 0, 1, -1) style binarization is supported")
            }
            let whenTrue = try constant(1, of: node, role: "value if true"), whenFalse = try constant(2, of: node, role: "value if false")
            let positive: Double = nonNegative ? 1 : -1
            guard whenTrue.values.allSatisfy({ $0 == positive }), whenFalse.values.allSatisfy({ $0 == -positive }) else {
                throw ImportError.node(node, "Where must select +1/-1 to be a binarization")
            }
            try bind(node, .sign(a))
            return "binarize (x >= 0 ? 1 : -1)"

        case "Conv":
            return try convertConv(node)

        case "Gemm", "MatMul":
            return try convertDense(node)

        case "BatchNormalization":
            let a = try activation(0, of: node)
            if node.int("training_mode", default: 0) != 0 {
                throw ImportError.node(node, "training_mode=1 is not an inference graph")
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

        case "Relu":
            let a = try activation(0, of: node)
            try bind(node, .real(Activation(value: builder.append(.relu, inputs: [a.value], name: node.name), dims: a.dims, flattenedFrom: a.flattenedFrom)))
            return "relu"

        case "PRelu", "LeakyRelu":
            let a = try activation(0, of: node)
            let slope: [Double]
            if node.opType == "LeakyRelu" {
                slope = [Double](repeating: Double(node.float("alpha", default: 0.01)), count: a.channels)
            } else {
                slope = try perChannel(try constant(1, of: node, role: "slope"), for: a, node: node)
            }
            let value = builder.prelu(a.value, slope: permuted(slope, for: a).map { Float($0) }, name: node.name)
            try bind(node, .real(Activation(value: value, dims: a.dims, flattenedFrom: a.flattenedFrom)))
            return "prelu"

        case "Clip":
            let a = try activation(0, of: node)
            var low = -Float.infinity, high = Float.infinity
            if graph.opset < 11 {
                low = node.float("min", default: low)
                high = node.float("max", default: high)
            } else {
                if case .constant(let c)? = try optionalInput(1, of: node) { low = Float(c.values.first ?? -.infinity) } else if try optionalInput(1, of: node) != nil {
                    throw ImportError.node(node, "min must be a constant")
                }
                if case .constant(let c)? = try optionalInput(2, of: node) { high = Float(c.values.first ?? .infinity) } else if try optionalInput(2, of: node) != nil {
                    throw ImportError.node(node, "max must be a constant")
                }
            }
            let value = builder.append(.clip(ClipLayer(min: low, max: high)), inputs: [a.value], name: node.name)
            try bind(node, .real(Activation(value: value, dims: a.dims, flattenedFrom: a.flattenedFrom)))
            return "clip [\(low), \(high)]"

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
            return "\(pool.kind.rawValue) pool \(kernel[0])x\(kernel[1]) stride \(window.strideH)"

        case "GlobalAveragePool":
            let a = try spatial(0, of: node)
            let value = builder.append(.globalAveragePool, inputs: [a.value], name: node.name)
            try bind(node, .real(Activation(value: value, dims: [1, a.channels, 1, 1])))
            return "global average pool"

        case "Flatten":
            let axis = node.int("axis", default: 1)
            guard axis == 1 else { throw ImportError.node(node, "only axis=1 is supported, got \(axis)") }
            return try flatten(node)

        case "Reshape":
            let target = try constant(1, of: node, role: "shape").integers("shape", of: node)
            let dims: [Int]
            switch try input(0, of: node) {
            case .real(let a), .sign(let a): dims = a.dims
            case let other: throw ImportError.node(node, "cannot reshape \(other.kindName)")
            }
            let total = dims.reduce(1, *)
            guard target.count <= 8, target.enumerated().allSatisfy({ $1 >= -1 && ($1 != 0 || $0 < dims.count) }) else {
                throw ImportError.node(node, "shape \(target) is not a valid reshape of \(dims)")
            }
            let resolved = target.enumerated().map { $1 == 0 ? dims[$0] : $1 }
            // At most 8 factors of at most 2^31 each: checked, as the product can overflow.
            var known = 1
            for factor in resolved where factor != -1 {
                let (product, overflow) = known.multipliedReportingOverflow(by: factor)
                guard !overflow else { throw ImportError.node(node, "shape \(target) is too large") }
                known = product
            }
            let final = resolved.map { $0 == -1 ? total / max(known, 1) : $0 }
            if final == dims {
                try bind(node, try input(0, of: node))
                return "no-op reshape"
            }
            guard final == [1, total] else {
                throw ImportError.node(node, "only reshapes to [1, N] (a flatten) are supported; \(dims) -> \(target)")
            }
            return try flatten(node)

        case "Concat":
            let axis = node.int("axis", default: 1)
            guard !node.inputs.isEmpty else { throw ImportError.node(node, "has no inputs") }
            var parts: [Activation] = []
            for index in node.inputs.indices { parts.append(try activation(index, of: node)) }
            let rank = parts[0].dims.count
            guard axis == 1 || axis == -rank + 1 else { throw ImportError.node(node, "only channel concatenation (axis 1) is supported") }
            guard parts.allSatisfy({ $0.flattenedFrom == nil && $0.dims.count == rank && Array($0.dims.dropFirst(2)) == Array(parts[0].dims.dropFirst(2)) }) else {
                throw ImportError.node(node, "inputs must have equal spatial sizes: \(parts.map(\.dims))")
            }
            let value = builder.append(.concat, inputs: parts.map(\.value), name: node.name)
            var dims = parts[0].dims
            dims[1] = parts.reduce(0) { $0 + $1.channels }
            try bind(node, .real(Activation(value: value, dims: dims)))
            return "concat of \(parts.count) along channels"

        case "Softmax":
            let a = try activation(0, of: node)
            let axis = node.int("axis", default: graph.opset >= 13 ? -1 : 1)
            let rank = a.dims.count
            let normalized = axis < 0 ? axis + rank : axis
            guard (rank == 2 && normalized == 1) || (rank == 4 && normalized == 1 && graph.opset >= 13) else {
                throw ImportError.node(node, "softmax over axis \(axis) of \(a.dims) is not supported (only over channels/features)")
            }
            guard a.flattenedFrom == nil else { throw ImportError.node(node, "softmax of a flattened spatial tensor is not supported") }
            let value = builder.append(.softmax, inputs: [a.value], name: node.name)
            try bind(node, .real(Activation(value: value, dims: a.dims)))
            return "softmax"

        case "Pad":
            return try convertPad(node)

        default:
            throw ImportError.node(node, "operator \(node.opType) is not supported; supported: \(ONNXConverter.supportedOperators.joined(separator: ", "))")
        }
    }

    // MARK: - Helpers

    func constantAttribute(_ node: ONNXNode) throws -> ONNXConstant {
        if let tensor = node.attributes["value"], tensor.hasT {
            return try ONNXConstant(tensor.t, location: "node '\(node.name)' (Constant)")
        }
        if let f = node.attributes["value_float"] { return ONNXConstant(dims: [], values: [Double(f.f)]) }
        if let fs = node.attributes["value_floats"] { return ONNXConstant(dims: [fs.floats.count], values: fs.floats.map(Double.init)) }
        if let i = node.attributes["value_int"] { return ONNXConstant(dims: [], values: [Double(i.i)]) }
        if let ints = node.attributes["value_ints"] { return ONNXConstant(dims: [ints.ints.count], values: ints.ints.map(Double.init)) }
        throw ImportError.node(node, "Constant without a supported value attribute")
    }

    mutating func spatial(_ index: Int, of node: ONNXNode) throws -> Activation {
        let a = try activation(index, of: node)
        guard a.dims.count == 4 else { throw ImportError.node(node, "needs a 4-D [1, C, H, W] input, got \(a.dims)") }
        return a
    }

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

    /// A per-channel constant (scalar, [C], [1,C], [C,1,1], [1,C,1,1]) as C values.
    func perChannel(_ c: ONNXConstant, for a: Activation, node: ONNXNode) throws -> [Double] {
        let channels = a.channels
        if c.count == 1 { return [Double](repeating: c.values[0], count: channels) }
        let nonUnit = c.dims.enumerated().filter { $0.element != 1 }
        guard c.count == channels, nonUnit.count == 1 else {
            throw ImportError.node(node, "constant of shape \(c.dims) is not per-channel for an input of shape \(a.dims)")
        }
        // Right-aligned broadcasting: the non-unit axis must be the channel axis.
        let axisFromEnd = c.dims.count - 1 - nonUnit[0].offset
        guard axisFromEnd == a.dims.count - 2 else {
            throw ImportError.node(node, "constant of shape \(c.dims) broadcasts over a non-channel axis of \(a.dims)")
        }
        return c.values
    }

    /// Per-feature parameters in engine order (NHWC-flattened vectors differ from ONNX).
    func permuted(_ values: [Double], for a: Activation) -> [Double] {
        guard a.flattenedFrom != nil else { return values }
        return values.indices.map { values[a.onnxIndex(ofEngineFeature: $0)] }
    }

    mutating func affine(_ a: Activation, multiplier: [Double], bias: [Double], name: String) -> Activation {
        let value = builder.channelAffine(a.value, multiplier: permuted(multiplier, for: a).map { Float($0) },
                                          bias: permuted(bias, for: a).map { Float($0) }, name: name)
        return Activation(value: value, dims: a.dims, flattenedFrom: a.flattenedFrom)
    }

    mutating func flatten(_ node: ONNXNode) throws -> String {
        switch try input(0, of: node) {
        case .real(let a):
            try bind(node, .real(flattened(a, name: node.name)))
            return "flatten"
        case .sign(let a):
            // Flatten(Sign(x)) = Sign(Flatten(x)): flatten the real values, binarize later,
            // because packed bits of an NHWC tensor cannot be flattened without repacking.
            try bind(node, .sign(flattened(a, name: node.name)))
            return "flatten (moved before the binarization)"
        case let other:
            throw ImportError.node(node, "cannot flatten \(other.kindName)")
        }
    }

    mutating func flattened(_ a: Activation, name: String) -> Activation {
        guard a.dims.count == 4 else { return a }
        let (c, h, w) = (a.dims[1], a.dims[2], a.dims[3])
        let value = builder.append(.flatten, inputs: [a.value], name: name)
        return Activation(value: value, dims: [1, c * h * w], flattenedFrom: h * w > 1 ? (c, h, w) : nil)
    }

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
            if case .constant(let c)? = try optionalInput(2, of: node) { value = c.values.first ?? 0 }
            if node.inputs.count > 3, !node.inputs[3].isEmpty { throw ImportError.node(node, "the axes input is not supported") }
        }
        let source = try input(0, of: node)
        guard pads.count == 8, pads[0] == 0, pads[1] == 0, pads[4] == 0, pads[5] == 0, pads.allSatisfy({ $0 >= 0 }) else {
            throw ImportError.node(node, "only non-negative spatial padding of a 4-D tensor is supported, got pads \(pads)")
        }
        try bind(node, .padded(source, pads: [pads[2], pads[3], pads[6], pads[7]], value: value))
        return "padding, absorbed by the next Conv"
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
        case let other: throw ImportError.node(node, "input is \(other.kindName)")
        }
        guard a.dims.count == 4 else { throw ImportError.node(node, "needs a 4-D input, got \(a.dims)") }
        let weights = try constant(1, of: node, role: "weights")
        guard weights.dims.count == 4 else { throw ImportError.node(node, "weights of shape \(weights.dims) are not 4-D") }
        let (outC, inC, kh, kw) = (weights.dims[0], weights.dims[1], weights.dims[2], weights.dims[3])
        guard node.int("group", default: 1) == 1 else { throw ImportError.node(node, "grouped convolution (group \(node.int("group", default: 1))) is not supported") }
        if let dilations = node.ints("dilations"), dilations.contains(where: { $0 != 1 }) {
            throw ImportError.node(node, "dilations \(dilations) are not supported")
        }
        guard inC == a.channels else { throw ImportError.node(node, "weights expect \(inC) input channels, input has \(a.channels)") }
        let window = try makeWindow(node, kernel: node.ints("kernel_shape") ?? [kh, kw], input: a, extraPads: extraPads)
        guard window.kernelH == kh, window.kernelW == kw else { throw ImportError.node(node, "kernel_shape disagrees with the weights \(weights.dims)") }
        var bias = [Double](repeating: 0, count: outC)
        if case .constant(let b)? = try optionalInput(2, of: node) {
            guard b.count == outC else { throw ImportError.node(node, "bias has \(b.count) values for \(outC) channels") }
            bias = b.values
        } else if try optionalInput(2, of: node) != nil {
            throw ImportError.node(node, "bias must be a constant")
        }
        // ONNX [O, I, kh, kw] -> engine [O, kh, kw, I]
        var transposed = [Double](repeating: 0, count: weights.count)
        for o in 0..<outC {
            for i in 0..<inC {
                for y in 0..<kh {
                    for x in 0..<kw {
                        transposed[((o * kh + y) * kw + x) * inC + i] = weights.values[((o * inC + i) * kh + y) * kw + x]
                    }
                }
            }
        }
        let dims = outputDims(a, window: window, channels: outC)
        if binaryInput {
            guard let binary = BinaryWeights(transposed, rowLength: kh * kw * inC) else {
                guard padValue == 0 else {
                    throw ImportError.node(node, "real-valued weights on a binarized input padded with \(padValue) are not supported")
                }
                let value = builder.conv2D(signValues(of: a).value, inChannels: inC, outChannels: outC, window: window,
                                           weights: transposed.map { Float($0) }, bias: bias.map { Float($0) }, name: node.name)
                try bind(node, .real(Activation(value: value, dims: dims)))
                return "float conv \(kh)x\(kw) \(inC)->\(outC) on binarized inputs (weights are not +-alpha, so they stay full precision)"
            }
            let pad: BinaryPadValue
            switch padValue {
            case 0: pad = .zero
            case 1: pad = .plusOne
            case -1: pad = .minusOne
            default: throw ImportError.node(node, "padding a binarized input with \(padValue) is not supported (0, +1 or -1)")
            }
            let value = builder.binaryConv2D(bits(of: a), inChannels: inC, outChannels: outC, window: window, padValue: pad,
                                             weights: binary.signs, multiplier: binary.alpha, bias: bias.map { Float($0) }, name: node.name)
            try bind(node, .real(Activation(value: value, dims: dims)))
            let scaled = binary.alpha.contains { $0 != 1 }
            return "binary conv \(kh)x\(kw) \(inC)->\(outC) stride \(window.strideH): Sign input and \(scaled ? "+-alpha (per-channel scale)" : "+-1") weights, \(pad.rawValue) padding"
        }
        guard padValue == 0 else { throw ImportError.node(node, "padding a real-valued input with \(padValue) is not supported") }
        let value = builder.conv2D(a.value, inChannels: inC, outChannels: outC, window: window, weights: transposed.map { Float($0) },
                                   bias: bias.map { Float($0) }, name: node.name)
        try bind(node, .real(Activation(value: value, dims: dims)))
        return "float conv \(kh)x\(kw) \(inC)->\(outC) stride \(window.strideH) (real-valued input)"
    }

    mutating func convertDense(_ node: ONNXNode) throws -> String {
        let source = try input(0, of: node)
        let a: Activation
        let binaryInput: Bool
        switch source {
        case .real(let x): (a, binaryInput) = (x, false)
        case .sign(let x): (a, binaryInput) = (x, true)
        case let other: throw ImportError.node(node, "input is \(other.kindName)")
        }
        guard a.dims.count == 2 else { throw ImportError.node(node, "needs a [1, K] input (flatten first), got \(a.dims)") }
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
        if binaryInput {
            guard let binary = BinaryWeights(matrix, rowLength: k) else {
                // Real-valued weights on binarized inputs (a float classifier): run in float.
                let value = builder.dense(signValues(of: a).value, inFeatures: k, outFeatures: n, weights: matrix.map { Float($0) },
                                          bias: bias.map { Float($0) }, name: node.name)
                try bind(node, .real(Activation(value: value, dims: dims)))
                return "float dense \(k)->\(n) on binarized inputs (weights are not +-alpha, so they stay full precision)"
            }
            let value = builder.binaryDense(bits(of: a), inFeatures: k, outFeatures: n, weights: binary.signs,
                                            multiplier: binary.alpha, bias: bias.map { Float($0) }, name: node.name)
            try bind(node, .real(Activation(value: value, dims: dims)))
            return "binary dense \(k)->\(n): Sign input and \(binary.alpha.contains { $0 != 1 } ? "+-alpha" : "+-1") weights"
        }
        let value = builder.dense(a.value, inFeatures: k, outFeatures: n, weights: matrix.map { Float($0) },
                                  bias: bias.map { Float($0) }, name: node.name)
        try bind(node, .real(Activation(value: value, dims: dims)))
        return "float dense \(k)->\(n)" + (a.flattenedFrom != nil ? " (columns permuted from NCHW to NHWC flatten order)" : "")
    }

    mutating func convertArithmetic(_ node: ONNXNode) throws -> String {
        let lhs = try input(0, of: node), rhs = try input(1, of: node)
        switch (lhs, rhs) {
        case (.constant(let x), .constant(let y)):
            try bind(node, .constant(try folded(try Broadcast.apply(node.opType, x, y, node: node), by: node)))
            return "constant folded"
        case (.real(let a), .real(let b)):
            guard node.opType == "Add" else { throw ImportError.node(node, "\(node.opType) of two activations is not supported (only Add)") }
            guard a.dims == b.dims, a.flattenedFrom == nil, b.flattenedFrom == nil else {
                throw ImportError.node(node, "adds activations of shapes \(a.dims) and \(b.dims); broadcasting is not supported")
            }
            let value = builder.append(.add, inputs: [a.value, b.value], name: node.name)
            try bind(node, .real(Activation(value: value, dims: a.dims)))
            return "add (a shortcut; fused into the binary conv's epilogue where possible)"
        case (.real(let a), .constant(let c)), (.constant(let c), .real(let a)):
            let values = try perChannel(c, for: a, node: node)
            let constantFirst: Bool = { if case .constant = lhs { return true } else { return false } }()
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
