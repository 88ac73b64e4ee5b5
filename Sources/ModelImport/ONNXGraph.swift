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
    /// Reads tensors kept in files beside the model; nil when converting bytes alone.
    let externalData: ExternalDataReader?

    static let supportedOpsets = 11...21

    init(data: Data, externalData: ExternalDataReader? = nil) throws {
        self.externalData = externalData
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
            constants[tensor.name] = try ONNXConstant(tensor, location: "initializer '\(tensor.name)'", external: externalData)
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
