import Foundation
import SwiftProtobuf

/// An ONNX file together with the external data files beside it (PyTorch's dynamo exporter
/// writes `model.onnx` + `model.onnx.data`). `fleetctl model push` uses it to send one
/// self-contained model to the controller, which converts uploads from bytes alone.
public enum ONNXModelFile {
    /// protobuf's 2 GiB message limit; an embedded model must stay below it.
    static let maxEmbeddedBytes = Int(Int32.max)

    /// The external data files the ONNX bytes refer to, in first-use order; empty for a
    /// self-contained model (or bytes that are not ONNX).
    public static func externalDataLocations(_ data: Data) -> [String] {
        guard let model = try? Onnx_ModelProto(serializedBytes: data) else { return [] }
        var locations: [String] = []
        for tensor in tensors(of: model) where tensor.dataLocation == .external {
            let location = tensor.externalData.first { $0.key == "location" }?.value ?? ""
            if !locations.contains(location) { locations.append(location) }
        }
        return locations
    }

    /// The model at `url` with every external tensor read into it (from files in the
    /// model's folder only, as the converter reads them), and the files that were read.
    public static func selfContained(contentsOf url: URL) throws -> (data: Data, embedded: [String]) {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw ImportError(url.path, "cannot read the file: \(error.localizedDescription)")
        }
        var model: Onnx_ModelProto
        do {
            model = try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw ImportError(url.path, "not a valid ONNX protobuf (\(error)); is the file truncated?")
        }
        let reader = ExternalDataReader(directory: url.deletingLastPathComponent())
        var total = data.count
        func embed(_ tensor: inout Onnx_TensorProto, location: String) throws {
            guard tensor.dataLocation == .external else { return }
            let bytes = try byteCount(of: tensor, location: location)
            let (sum, overflow) = total.addingReportingOverflow(bytes)
            guard !overflow, sum < maxEmbeddedBytes else {
                throw ImportError(location, "the weights are too large to embed in one ONNX message (2 GiB); convert the model first (fleetctl model convert) and push the .bnn")
            }
            total = sum
            tensor.rawData = try reader.read(tensor, bytes: bytes, location: location)
            tensor.externalData = []
            tensor.dataLocation = .default
        }
        for index in model.graph.initializer.indices {
            try embed(&model.graph.initializer[index], location: "initializer '\(model.graph.initializer[index].name)'")
        }
        for n in model.graph.node.indices {
            for a in model.graph.node[n].attribute.indices where model.graph.node[n].attribute[a].hasT {
                try embed(&model.graph.node[n].attribute[a].t, location: "node '\(model.graph.node[n].name)' attribute '\(model.graph.node[n].attribute[a].name)'")
            }
        }
        do {
            return (try model.serializedData(), reader.locationsRead)
        } catch {
            throw ImportError(url.path, "cannot serialize the self-contained model: \(error)")
        }
    }

    static func tensors(of model: Onnx_ModelProto) -> [Onnx_TensorProto] {
        model.graph.initializer + model.graph.node.flatMap { $0.attribute.filter(\.hasT).map(\.t) }
    }

    static func byteCount(of tensor: Onnx_TensorProto, location: String) throws -> Int {
        let size: Int
        switch Onnx_TensorProto.DataType(rawValue: Int(tensor.dataType)) {
        case .float?, .int32?, .uint32?: size = 4
        case .double?, .int64?, .uint64?: size = 8
        case .float16?, .bfloat16?, .int16?, .uint16?: size = 2
        case .bool?, .int8?, .uint8?: size = 1
        default: throw ImportError(location, "data type \(tensor.dataType) cannot be embedded")
        }
        var count = size
        for dim in tensor.dims {
            let (product, overflow) = count.multipliedReportingOverflow(by: Int(dim))
            guard dim >= 0, !overflow, product < maxEmbeddedBytes else { throw ImportError(location, "shape \(tensor.dims) is too large") }
            count = product
        }
        return count
    }
}
