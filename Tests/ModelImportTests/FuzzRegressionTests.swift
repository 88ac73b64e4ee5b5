import Foundation
import ModelImport
import Testing

/// ONNX inputs that crashed the converter, or made it ask for gigabytes, under the
/// fuzz-onnx harness (docs/FUZZING.md); kept in Tests/Fixtures/fuzz-regressions/onnx (and in
/// Fuzz/Corpus/onnx). Each is a few bytes to 12 KB and must now fail with an ImportError.
@Suite("Fuzz regressions: ONNX converter")
struct FuzzRegressionTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz-regressions/onnx")

    /// File -> a phrase the error message must contain, or "dropped" for inputs whose
    /// hostile node does not reach the graph output: those are now dropped before anything
    /// evaluates them (ConverterRulesTests checks the same nodes when they are live).
    static let expected: [String: String] = [
        // Input [1, 2^40] into LeakyRelu / PRelu with a scalar slope: a 2^40-element slope array.
        "leaky-huge-channels.onnx": "is too large",
        "prelu-scalar-huge.onnx": "is too large",
        // Input [1, 2^31, 2^31, 2^31] into Flatten: C*H*W overflowed.
        "flatten-overflow.onnx": "is too large",
        // Concat with no inputs: parts[0] out of range.
        "concat-empty.onnx": "has no inputs",
        // Reshape to a NaN shape value: Int(NaN) trap.
        "reshape-nan.onnx": "is not an integer",
        // Reshape target [1, 0, 0, 0] of a 2-D input: "copy dimension" 0 read past the input dims.
        "reshape-zero-index.onnx": "is not a valid reshape",
        // Pad with an infinite pad amount: Int(inf) trap.
        // (The Pad does not reach the output: dropped unevaluated.)
        "pad-inf.onnx": "dropped",
        // MaxPool with pads of 2^62: input + pads overflowed.
        "pool-huge-pads.onnx": "are invalid",
        // Mul of [1024,1,1] by [1,1024,1] by [1,1,1024] constants: folding asked for 8 GiB.
        // (The Muls do not reach the output: dropped unevaluated.)
        "broadcast-outer.onnx": "dropped",
    ]

    @Test("each input is refused with an ImportError (or its dead hostile node dropped)", arguments: expected.keys.sorted())
    func refused(_ name: String) throws {
        let data = try Data(contentsOf: Self.directory.appendingPathComponent(name))
        do {
            let result = try ONNXConverter.convert(data: data)
            if Self.expected[name] == "dropped" {
                #expect(result.explanation.first?.result.hasPrefix("dropped: its result does not reach the graph output") == true, "\(name): \(result.explanation)")
                return
            }
            Issue.record("\(name) was accepted")
        } catch let error as ImportError {
            #expect(error.description.contains(Self.expected[name]!), "\(name): \(error)")
        }
    }

    @Test("every committed regression input has an expectation")
    func complete() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path).filter { !$0.hasPrefix(".") }
        #expect(Set(files) == Set(Self.expected.keys))
    }
}
