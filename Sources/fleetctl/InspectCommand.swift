import ArgumentParser
import BitModel
import Foundation

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a model's metadata, layers, shapes, parameter sizes and MAC counts.",
        discussion: """
        Examples:
          fleetctl model inspect model.bnn
          fleetctl model inspect model.bnn --json | jq .binaryMACs
        """
    )

    @Argument(help: "The .bnn file.") var file: String
    @Flag(help: "Print one JSON object for scripts.") var json = false

    struct Report: Encodable {
        var file: String
        var fileBytes: Int
        var metadata: ModelMetadata
        var statistics: ModelStatistics
        var selfTests: Int
    }

    func run() throws {
        let model = try readModel(at: file)
        let statistics = try ModelStatistics(model)
        let fileBytes = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        if json {
            try printJSON(Report(file: file, fileBytes: fileBytes, metadata: model.metadata, statistics: statistics,
                                 selfTests: model.selfTests.count))
            return
        }
        let m = model.metadata
        print("\(m.name) \(m.version)\(m.description.isEmpty ? "" : " - \(m.description)")")
        print("producer: \(m.producer.isEmpty ? "-" : m.producer)")
        print("input:  \(m.input.name) \(m.input.shape) \(m.input.layout.rawValue)")
        print("output: \(m.output.name) \(m.output.shape) \(m.output.layout.rawValue)")
        if let p = m.preprocessing { print("preprocessing: x * \(p.scale), mean \(p.mean), std \(p.std)") }
        if !m.labels.isEmpty { print("labels: \(m.labels.joined(separator: ", "))") }
        for (key, value) in m.properties.sorted(by: { $0.key < $1.key }) { print("\(key): \(value)") }
        print("self tests: \(model.selfTests.count)")
        print("")
        var rows = [["#", "layer", "op", "inputs", "output", "params", "bytes", "binary MACs", "float MACs"]]
        for l in statistics.layers {
            rows.append(["\(l.index)", l.name, l.op, l.inputs.map(String.init).joined(separator: ","), l.output,
                         l.parameterBits == 0 ? "" : formatCount(l.parameterBits) + "b",
                         l.parameterBytes == 0 ? "" : formatBytes(l.parameterBytes),
                         l.binaryMACs == 0 ? "" : formatCount(l.binaryMACs),
                         l.floatMACs == 0 ? "" : formatCount(l.floatMACs)])
        }
        print(table(rows))
        print("")
        print("total: \(statistics.layers.count) layers, \(formatCount(statistics.parameterBits))bits of parameters (\(formatBytes(statistics.parameterBytes))), \(formatCount(statistics.binaryMACs)) binary MACs, \(formatCount(statistics.floatMACs)) float MACs, file \(formatBytes(fileBytes))")
    }
}
