import BitModel

/// Self-test vectors: an input and the output a model must produce for it. A converter
/// stores one in the file; a device runs them before it activates the model, so a corrupted
/// file, a wrong conversion or a kernel that misbehaves on that CPU is caught before the
/// model serves traffic.
public enum SelfTests {
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var vector: Int
        public var reason: String
        public var description: String { "self test \(vector): \(reason)" }
    }

    /// The seed of the default self-test input, fixed so conversions are reproducible.
    public static let defaultSeed: UInt64 = 0x5E1F_7E57

    /// Adds one vector: `input` (default: seeded uniform values in [-1, 1]) and this
    /// engine's output for it, computed with the portable kernels.
    public static func addVector(to model: inout Model, input: [Float]? = nil, tolerance: Float = 1e-3) throws {
        let session = try InferenceSession(model: model, kernels: .portable)
        var random = SeededGenerator(seed: defaultSeed)
        let values = input ?? random.floats(session.inputElementCount)
        let expected = try session.run(values)
        let first = model.tensors.count
        model.tensors.append(Tensor(shape: model.metadata.input.shape, floats: values))
        model.tensors.append(Tensor(shape: model.metadata.output.shape, floats: expected))
        model.selfTests.append(SelfTestVector(input: first, expected: first + 1, tolerance: tolerance))
    }

    /// Runs every vector on `session`; throws the first failure. Outputs must be within
    /// `tolerance` times the largest expected magnitude and agree on the argmax.
    public static func verify(_ session: InferenceSession) throws {
        let model = session.model
        for (index, vector) in model.selfTests.enumerated() {
            let expected = model.tensors[vector.expected].floats
            let actual = try session.run(model.tensors[vector.input].floats)
            let scale = max(expected.map(abs).max() ?? 0, Float.leastNormalMagnitude)
            var worst: Float = 0
            for (a, e) in zip(actual, expected) {
                let error = abs(a - e)
                guard error.isFinite || (a.isNaN && e.isNaN) else {
                    throw Failure(vector: index, reason: "output is not finite where the expected value is \(e)")
                }
                worst = max(worst, error)
            }
            guard worst <= vector.tolerance * scale else {
                throw Failure(vector: index, reason: "max error \(worst / scale) relative exceeds the tolerance \(vector.tolerance)")
            }
            let argmax = { (x: [Float]) in x.indices.max { x[$0] < x[$1] } }
            guard argmax(actual) == argmax(expected) else {
                throw Failure(vector: index, reason: "top class \(argmax(actual) ?? -1) differs from the expected \(argmax(expected) ?? -1)")
            }
        }
    }
}
