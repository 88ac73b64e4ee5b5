import ArgumentParser
import BitEngine
import BitModel
import Foundation

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a model on one input tensor.",
        discussion: """
        The input and output are float32 tensors in the model's declared layout (NCHW for \
        models imported from ONNX): raw little-endian float32, or .npy when the file name \
        ends in .npy. Without --output the output values are printed, with the top classes \
        when the model has labels.

        Examples:
          fleetctl model run model.bnn --input x.npy --output y.npy
          fleetctl model run model.bnn --input x.f32
        """
    )

    @Argument(help: "The .bnn file.") var file: String
    @Option(help: "Input tensor (.npy or raw float32).") var input: String
    @Option(help: "Where to write the output tensor (.npy or raw float32).") var output: String?
    @Option(help: "Threads to use.") var threads = 1
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
        let model = try readModel(at: file)
        let session = try InferenceSession(model: model, threads: threads)
        let values = try TensorFile.read(input, expectedCount: session.inputElementCount)
        let result = try session.run(values)
        if let output {
            try TensorFile.write(result, shape: model.metadata.output.shape, to: output)
        }
        let top = result.indices.sorted { result[$0] > result[$1] }.prefix(min(5, result.count))
        if json {
            struct Report: Encodable { var output: [Float]; var top: [Int]; var labels: [String] }
            try printJSON(Report(output: result, top: Array(top), labels: top.map { model.metadata.labels.indices.contains($0) ? model.metadata.labels[$0] : "" }))
        } else if output == nil {
            if result.count <= 100 {
                print(result.map { String($0) }.joined(separator: " "))
            }
            for index in top {
                let label = model.metadata.labels.indices.contains(index) ? " \(model.metadata.labels[index])" : ""
                print("class \(index)\(label): \(result[index])")
            }
        }
    }
}

/// Raw float32 or .npy tensors on disk.
enum TensorFile {
    static func read(_ path: String, expectedCount: Int) throws -> [Float] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CLIError("cannot read \(path)")
        }
        let values: [Float]
        if NumpyArray.isNumpy(data) {
            do {
                values = try NumpyArray(data).values
            } catch {
                throw CLIError("\(path): \(error)")
            }
        } else {
            guard data.count % 4 == 0 else { throw CLIError("\(path): \(data.count) bytes is not a whole number of float32 values") }
            values = data.withUnsafeBytes { raw in
                (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        }
        guard values.count == expectedCount else {
            throw CLIError("\(path) holds \(values.count) values, the model takes \(expectedCount)")
        }
        return values
    }

    static func write(_ values: [Float], shape: [Int], to path: String) throws {
        let data: Data
        if path.hasSuffix(".npy") {
            data = NumpyArray(shape: shape, values: values).data
        } else {
            var raw = Data(capacity: values.count * 4)
            for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { raw.append(contentsOf: $0) } }
            data = raw
        }
        try AtomicFile.write(data, to: URL(fileURLWithPath: path))
    }
}
