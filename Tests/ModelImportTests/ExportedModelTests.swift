import BitEngine
import BitModel
import Foundation
import ModelImport
import SwiftProtobuf
import Testing

func onnxNodeCount(_ url: URL) throws -> Int {
    try Onnx_ModelProto(serializedBytes: try Data(contentsOf: url)).graph.node.count
}

/// One entry of Tests/Fixtures/onnx/EXPORTED.json: a model exported offline by PyTorch
/// (both exporters) or by tf2onnx from Larq/Keras (tools/onnx_fixtures/export_*.py).
struct ExportedFixture: Decodable, CustomStringConvertible {
    var files: [String: String]
    var input: String
    var expected: String
    var expected_from: String
    var opset: Int
    var family: String
    var exporter: String

    var model: String { files.keys.first { $0.hasSuffix(".onnx") }! }
    var description: String { model }

    static let all: [ExportedFixture] = {
        struct Manifest: Decodable { var fixtures: [String: ExportedFixture] }
        guard let data = try? Data(contentsOf: fixture("EXPORTED.json")),
              let manifest = try? JSONDecoder().decode(Manifest.self, from: data) else { return [] }
        return manifest.fixtures.keys.sorted().map { manifest.fixtures[$0]! }
    }()
}

/// What PyTorch's exporters and tf2onnx really write converts, and the converted model run
/// by the engine equals the committed expectation (ONNX Runtime for PyTorch exports, Keras
/// itself for Larq models) within 1e-4 of the largest output magnitude, with the same
/// argmax, for every kernel set and thread count.
@Suite("Exported models (PyTorch, tf2onnx/Larq)")
struct ExportedModelTests {
    @Test("the manifest lists every family, exporter and opset")
    func coverage() throws {
        let names = Set(ExportedFixture.all.map(\.model))
        for family in ["bireal", "reactnet", "xnor"] {
            for opset in [13, 17, 18] { #expect(names.contains("torch_\(family)_torchscript_opset\(opset).onnx")) }
            #expect(names.contains("torch_\(family)_dynamo_opset18.onnx"))
        }
        for family in ["bireal", "quicknet", "mlp"] {
            for opset in [13, 17] { #expect(names.contains("larq_\(family)_opset\(opset).onnx")) }
        }
        #expect(ExportedFixture.all.contains { $0.files.keys.contains { $0.hasSuffix(".onnx.data") } }, "dynamo exports keep external data")
    }

    @Test("converted model matches the exporter's framework", arguments: ExportedFixture.all)
    func equivalence(_ entry: ExportedFixture) throws {
        let result = try ONNXConverter.convert(contentsOf: fixture(entry.model))
        let input = try NumpyArray(Data(contentsOf: fixture(entry.input)))
        let expected = try NumpyArray(Data(contentsOf: fixture(entry.expected)))
        #expect(result.model.metadata.input.elementCount == input.values.count)
        #expect(result.model.metadata.output.elementCount == expected.values.count)
        let scale = expected.values.map(abs).max()!
        for kernels in KernelSet.available {
            for threads in [1, 2] {
                let output = try InferenceSession(model: result.model, threads: threads, kernels: kernels).run(input.values)
                let error = zip(output, expected.values).map { abs($0 - $1) }.max()!
                #expect(error <= 1e-4 * scale, "\(entry.model) \(kernels) x\(threads): max error \(error), scale \(scale) (\(entry.expected_from))")
                #expect(argmax(output) == argmax(expected.values), "\(entry.model) \(kernels) x\(threads)")
            }
        }
    }

    @Test("binary layers are recognised, every node is explained", arguments: ExportedFixture.all)
    func binaryLayers(_ entry: ExportedFixture) throws {
        let result = try ONNXConverter.convert(contentsOf: fixture(entry.model))
        let binary = result.model.layers.filter {
            switch $0.operation {
            case .binaryConv2D, .binaryDense: return true
            default: return false
            }
        }
        #expect(binary.count >= 2, "\(entry.model): \(result.model.layers.map(\.operation.opName))")
        // No binarized value is materialized as floats, except for the MLPs' float classifier.
        #expect(!result.model.layers.contains { $0.operation == .sign } || ["xnor", "mlp"].contains(entry.family),
                "\(entry.model): \(result.model.layers.map(\.operation.opName))")
        let onnxNodes = try onnxNodeCount(fixture(entry.model))
        #expect(result.explanation.count == onnxNodes)
        #expect(result.explanation.allSatisfy { !$0.result.isEmpty })
    }

    func argmax(_ values: [Float]) -> Int { values.indices.max { values[$0] < values[$1] }! }
}
