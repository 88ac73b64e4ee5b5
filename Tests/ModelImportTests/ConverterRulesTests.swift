import BitEngine
import BitModel
import Foundation
@testable import ModelImport
import SwiftProtobuf
import Testing

/// A few-node ONNX graph written in Swift, for the converter's rules and refusals.
struct TinyGraph {
    var nodes: [Onnx_NodeProto] = []
    var initializers: [Onnx_TensorProto] = []
    var opset = 17

    mutating func constant(_ name: String, _ dims: [Int], _ values: [Float]) {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = dims.map(Int64.init)
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        t.floatData = values
        initializers.append(t)
    }

    mutating func ints(_ name: String, _ values: [Int]) {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = [Int64(values.count)]
        t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        t.int64Data = values.map(Int64.init)
        initializers.append(t)
    }

    mutating func node(_ op: String, _ inputs: [String], _ output: String, ints: [String: [Int]] = [:], int: [String: Int] = [:]) {
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = output + "_node"
        n.input = inputs
        n.output = [output]
        for (key, value) in ints {
            var a = Onnx_AttributeProto()
            a.name = key
            a.type = .ints
            a.ints = value.map(Int64.init)
            n.attribute.append(a)
        }
        for (key, value) in int {
            var a = Onnx_AttributeProto()
            a.name = key
            a.type = .int
            a.i = Int64(value)
            n.attribute.append(a)
        }
        nodes.append(n)
    }

    func data(input: [Int], output: String) throws -> Data {
        var model = Onnx_ModelProto()
        model.irVersion = 8
        var opsetID = Onnx_OperatorSetIdProto()
        opsetID.version = Int64(opset)
        model.opsetImport = [opsetID]
        var info = Onnx_ValueInfoProto()
        info.name = "input"
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        var shape = Onnx_TensorShapeProto()
        shape.dim = input.map { var d = Onnx_TensorShapeProto.Dimension(); d.dimValue = Int64($0); return d }
        tensorType.shape = shape
        info.type.tensorType = tensorType
        var out = Onnx_ValueInfoProto()
        out.name = output
        model.graph.input = [info]
        model.graph.output = [out]
        model.graph.node = nodes
        model.graph.initializer = initializers
        return try model.serializedData()
    }
}

@Suite("Converter rules")
struct ConverterRulesTests {
    func convert(_ graph: TinyGraph, input: [Int], output: String) throws -> ConversionResult {
        try ONNXConverter.convert(data: try graph.data(input: input, output: output))
    }

    func refusal(_ graph: TinyGraph, input: [Int], output: String) throws -> ImportError {
        do {
            _ = try convert(graph, input: input, output: output)
        } catch let error as ImportError {
            return error
        }
        Issue.record("the graph was accepted")
        return ImportError("", "")
    }

    @Test("binary weights: s_o * (+-1) with negative and folded scales; rounding is tolerated; near misses and float layers are not binary")
    func weightForms() throws {
        // Two rows: +-0.5 and -(+-2) (a negative BatchNorm scale folded in).
        let exact: [Double] = [0.5, -0.5, 0.5, -2, 2, 2]
        guard case .binary(let weights) = BinaryWeights.classify(exact, rowLength: 3) else { Issue.record("not binary"); return }
        #expect(weights.alpha == [0.5, 2])
        #expect(weights.signs == [1, -1, 1, -1, 1, 1])
        // a - b + b in float32 on latent weights in [-1, 1] is off by a few ulps of 1.
        let rounded = exact.map { $0 + ($0 > 0 ? 1 : -1) * 3e-7 }
        guard case .binary = BinaryWeights.classify(rounded, rowLength: 3) else { Issue.record("rounding not tolerated"); return }
        // Magnitudes equal within 0.1 %: looks binary, is not exact.
        guard case .nearlyBinary(let row, let deviation) = BinaryWeights.classify([0.5, -0.5005, 0.5, 1, 1, -1], rowLength: 3) else {
            Issue.record("near miss not reported"); return
        }
        #expect(row == 0 && deviation > 1e-4 && deviation < 1e-2)
        // A trained float layer, and a weight that is exactly 0 (ONNX Sign(0) = 0).
        guard case .real = BinaryWeights.classify([0.3, -0.1, 0.7, 0.2], rowLength: 2) else { Issue.record("float layer taken as binary"); return }
        guard case .real = BinaryWeights.classify([1, 0, -1, 1], rowLength: 2) else { Issue.record("a zero weight taken as binary"); return }
    }

    @Test("constant folding evaluates shape arithmetic and weight computations")
    func folding() throws {
        let node = ONNXNode(Onnx_NodeProto(), index: 0)
        func c(_ dims: [Int], _ values: [Double], _ type: ONNXConstant.ElementType = .float) -> ONNXConstant { ONNXConstant(dims: dims, values: values, type: type) }
        func fold(_ op: String, _ inputs: [ONNXConstant?], ints: [String: [Int]] = [:], int: [String: Int] = [:], opset: Int = 17) throws -> ONNXConstant {
            var proto = Onnx_NodeProto()
            proto.opType = op
            for (key, value) in ints { var a = Onnx_AttributeProto(); a.name = key; a.ints = value.map(Int64.init); proto.attribute.append(a) }
            for (key, value) in int { var a = Onnx_AttributeProto(); a.name = key; a.i = Int64(value); proto.attribute.append(a) }
            return try #require(try ConstantFolder.fold(ONNXNode(proto, index: 0), inputs, opset: opset))
        }
        _ = node
        let w = c([2, 1, 1, 2], [0.2, -0.4, -1.5, 0.5])
        // alpha = mean |w| per output channel, alpha * sign(w): XNOR-Net's weights.
        let alpha = try fold("ReduceMean", [try fold("Abs", [w])], ints: ["axes": [1, 2, 3]])
        #expect(alpha.dims == [2, 1, 1, 1])
        #expect(alpha.values == [Double(Float(0.3)), 1.0])
        let binary = try fold("Mul", [alpha, try fold("Sign", [w])])
        #expect(binary.values == [Double(Float(0.3)), -Double(Float(0.3)), -1, 1])
        #expect(try fold("Sign", [c([3], [0, -2, 3])]).values == [0, -1, 1], "Sign(0) is 0 in ONNX")
        // Shape -> Gather -> Unsqueeze -> Concat -> Reshape, Expand of a per-channel bias.
        let shape = c([4], [1, 8, 4, 4], .integer)
        let channels = try fold("Gather", [shape, c([], [1], .integer)], int: ["axis": 0])
        #expect(channels.dims == [] && channels.values == [8])
        let unsqueezed = try fold("Unsqueeze", [channels, c([1], [0], .integer)], opset: 13)
        let target = try fold("Concat", [c([1], [1], .integer), unsqueezed, c([1], [-1], .integer)], int: ["axis": 0])
        #expect(target.values == [1, 8, -1] && target.type == .integer)
        let bias = c([1, 2, 1, 1], [0.5, -0.25])
        let expanded = try fold("Expand", [bias, c([4], [1, 2, 2, 3], .integer)])
        #expect(expanded.dims == [1, 2, 2, 3] && expanded.values == [Double](repeating: 0.5, count: 6) + [Double](repeating: -0.25, count: 6))
        #expect(try fold("Reshape", [expanded, c([2], [2, -1], .integer)]).dims == [2, 6])
        let sliced = try fold("Slice", [c([5], [0, 1, 2, 3, 4]), c([1], [-4], .integer), c([1], [Double(Int.max)], .integer),
                                        c([1], [0], .integer), c([1], [2], .integer)])
        #expect(sliced.values == [1, 3])
        #expect(try fold("Div", [c([2], [7, -7], .integer), c([], [2], .integer)]).values == [3, -3], "integer division truncates")
        #expect(try fold("Transpose", [c([2, 3], [1, 2, 3, 4, 5, 6])], ints: ["perm": [1, 0]]).values == [1, 4, 2, 5, 3, 6])
        #expect(try fold("Where", [c([2], [1, 0], .bool), c([], [1]), c([], [-1])]).values == [1, -1])
        #expect(throws: ImportError.self) { try fold("ConstantOfShape", [c([3], [1024, 1024, 1024], .integer)]) }
    }

    @Test("constant folding covers the arithmetic, reduction, cast and shape ops exports contain")
    func foldingOperators() throws {
        func c(_ dims: [Int], _ values: [Double], _ type: ONNXConstant.ElementType = .float) -> ONNXConstant { ONNXConstant(dims: dims, values: values, type: type) }
        func fold(_ op: String, _ inputs: [ONNXConstant?], ints: [String: [Int]] = [:], int: [String: Int] = [:], opset: Int = 17,
                  tensor: Onnx_TensorProto? = nil) throws -> ONNXConstant {
            var proto = Onnx_NodeProto()
            proto.opType = op
            for (key, value) in ints { var a = Onnx_AttributeProto(); a.name = key; a.ints = value.map(Int64.init); proto.attribute.append(a) }
            for (key, value) in int { var a = Onnx_AttributeProto(); a.name = key; a.i = Int64(value); proto.attribute.append(a) }
            if let tensor { var a = Onnx_AttributeProto(); a.name = "value"; a.t = tensor; proto.attribute.append(a) }
            return try #require(try ConstantFolder.fold(ONNXNode(proto, index: 0), inputs, opset: opset))
        }
        let x = c([2, 2], [1, -4, 9, 0.5])
        #expect(try fold("Add", [x, c([2], [1, 2])]).values == [2, -2, 10, 2.5], "broadcast over the last axis")
        #expect(try fold("Sub", [c([], [1]), x]).values == [0, 5, -8, 0.5])
        #expect(try fold("Neg", [x]).values == [-1, 4, -9, -0.5])
        #expect(try fold("Div", [c([], [1]), c([], [3])]).values == [Double(Float(1.0 / 3.0))], "float results are float32")
        #expect(try fold("Pow", [x, c([], [2])]).values == [1, 16, 81, 0.25])
        #expect(try fold("Sqrt", [c([2], [9, 2])]).values == [3, Double(Float(2.0.squareRoot()))])
        #expect(try fold("Clip", [x, c([], [-1]), c([], [2])]).values == [1, -1, 2, 0.5])
        #expect(try fold("Clip", [x, nil, c([], [0])]).values == [0, -4, 0, 0], "min omitted")
        // ReduceSum takes its axes as an input from opset 13, ReduceMean from 18.
        #expect(try fold("ReduceSum", [x, c([1], [1], .integer)], int: ["keepdims": 0], opset: 13) == c([2], [-3, 9.5]))
        #expect(try fold("ReduceMean", [x, c([1], [0], .integer)], opset: 18) == c([1, 2], [5, -1.75]))
        #expect(try fold("ReduceMean", [x], ints: ["axes": [-1]], opset: 17).values == [-1.5, 4.75])
        // Cast truncates toward zero to integers and rounds to float32 to float.
        #expect(try fold("Cast", [c([3], [2.7, -2.7, 1e10])], int: ["to": 7]) == c([3], [2, -2, 1e10], .integer))
        #expect(try fold("Cast", [c([1], [0.1])], int: ["to": 1]).values == [Double(Float(0.1))])
        #expect(try fold("Squeeze", [c([1, 2, 1], [3, 4]), c([2], [0, -1], .integer)], opset: 13).dims == [2])
        #expect(try fold("Squeeze", [c([1, 2, 1], [3, 4])], ints: ["axes": [0]], opset: 11).dims == [2, 1])
        var one = Onnx_TensorProto()
        one.dims = [1]
        one.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        one.floatData = [1.5]
        #expect(try fold("ConstantOfShape", [c([2], [2, 3], .integer)], tensor: one) == c([2, 3], [Double](repeating: 1.5, count: 6)))
        #expect(try fold("ConstantOfShape", [c([1], [2], .integer)]) == c([2], [0, 0]))
        #expect(try fold("Shape", [c([1, 8, 4, 4], [Double](repeating: 0, count: 128))], int: ["start": 2]).values == [4, 4])
        #expect(try fold("Size", [x]).values == [4])
    }

    @Test("Shape of a padded activation is the padded shape")
    func shapeOfPadded() throws {
        var graph = TinyGraph()
        graph.opset = 13
        graph.node("Sign", ["input"], "s")
        graph.ints("pads", [0, 0, 1, 1, 0, 0, 1, 1])
        graph.node("Pad", ["s", "pads"], "p")
        graph.constant("w", [2, 2, 3, 3], (0..<36).map { $0 % 3 == 0 ? -1 : 1 })
        graph.node("Conv", ["p", "w"], "conv", ints: ["kernel_shape": [3, 3]])
        // [1, -1] only if Shape(p)[2] is the padded height 5: 5 - 4 = 1.
        graph.node("Shape", ["p"], "shape")
        graph.ints("two", [2])
        graph.node("Gather", ["shape", "two"], "height")
        graph.ints("four", [4])
        graph.node("Sub", ["height", "four"], "batch")
        graph.ints("rest", [-1])
        graph.node("Concat", ["batch", "rest"], "target", int: ["axis": 0])
        graph.node("Reshape", ["conv", "target"], "flat")
        graph.constant("fc", [18, 2], (0..<36).map { Float($0) / 36 })
        graph.node("MatMul", ["flat", "fc"], "output")
        let result = try convert(graph, input: [1, 2, 3, 3], output: "output")
        #expect(result.explanation.contains { $0.opType == "Shape" && $0.result.contains("[1, 2, 5, 5]") }, "\(result.explanation)")
        #expect(result.model.metadata.output.shape == [1, 2])
        #expect(result.model.layers.contains { if case .binaryConv2D = $0.operation { return true } else { return false } })
    }

    @Test("a per-channel constant may be a full-shape tensor that repeats per channel; one that varies spatially is refused")
    func broadcastConstants() throws {
        var graph = TinyGraph()
        // [1,2,2,2] bias constant along H, W (what bias.expand_as(x) folds to).
        graph.constant("bias", [1, 2, 2, 2], [0.5, 0.5, 0.5, 0.5, -1, -1, -1, -1])
        graph.node("Add", ["input", "bias"], "output")
        let result = try convert(graph, input: [1, 2, 2, 2], output: "output")
        let session = try InferenceSession(model: result.model)
        #expect(try session.run([1, 2, 3, 4, 5, 6, 7, 8]) == [1.5, 2.5, 3.5, 4.5, 4, 5, 6, 7])

        var varying = TinyGraph()
        varying.constant("bias", [1, 2, 2, 2], [0.5, 0.5, 0.5, 0.25, -1, -1, -1, -1])
        varying.node("Add", ["input", "bias"], "output")
        let failure = try refusal(varying, input: [1, 2, 2, 2], output: "output")
        #expect(failure.location == "node 'output_node' (Add)")
        #expect(failure.message.contains("constant of shape [1, 2, 2, 2] is not per-channel"))
    }

    @Test("Sign(Clip(x, 0, hi)) is refused: ONNX gives 0 for every x <= 0")
    func clipAtZero() throws {
        var graph = TinyGraph()
        graph.constant("low", [], [0])
        graph.constant("high", [], [1])
        graph.node("Clip", ["input", "low", "high"], "clipped")
        graph.node("Sign", ["clipped"], "output")
        let failure = try refusal(graph, input: [1, 4], output: "output")
        #expect(failure.location == "node 'output_node' (Sign)")
        #expect(failure.message.contains("cannot represent 0"))
    }

    @Test("Mul of two activations is refused with its node and what is supported")
    func activationProduct() throws {
        var graph = TinyGraph()
        graph.node("Relu", ["input"], "a")
        graph.node("Mul", ["a", "input"], "output")
        let failure = try refusal(graph, input: [1, 4], output: "output")
        #expect(failure.location == "node 'output_node' (Mul)")
        #expect(failure.message.contains("Mul of two activations is not supported (only Add)"))
    }

    @Test("the STE a - b + b converts as a when b has no other use, is refused otherwise")
    func straightThrough() throws {
        func graph(extraUse: Bool) -> TinyGraph {
            var g = TinyGraph()
            g.node("Sign", ["input"], "a")
            g.node("Relu", ["input"], "b")  // stands for ApproxSign(x)
            g.node("Sub", ["a", "b"], "d")
            g.node("Add", ["d", "b"], "ste")
            if extraUse {
                g.node("Add", ["ste", "b"], "output")
            } else {
                g.node("Relu", ["ste"], "output")
            }
            return g
        }
        let result = try convert(graph(extraUse: false), input: [1, 4], output: "output")
        #expect(result.explanation.contains { $0.opType == "Add" && $0.result.contains("straight-through estimator a - b + b: converted as a") })
        #expect(result.explanation.contains { $0.opType == "Relu" && $0.result.contains("dropped") })
        #expect(result.notes.contains { $0.contains("straight-through") })
        #expect(try InferenceSession(model: result.model).run([-2, 0.5, 3, -0.1]) == [0, 1, 1, 0])

        let failure = try refusal(graph(extraUse: true), input: [1, 4], output: "output")
        #expect(failure.location == "node 'd_node' (Sub)")
        #expect(failure.message.contains("straight-through estimator") && failure.message.contains("inference form"))
    }

    @Test("near-binary weights on a binarized input are refused, not run in float")
    func nearlyBinary() throws {
        var graph = TinyGraph()
        graph.node("Sign", ["input"], "s")
        graph.constant("w", [2, 3], [0.5, -0.5, 0.5004, 1, 1, -1])
        graph.node("Gemm", ["s", "w"], "output", int: ["transB": 1])
        let failure = try refusal(graph, input: [1, 3], output: "output")
        #expect(failure.location == "node 'output_node' (Gemm)")
        #expect(failure.message.contains("look binary") && failure.message.contains("more than float rounding"))
    }

    @Test("the fuzz regressions' hostile nodes are still refused when they reach the output")
    func liveHostileNodes() throws {
        var outer = TinyGraph()
        outer.constant("a", [1024, 1, 1], [Float](repeating: 1, count: 1024))
        outer.constant("b", [1, 1024, 1], [Float](repeating: 1, count: 1024))
        outer.constant("c", [1, 1, 1024], [Float](repeating: 1, count: 1024))
        outer.node("Mul", ["a", "b"], "ab")
        outer.node("Mul", ["ab", "c"], "abc")
        outer.node("Add", ["input", "abc"], "output")
        #expect(try refusal(outer, input: [1, 4], output: "output").message.contains("larger than either"))

        var pad = TinyGraph()
        pad.opset = 13
        var pads = Onnx_TensorProto()
        pads.name = "pads"
        pads.dims = [8]
        pads.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        pads.floatData = [0, 0, .infinity, 0, 0, 0, 0, 0]
        pad.initializers.append(pads)
        pad.node("Pad", ["input", "pads"], "output")
        #expect(try refusal(pad, input: [1, 1, 2, 2], output: "output").message.contains("is not an integer"))
    }

    @Test("an NHWC input read through a Transpose pair is accepted as NHWC")
    func nhwcInput() throws {
        var graph = TinyGraph()
        graph.node("Transpose", ["input"], "nchw", ints: ["perm": [0, 3, 1, 2]])
        graph.node("Relu", ["nchw"], "r")
        graph.node("Transpose", ["r"], "output", ints: ["perm": [0, 2, 3, 1]])
        let result = try convert(graph, input: [1, 2, 2, 3], output: "output")
        #expect(result.model.metadata.input.layout == .nhwc && result.model.metadata.input.shape == [1, 2, 2, 3])
        #expect(result.model.metadata.output.layout == .nhwc && result.model.metadata.output.shape == [1, 2, 2, 3])
        #expect(result.model.layers.map(\.operation.opName) == ["relu"])
        let x: [Float] = (0..<12).map { Float($0) - 5 }
        #expect(try InferenceSession(model: result.model).run(x) == x.map { max($0, 0) })
    }
}
