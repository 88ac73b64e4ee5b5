import ArgumentParser
import BitModel
import Foundation

struct SynthesizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synthesize",
        abstract: "Write a reference architecture with seeded random weights (for benchmarks).",
        discussion: """
        Latency does not depend on weight values, so these files measure what a trained \
        model of the same shape costs. Architectures: \(SyntheticModels.Architecture.allCases.map(\.rawValue).joined(separator: ", ")).

        Examples:
          fleetctl model synthesize bireal18 -o /tmp/bireal18.bnn
          fleetctl model synthesize conv3x3-64 -o /tmp/conv.bnn
        """
    )

    @Argument(help: "Architecture name.") var architecture: String
    @Option(name: .shortAndLong, help: "Output .bnn file.") var output: String
    @Option(help: "Input height and width.") var inputSize = 224
    @Option(help: "Output classes (classifiers).") var classes = 1000
    @Option(help: "Random seed.") var seed: UInt64 = 0

    func run() throws {
        guard let kind = SyntheticModels.Architecture(rawValue: architecture) else {
            throw ValidationError("unknown architecture '\(architecture)'; choose one of \(SyntheticModels.Architecture.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let model = SyntheticModels.make(kind, inputSize: inputSize, classes: classes, seed: seed)
        try ModelWriter.write(model, to: URL(fileURLWithPath: output))
        let size = (try FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        print("wrote \(output) (\(formatBytes(size)), \(model.layers.count) layers)")
    }
}
