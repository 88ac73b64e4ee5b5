import BitModel
import Foundation
import SwiftProtobuf

/// The parts of an ONNX model the converter reads, decoded from protobuf and checked:
/// nodes in order, constant tensors (initializers and Constant nodes), the single input and
/// output.
struct ONNXGraph {
    var nodes: [ONNXNode]
    var constants: [String: ONNXConstant]
    var input: (name: String, dims: [Int], symbolicBatch: Bool)
    var output: String
    var opset: Int
    var producer: String

    static let supportedOpsets = 11...21

    init(data: Data) throws {
        let model: Onnx_ModelProto
        do {
            model = try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw ImportError("file", "not a valid ONNX protobuf (\(error)); is the file truncated?")
        }
        guard model.hasGraph, !model.graph.node.isEmpty else {
            throw ImportError("model.graph", "the model has no graph or no nodes")
        }
        let defaultOpset = model.opsetImport.first { $0.domain.isEmpty || $0.domain == "ai.onnx" }
        guard let opset = defaultOpset.map({ Int($0.version) }) else {
            throw ImportError("model.opset_import", "no opset for the default ONNX domain")
        }
        guard Self.supportedOpsets.contains(opset) else {
            throw ImportError("model.opset_import", "opset \(opset) is not supported (supported: \(Self.supportedOpsets.lowerBound)-\(Self.supportedOpsets.upperBound))")
        }
        self.opset = opset
        producer = [model.producerName, model.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        let graph = model.graph

        var constants: [String: ONNXConstant] = [:]
        for tensor in graph.initializer {
            constants[tensor.name] = try ONNXConstant(tensor, location: "initializer '\(tensor.name)'")
        }
        nodes = []
        for (index, proto) in graph.node.enumerated() {
            let node = ONNXNode(proto, index: index)
            if node.domain != "" && node.domain != "ai.onnx" {
                throw ImportError.node(node, "operator domain '\(node.domain)' is not supported (only the default ONNX domain)")
            }
            nodes.append(node)
        }
        self.constants = constants

        let realInputs = graph.input.filter { constants[$0.name] == nil }
        guard realInputs.count == 1 else {
            throw ImportError("graph.input", "expected exactly one non-constant input, found \(realInputs.count) (\(realInputs.map(\.name)))")
        }
        let inputInfo = realInputs[0]
        guard case .tensorType(let tensorType)? = inputInfo.type.value, tensorType.hasShape else {
            throw ImportError("graph.input '\(inputInfo.name)'", "the input has no tensor shape; the engine needs static shapes to plan memory")
        }
        guard tensorType.elemType == Onnx_TensorProto.DataType.float.rawValue else {
            throw ImportError("graph.input '\(inputInfo.name)'", "input element type \(tensorType.elemType) is not float32")
        }
        var dims: [Int] = []
        var symbolicBatch = false
        for (axis, dim) in tensorType.shape.dim.enumerated() {
            switch dim.value {
            case .dimValue(let value)? where value > 0:
                dims.append(Int(value))
            case .dimParam(let name)? where axis == 0:
                dims.append(1)
                symbolicBatch = true
                _ = name
            default:
                throw ImportError("graph.input '\(inputInfo.name)' dimension \(axis)",
                                  "dynamic or unknown size (\(dim.dimParam.isEmpty ? "unset" : dim.dimParam)); the engine plans memory ahead and needs a fixed shape (only the batch dimension may be symbolic)")
            }
        }
        guard dims.first == 1, dims.count == 2 || dims.count == 4 else {
            throw ImportError("graph.input '\(inputInfo.name)'", "shape \(dims) is not [1, C, H, W] or [1, N]")
        }
        // Bounded like a .bnn file's values, so no size derived from the input can overflow
        // or make the converter allocate gigabytes.
        var elements = 1
        for dim in dims {
            let (product, overflow) = elements.multipliedReportingOverflow(by: dim)
            guard dim <= ModelLimits.maxDimension, !overflow, product <= ModelLimits.maxActivationElements else {
                throw ImportError("graph.input '\(inputInfo.name)'", "shape \(dims) is too large (at most \(ModelLimits.maxDimension) per dimension and \(ModelLimits.maxActivationElements) elements)")
            }
            elements = product
        }
        input = (inputInfo.name, dims, symbolicBatch)
        guard graph.output.count == 1 else {
            throw ImportError("graph.output", "expected exactly one output, found \(graph.output.count)")
        }
        output = graph.output[0].name
    }
}

struct ONNXNode {
    var name: String
    var opType: String
    var domain: String
    var inputs: [String]
    var outputs: [String]
    var attributes: [String: Onnx_AttributeProto]

    init(_ proto: Onnx_NodeProto, index: Int) {
        name = proto.name.isEmpty ? "#\(index) \(proto.opType)" : proto.name
        opType = proto.opType
        domain = proto.domain
        inputs = proto.input
        outputs = proto.output
        attributes = Dictionary(proto.attribute.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    func int(_ name: String, default value: Int) -> Int {
        attributes[name].map { Int($0.i) } ?? value
    }

    func float(_ name: String, default value: Float) -> Float {
        attributes[name].map { $0.f } ?? value
    }

    func ints(_ name: String) -> [Int]? {
        attributes[name].map { $0.ints.map { Int($0) } }
    }

    func string(_ name: String) -> String? {
        attributes[name].map { String(decoding: $0.s, as: UTF8.self) }
    }
}

/// A constant tensor, as doubles (exact for float32 and for the int64 shapes and pads
/// the converter reads).
struct ONNXConstant {
    var dims: [Int]
    var values: [Double]

    init(dims: [Int], values: [Double]) {
        self.dims = dims
        self.values = values
    }

    init(_ tensor: Onnx_TensorProto, location: String) throws {
        dims = tensor.dims.map { Int($0) }
        guard dims.allSatisfy({ $0 >= 0 }) else { throw ImportError(location, "negative dimension in \(dims)") }
        // Zero-sized dimensions count as 1 here, so that no product of dimensions (such as
        // the strides of a broadcast) can overflow even when the tensor is empty.
        var count = 1, extent = 1
        for dim in dims {
            let (product, overflow) = extent.multipliedReportingOverflow(by: max(dim, 1))
            guard !overflow, product <= 1 << 30 else { throw ImportError(location, "shape \(dims) is too large") }
            extent = product
            count *= dim
        }
        if tensor.dataLocation == .external {
            throw ImportError(location, "external data is not supported; save the model with weights inside the file")
        }
        let raw = tensor.rawData
        let shape = dims
        func fromRaw<T: FixedWidthInteger>(_ type: T.Type, _ convert: (T) -> Double) throws -> [Double] {
            let size = MemoryLayout<T>.size
            guard raw.count == count * size else {
                throw ImportError(location, "raw data has \(raw.count) bytes, shape \(shape) needs \(count * size)")
            }
            return raw.withUnsafeBytes { bytes in
                (0..<count).map { convert(T(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * size, as: T.self))) }
            }
        }
        switch Onnx_TensorProto.DataType(rawValue: Int(tensor.dataType)) {
        case .float?:
            values = raw.isEmpty ? tensor.floatData.map(Double.init) : try fromRaw(UInt32.self) { Double(Float(bitPattern: $0)) }
        case .double?:
            values = raw.isEmpty ? tensor.doubleData : try fromRaw(UInt64.self) { Double(bitPattern: $0) }
        case .int64?:
            values = raw.isEmpty ? tensor.int64Data.map(Double.init) : try fromRaw(Int64.self) { Double($0) }
        case .int32?:
            values = raw.isEmpty ? tensor.int32Data.map(Double.init) : try fromRaw(Int32.self) { Double($0) }
        case .bool?:
            values = raw.isEmpty ? tensor.int32Data.map(Double.init) : try fromRaw(UInt8.self) { Double($0) }
        default:
            throw ImportError(location, "data type \(tensor.dataType) is not supported (float, double, int32, int64, bool)")
        }
        guard values.count == count else {
            throw ImportError(location, "has \(values.count) values, shape \(dims) needs \(count)")
        }
    }

    var floats: [Float] { values.map { Float($0) } }

    /// The values as integers (shapes, pads); an error naming the role unless every value
    /// is a whole number of magnitude at most `limit` (NaN, infinities and 1e300 are not).
    func integers(_ role: String, of node: ONNXNode, limit: Int = 1 << 31) throws -> [Int] {
        try values.map { value in
            guard value.isFinite, value.rounded() == value, abs(value) <= Double(limit) else {
                throw ImportError.node(node, "\(role) value \(value) is not an integer in -\(limit)...\(limit)")
            }
            return Int(value)
        }
    }
    var count: Int { values.count }
}
