import BitModel
import Foundation

/// Converts ONNX models of binary neural networks to BitFleet models.
///
/// First every node whose inputs are all constants is evaluated (`ConstantFolder`), so
/// weights computed in the graph are tensors. Then BNN patterns are recognised
/// structurally: a binarization (`Sign`, `Where(x >= t, 1, -1)`, Larq's
/// `Sign(Sign(x) + 0.1)`, `Sign(Clip(x))`) feeding a `Conv`, `Gemm` or `MatMul` whose
/// constant weights are `s_o * (+-1)` per output channel becomes a binary layer with a
/// per-channel scale; BatchNormalization and Mul/Add/Sub/Div by per-channel constants
/// become affine maps that are folded into the layer before them (or, before a
/// binarization, into its threshold). Layout Transposes (tf2onnx's NHWC) change only how
/// the graph is viewed. Everything else maps to the engine's float ops, or fails naming
/// the node and what would be needed.
public enum ONNXConverter {
    public static let supportedOperators = [
        "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
        "Div", "Dropout", "Expand", "Flatten", "Gather", "Gemm", "GlobalAveragePool", "Greater", "GreaterOrEqual", "Identity",
        "LeakyRelu", "Less", "LessOrEqual", "LogSoftmax", "MatMul", "MaxPool", "Mul", "Neg", "PRelu", "Pad", "Pow",
        "ReduceMean", "ReduceSum", "Relu", "Reshape", "Shape", "Sign", "Slice", "Softmax", "Sqrt", "Squeeze", "Sub",
        "Transpose", "Unsqueeze", "Where",
    ]

    /// Upper bound on the values all folded constants of one conversion may hold (512 MiB
    /// of doubles; a ResNet-18 sized BNN folds about 11 M).
    static let maxFoldedElements = 1 << 26

    /// Converts the ONNX file at `url`; tensors kept in external data files (such as the
    /// `model.onnx.data` of PyTorch's dynamo exporter) are read from the file's folder.
    public static func convert(contentsOf url: URL, options: ConversionOptions = ConversionOptions()) throws -> ConversionResult {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw ImportError(url.path, "cannot read the file: \(error.localizedDescription)")
        }
        var named = options
        if named.name == nil { named.name = url.deletingPathExtension().lastPathComponent }
        return try convert(data: data, options: named, externalDataDirectory: url.deletingLastPathComponent())
    }

    /// Converts ONNX bytes. `externalDataDirectory` is the folder external data files are
    /// read from; without it a model with external data is refused with a clear error.
    public static func convert(data: Data, options: ConversionOptions = ConversionOptions(),
                               externalDataDirectory: URL? = nil) throws -> ConversionResult {
        let graph = try ONNXGraph(data: data, externalData: externalDataDirectory.map(ExternalDataReader.init(directory:)))
        var conversion = Conversion(graph: graph)
        try conversion.run()
        let output = try conversion.outputActivation()

        let inputView = conversion.plan.inputLayout
        let metadata = ModelMetadata(
            name: options.name ?? "model", version: options.version, description: options.description,
            producer: "bitfleet-convert 2 (onnx opset \(graph.opset)\(graph.producer.isEmpty ? "" : ", from \(graph.producer)"))",
            input: TensorSpec(name: graph.input.name, shape: graph.input.dims, layout: graph.input.dims.count == 4 ? (inputView == .nhwc ? .nhwc : .nchw) : .nc),
            output: TensorSpec(name: graph.output, shape: output.onnxDims, layout: output.isSpatial ? (output.layout == .nhwc ? .nhwc : .nchw) : .nc),
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
        if inputView == .nhwc { notes.append("the input is NHWC (\(graph.input.dims)); feed it as you fed the ONNX model") }
        if let reader = graph.externalData, !reader.locationsRead.isEmpty {
            notes.append("weights read from external data: \(reader.locationsRead.joined(separator: ", "))")
        }
        let steps = conversion.plan.steAlias.count
        if steps > 0 { notes.append("\(steps) straight-through estimator(s) a - b + b converted as a (see --explain)") }
        return ConversionResult(model: model, explanation: conversion.explanation, notes: notes)
    }
}

/// The state of one conversion: ONNX names bound to symbols, the engine graph built so far.
struct Conversion {
    let graph: ONNXGraph
    let plan: GraphPlan
    var builder = ModelBuilder()
    var symbols: [String: Symbol] = [:]
    var bitsOf: [ValueID: ValueID] = [:]
    var signsOf: [ValueID: ValueID] = [:]
    /// For a clip layer's output: its input and range, so `Sign(Clip(x))` binarizes x.
    var clipSources: [ValueID: (source: Activation, low: Float, high: Float)] = [:]
    var explanation: [NodeExplanation] = []
    /// Elements of all constants made by folding so far (see `folded`).
    var foldedElements = 0

    init(graph: ONNXGraph) {
        self.graph = graph
        plan = GraphPlan(graph)
        for (name, constant) in graph.constants { symbols[name] = .constant(constant) }
        let dims = graph.input.dims
        let input: Activation
        if dims.count == 4, plan.inputLayout == .nhwc {
            input = Activation(value: builder.input, dims: [1, dims[3], dims[1], dims[2]], layout: .nhwc)
        } else {
            input = Activation(value: builder.input, dims: dims)
        }
        symbols[graph.input.name] = .real(input)
    }

    mutating func run() throws {
        for (index, node) in graph.nodes.enumerated() {
            if let reason = plan.dropped[index] {
                explanation.append(NodeExplanation(node: node.name, opType: node.opType, result: reason))
                continue
            }
            let before = builder.layers.count
            let reason: String
            if let alias = plan.steAlias[index] {
                try bind(node, try symbol(alias.a, of: node))
                reason = "straight-through estimator a - b + b: converted as a ('\(alias.a)'), exact up to float rounding; b ('\(alias.b)') is dropped"
            } else if let folded = try fold(node) {
                reason = folded
            } else {
                reason = try convert(node)
            }
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

    // MARK: - Constant folding

    /// Folds `node` when every input is a constant (or it asks only for an activation's
    /// static shape); nil when the node is not a constant computation.
    mutating func fold(_ node: ONNXNode) throws -> String? {
        switch node.opType {
        case "Constant":
            let value = try constantAttribute(node)
            try bind(node, .constant(value))
            return "constant \(value.dims)"
        case "Shape", "Size":
            let source = try input(0, of: node)
            if let a = source.activation {
                var dims = a.onnxDims
                // A Pad waiting for its Conv has the padded shape, not its input's.
                if case .padded(_, let pads, _) = source {
                    let (h, w) = a.layout == .nchw ? (2, 3) : (1, 2)
                    dims[h] += pads[0] + pads[2]
                    dims[w] += pads[1] + pads[3]
                }
                let value = node.opType == "Shape" ? ConstantFolder.shapeOf(dims, node: node)
                    : ONNXConstant(dims: [], values: [Double(dims.reduce(1, *))], type: .integer)
                try bind(node, .constant(value))
                return "folded: the static \(node.opType == "Shape" ? "shape" : "size") \(value.values.map { Int($0) }) of an activation"
            }
        default:
            break
        }
        guard node.inputs.contains(where: { !$0.isEmpty }) else { return nil }
        var constants: [ONNXConstant?] = []
        for name in node.inputs {
            if name.isEmpty { constants.append(nil); continue }
            guard case .constant(let c) = try symbol(name, of: node) else { return nil }
            constants.append(c)
        }
        guard let result = try ConstantFolder.fold(node, constants, opset: graph.opset) else { return nil }
        try bind(node, .constant(try folded(result, by: node)))
        return "folded constant \(result.dims)"
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

    func constantAttribute(_ node: ONNXNode) throws -> ONNXConstant {
        if let tensor = node.attributes["value"], tensor.hasT {
            return try ONNXConstant(tensor.t, location: "node '\(node.name)' (Constant)", external: graph.externalData)
        }
        if let f = node.attributes["value_float"] { return ONNXConstant(dims: [], values: [Double(f.f)]) }
        if let fs = node.attributes["value_floats"] { return ONNXConstant(dims: [fs.floats.count], values: fs.floats.map(Double.init)) }
        if let i = node.attributes["value_int"] { return ONNXConstant(dims: [], values: [Double(i.i)], type: .integer) }
        if let ints = node.attributes["value_ints"] { return ONNXConstant(dims: [ints.ints.count], values: ints.ints.map(Double.init), type: .integer) }
        throw ImportError.node(node, "Constant without a supported value attribute")
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

    func optionalConstant(_ index: Int, of node: ONNXNode, role: String) throws -> ONNXConstant? {
        guard try optionalInput(index, of: node) != nil else { return nil }
        return try constant(index, of: node, role: role)
    }

    /// A real-valued activation; a binarized one is materialized as +1/-1 floats.
    mutating func activation(_ index: Int, of node: ONNXNode) throws -> Activation {
        switch try input(index, of: node) {
        case .real(let activation):
            return activation
        case .sign(let activation):
            return signValues(of: activation)
        case .shiftedSign(let activation, let offsets):
            let values = signValues(of: activation)
            return affine(values, multiplier: [Double](repeating: 1, count: offsets.count), bias: offsets, name: node.name)
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

    /// The packed-bits value of sign(activation), emitted once per activation.
    mutating func bits(of activation: Activation) -> ValueID {
        if let existing = bitsOf[activation.value] { return existing }
        let value = builder.binarize(activation.value, name: "sign(\(activation.value))")
        bitsOf[activation.value] = value
        return value
    }

    mutating func bind(_ node: ONNXNode, _ symbol: Symbol) throws {
        guard let name = node.outputs.first, !name.isEmpty else {
            throw ImportError.node(node, "has no output")
        }
        symbols[name] = symbol
    }

    /// A new real activation produced by `value`, shaped like `a`.
    func real(_ value: ValueID, like a: Activation) -> Symbol {
        .real(Activation(value: value, dims: a.dims, flattenedFrom: a.flattenedFrom, layout: a.layout))
    }

    // MARK: - Per-channel parameters

    /// A constant that broadcasts against `a` (ONNX rules, right-aligned) and is constant
    /// along every axis but the channel axis, as C values: scalars, [C], [1,C], [C,1,1],
    /// [1,C,1,1], a [1,C,H,W] tensor that repeats one value per channel (ReActNet's
    /// `bias.expand_as(x)`), and the NHWC forms of these.
    func perChannel(_ c: ONNXConstant, for a: Activation, node: ONNXNode) throws -> [Double] {
        let channels = a.channels
        if c.count == 1 { return [Double](repeating: c.values[0], count: channels) }
        let shape = a.onnxDims
        guard c.dims.count <= shape.count else {
            throw ImportError.node(node, "constant of shape \(c.dims) has more dimensions than the input \(shape)")
        }
        let padded = [Int](repeating: 1, count: shape.count - c.dims.count) + c.dims
        let channelAxis = a.channelAxis
        for axis in shape.indices where padded[axis] != 1 && padded[axis] != shape[axis] {
            throw ImportError.node(node, "constant of shape \(c.dims) does not broadcast to the input shape \(shape)")
        }
        guard padded[channelAxis] == channels || padded[channelAxis] == 1 else {
            throw ImportError.node(node, "constant of shape \(c.dims) is not per-channel for an input of shape \(shape)")
        }
        let strides = ONNXConstant.strides(padded)
        var values = [Double](repeating: 0, count: channels)
        for channel in 0..<channels {
            values[channel] = c.values[padded[channelAxis] == 1 ? 0 : channel * strides[channelAxis]]
        }
        // Every element must equal its channel's value: otherwise it varies along H, W.
        for flat in 0..<c.count {
            let channel = padded[channelAxis] == 1 ? 0 : (flat / strides[channelAxis]) % channels
            guard c.values[flat] == values[padded[channelAxis] == 1 ? 0 : channel] || (c.values[flat].isNaN && values[channel].isNaN) else {
                throw ImportError.node(node, "constant of shape \(c.dims) is not per-channel for an input of shape \(shape): it varies along an axis other than channels")
            }
        }
        return values
    }

    /// Per-feature parameters in engine order (NHWC-flattened vectors differ from ONNX).
    func permuted(_ values: [Double], for a: Activation) -> [Double] {
        guard a.flattenedFrom != nil else { return values }
        return values.indices.map { values[a.onnxIndex(ofEngineFeature: $0)] }
    }

    mutating func affine(_ a: Activation, multiplier: [Double], bias: [Double], name: String) -> Activation {
        let value = builder.channelAffine(a.value, multiplier: permuted(multiplier, for: a).map { Float($0) },
                                          bias: permuted(bias, for: a).map { Float($0) }, name: name)
        var result = a
        result.value = value
        return result
    }
}
