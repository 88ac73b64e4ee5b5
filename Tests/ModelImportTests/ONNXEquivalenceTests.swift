import BitEngine
import BitModel
import Foundation
import ModelImport
import Testing

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/onnx")

func fixture(_ name: String) -> URL { fixtures.appendingPathComponent(name) }

/// Every ONNX fixture, converted and run by the engine, equals ONNX Runtime's output
/// (committed by tools/onnx_fixtures/gen_fixtures.py) within 1e-4 of the largest output
/// magnitude, with the same argmax, for every kernel set and thread count.
@Suite("ONNX Runtime equivalence")
struct ONNXEquivalenceTests {
    static let names = ["binary_mlp", "binary_cnn", "bireal_small", "xnor_alpha", "binary_cnn_opset11", "binary_cnn_opset21",
                        "ops_head_opset13", "ops_head_opset18", "ops_binarize"] + operatorFixtures
    /// One small graph per operator that ordinary exports contain, so a failure names it.
    static let operatorFixtures = ["op_logsoftmax", "op_neg", "op_cast", "op_clip_sign", "op_reducemean_opset13",
                                   "op_reducemean_opset18", "op_transpose_flatten", "op_threshold"]
    /// Fixtures of float-only heads, without binary layers.
    static let floatOnly: Set = ["ops_head_opset13", "ops_head_opset18", "op_logsoftmax", "op_reducemean_opset13", "op_reducemean_opset18"]

    @Test("converted fixture matches ONNX Runtime", arguments: names)
    func equivalence(name: String) throws {
        let result = try ONNXConverter.convert(contentsOf: fixture("\(name).onnx"))
        let input = try NumpyArray(Data(contentsOf: fixture("\(name).input.npy")))
        let expected = try NumpyArray(Data(contentsOf: fixture("\(name).expected.npy")))
        #expect(result.model.metadata.input.shape == input.shape)
        #expect(result.model.metadata.output.shape == expected.shape)
        let scale = expected.values.map(abs).max()!
        for kernels in KernelSet.available {
            for threads in [1, 2] {
                let output = try InferenceSession(model: result.model, threads: threads, kernels: kernels).run(input.values)
                let error = zip(output, expected.values).map { abs($0 - $1) }.max()!
                #expect(error <= 1e-4 * scale, "\(name) \(kernels) x\(threads): max error \(error), scale \(scale)")
                #expect(output.indices.max { output[$0] < output[$1] } == expected.values.indices.max { expected.values[$0] < expected.values[$1] })
            }
        }
    }

    @Test("binary layers are recognised in every fixture", arguments: names.filter { !floatOnly.contains($0) })
    func binaryLayersRecognised(name: String) throws {
        let result = try ONNXConverter.convert(contentsOf: fixture("\(name).onnx"))
        let binary = result.model.layers.filter {
            if case .binaryConv2D = $0.operation { return true }
            if case .binaryDense = $0.operation { return true }
            return false
        }
        #expect(!binary.isEmpty)
        #expect(!result.model.layers.contains { if case .channelAffine = $0.operation { return true } else { return false } } || name == "bireal_small" || name == "binary_mlp" || name == "ops_binarize",
                "BatchNorm after conv/dense should be folded: \(result.model.layers.map(\.operation.opName))")
        #expect(result.explanation.count > 0)
    }
}
