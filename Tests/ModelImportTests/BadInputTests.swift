import BitModel
import Foundation
@testable import ModelImport
import SwiftProtobuf
import Testing

/// Malformed or unsupported ONNX input fails with an error naming the node or field.
@Suite("Converter errors")
struct BadInputTests {
    func fixtureModel(_ name: String = "binary_cnn") throws -> Onnx_ModelProto {
        try Onnx_ModelProto(serializedBytes: try Data(contentsOf: fixture("\(name).onnx")))
    }

    func convertError(_ model: Onnx_ModelProto, options: ConversionOptions = ConversionOptions()) throws -> ImportError? {
        do {
            _ = try ONNXConverter.convert(data: try model.serializedData(), options: options)
            return nil
        } catch let error as ImportError {
            return error
        }
    }

    @Test("truncated and garbage files")
    func truncated() throws {
        let data = try Data(contentsOf: fixture("binary_cnn.onnx"))
        for length in [0, 10, data.count / 3, data.count - 7] {
            #expect(throws: ImportError.self, "prefix \(length)") { try ONNXConverter.convert(data: data.prefix(length)) }
        }
        #expect(throws: ImportError.self) { try ONNXConverter.convert(data: Data("not a model".utf8)) }
    }

    @Test("a missing initializer names the node and the input")
    func missingInitializer() throws {
        var model = try fixtureModel()
        let conv = model.graph.node.first { $0.opType == "Conv" && $0.name != model.graph.node[0].name }!
        model.graph.initializer.removeAll { $0.name == conv.input[1] }
        let error = try #require(try convertError(model))
        #expect(error.location == "node '\(conv.name)' (Conv)")
        #expect(error.message.contains(conv.input[1]))
    }

    @Test("dynamic spatial shapes are refused, a symbolic batch is accepted")
    func dynamicShapes() throws {
        var model = try fixtureModel()
        var dimension = Onnx_TensorShapeProto.Dimension()
        dimension.dimParam = "height"
        model.graph.input[0].type.tensorType.shape.dim[2] = dimension
        let error = try #require(try convertError(model))
        #expect(error.location.contains("dimension 2"))
        #expect(error.message.contains("dynamic"))

        var batched = try fixtureModel()
        var batch = Onnx_TensorShapeProto.Dimension()
        batch.dimParam = "N"
        batched.graph.input[0].type.tensorType.shape.dim[0] = batch
        let result = try ONNXConverter.convert(data: try batched.serializedData())
        #expect(result.notes.contains { $0.contains("batch") })
    }

    @Test("an unsupported operator lists what is supported")
    func unsupportedOperator() throws {
        var model = try fixtureModel()
        let index = model.graph.node.firstIndex { $0.opType == "Clip" } ?? 3
        model.graph.node[index].opType = "Erf"
        let error = try #require(try convertError(model))
        #expect(error.location == "node '\(model.graph.node[index].name)' (Erf)")
        #expect(error.message.contains("BatchNormalization") && error.message.contains("Conv"))
        // What would be needed: a new engine layer, since it is not a foldable constant computation.
        #expect(error.message.contains("operator Erf is not supported on activations"))
        #expect(error.message.contains("would need a new one") && error.message.contains("folded when all inputs are constant"))
    }

    @Test("a wrong number of labels is refused")
    func wrongLabels() throws {
        let error = try #require(try convertError(try fixtureModel(), options: ConversionOptions(labels: ["a", "b", "c"])))
        #expect(error.message.contains("labels"))
    }

    @Test("an opset outside 11...21 is refused")
    func unsupportedOpset() throws {
        var model = try fixtureModel()
        model.opsetImport[0].version = 7
        let error = try #require(try convertError(model))
        #expect(error.message.contains("opset 7"))
    }
}
