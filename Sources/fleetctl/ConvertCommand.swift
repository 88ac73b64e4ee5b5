import ArgumentParser
import BitEngine
import BitModel
import Foundation
import ModelImport

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert an ONNX model of a binary neural network to a .bnn file.",
        discussion: """
        Constant subgraphs are evaluated first (weights computed in the graph, shapes). \
        Binarized activations (Sign, Where(x >= t, 1, -1), Larq's Sign(Sign(x) + 0.1)) \
        feeding Conv/Gemm/MatMul layers whose weights are s * (+-1) per output channel \
        become XNOR/popcount layers; BatchNorm and constant scales fold into them; \
        straight-through estimators a - b + b become a; layout Transposes (tf2onnx's NHWC) \
        cancel; the rest runs in float. External data files beside the model \
        (model.onnx.data from PyTorch's dynamo exporter) are read from its folder. The converted model gets a self-test vector computed \
        by the engine on a fixed input (or the one you give), which agents check before \
        activating it. The output is written atomically: on any error no file is left.

        Examples:
          fleetctl model convert bnn-cnn.onnx -o bnn-cnn.bnn --name fashion-cnn --version v1 \\
              --labels labels.txt --mean 0.286 --std 0.353
          fleetctl model convert model.onnx -o model.bnn --explain
        """
    )

    @Argument(help: "The ONNX file.") var input: String
    @Option(name: .shortAndLong, help: "Output .bnn file.") var output: String
    @Option(help: "Model name (default: the file name).") var name: String?
    @Option(help: "Version label, e.g. v3.") var version = ""
    @Option(help: "Description.") var description = ""
    @Option(help: "File with one class label per line.") var labels: String?
    @Option(help: "Per-channel mean for image preprocessing (comma-separated).") var mean: String?
    @Option(help: "Per-channel std for image preprocessing (comma-separated).") var std: String?
    @Option(help: "Scale applied to raw pixel values before mean/std.") var pixelScale: Float = 1.0 / 255
    @Option(help: "Extra metadata, key=value (repeatable).") var property: [String] = []
    @Option(help: "Self-test input (.npy) instead of the built-in fixed input.") var selfTestInput: String?
    @Option(help: "Expected output (.npy) for --self-test-input, e.g. from ONNX Runtime.") var selfTestExpected: String?
    @Flag(help: "Do not store a self-test vector (smaller file; agents then cannot check the model before activating it).") var noSelfTest = false
    @Flag(help: "Print which ONNX nodes became which engine layers and why.") var explain = false
    @Flag(help: "Print a JSON summary instead of text.") var json = false

    func run() throws {
        var options = ConversionOptions(name: name, version: version, description: description)
        if let labels {
            guard let text = try? String(contentsOfFile: labels, encoding: .utf8) else { throw CLIError("cannot read labels file \(labels)") }
            options.labels = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        if mean != nil || std != nil {
            options.preprocessing = Preprocessing(scale: pixelScale, mean: try floats(mean ?? "0", option: "--mean"),
                                                  std: try floats(std ?? "1", option: "--std"))
        }
        for entry in property {
            let parts = entry.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw ValidationError("--property takes key=value, got '\(entry)'") }
            options.properties[String(parts[0])] = String(parts[1])
        }
        let result: ConversionResult
        do {
            result = try ONNXConverter.convert(contentsOf: URL(fileURLWithPath: input), options: options)
        } catch let error as ImportError {
            throw CLIError("cannot convert \(input): \(error)")
        }
        var model = result.model
        do {
            try model.validate()
        } catch {
            throw CLIError("cannot convert \(input): \(error)")
        }
        if !noSelfTest { try addSelfTest(to: &model) }
        try ModelWriter.write(model, to: URL(fileURLWithPath: output))
        let statistics = try ModelStatistics(model)
        let size = (try FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        if json {
            struct Summary: Encodable {
                var output: String; var bytes: Int; var layers: Int; var binaryMACs: Int; var floatMACs: Int
                var explanation: [NodeExplanation]; var notes: [String]
            }
            try printJSON(Summary(output: output, bytes: size, layers: model.layers.count, binaryMACs: statistics.binaryMACs,
                                  floatMACs: statistics.floatMACs, explanation: result.explanation, notes: result.notes))
            return
        }
        if explain {
            print(table([["ONNX node", "op", "became"]] + result.explanation.map { [$0.node, $0.opType, $0.result] }))
            print("")
        }
        for note in result.notes { print("note: \(note)") }
        print("wrote \(output): \(model.layers.count) layers, \(formatBytes(size)), \(formatCount(statistics.binaryMACs)) binary MACs, \(formatCount(statistics.floatMACs)) float MACs, \(model.selfTests.count) self-test vector(s)")
    }

    private func floats(_ text: String, option: String) throws -> [Float] {
        let values = text.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else { throw ValidationError("\(option) takes comma-separated numbers, got '\(text)'") }
        return values.map { $0! }
    }

    /// One input/expected-output pair stored in the file. By default the expected output
    /// comes from this engine on a seeded input: it pins the converted model's behaviour,
    /// so a device whose kernels or file disagree refuses to activate it.
    private func addSelfTest(to model: inout Model) throws {
        var input: [Float]?
        if let selfTestInput {
            input = try TensorFile.read(selfTestInput, expectedCount: model.metadata.input.elementCount)
        }
        try SelfTests.addVector(to: &model, input: input)
        if let selfTestExpected {
            let expected = try TensorFile.read(selfTestExpected, expectedCount: model.metadata.output.elementCount)
            let actual = model.tensors[model.selfTests[0].expected].floats
            let scale = max(expected.map(abs).max() ?? 0, 1e-12)
            let error = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
            guard error <= 1e-4 * scale else {
                throw CLIError("the converted model disagrees with \(selfTestExpected): max error \(error / scale) relative (tolerance 1e-4)")
            }
        }
    }
}
