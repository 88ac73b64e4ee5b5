import BitEngine
import BitModel
import Testing

func metadata(input: [Int], layout: TensorLayout = .nhwc, output: [Int], outputLayout: TensorLayout = .nhwc) -> ModelMetadata {
    ModelMetadata(name: "test", input: TensorSpec(name: "input", shape: input, layout: layout),
                  output: TensorSpec(name: "output", shape: output, layout: outputLayout))
}

/// max |a - b| relative to the largest |b| (at least 1).
func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    let scale = max(b.map(abs).max() ?? 0, 1)
    return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
}

func argmax(_ x: [Float]) -> Int { x.indices.max { x[$0] < x[$1] } ?? 0 }

/// Runs `model` on the engine with every kernel set and thread count given and on the
/// reference; returns (engine output, reference output) pairs.
func compareWithReference(_ model: Model, input: [Float], kernels: KernelSet, threads: [Int] = [1, 2]) throws -> [([Float], [Float])] {
    let expected = try ReferenceInterpreter(model: model).run(input)
    return try threads.map { count in
        let session = try InferenceSession(model: model, threads: count, kernels: kernels)
        return (try session.run(input), expected)
    }
}
