import ArgumentParser
import BitEngine
import BitModel
import Foundation

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a model on a tensor, an image, or an IDX test set.",
        discussion: """
        --input takes a float32 tensor in the model's declared layout (NCHW for models \
        imported from ONNX), as .npy or raw little-endian float32, or a grayscale PGM image, \
        which gets the model's preprocessing (resize, scale, mean/std). --idx runs an IDX \
        image set (plain or .gz) and, with labels, prints the top-1 accuracy.

        Examples:
          fleetctl model run model.bnn --input x.npy --output y.npy
          fleetctl model run model.bnn --input shoe.pgm
          fleetctl model run model.bnn --idx /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --limit 1000
        """
    )

    @Argument(help: "The .bnn file.") var file: String
    @Option(help: "Input: .npy, raw float32 or .pgm image.") var input: String?
    @Option(help: "Where to write the output tensor (.npy or raw float32).") var output: String?
    @Option(help: "IDX image file (plain or .gz) to evaluate.") var idx: String?
    @Option(help: "IDX label file (default: derived from --idx, images-idx3 -> labels-idx1).") var idxLabels: String?
    @Option(help: "Evaluate only the first N images.") var limit: Int?
    @Option(help: "Threads to use.") var threads = 1
    @Flag(help: "Print the result as JSON.") var json = false

    func validate() throws {
        guard (input == nil) != (idx == nil) else { throw ValidationError("give exactly one of --input or --idx") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        let model = try readModel(at: file)
        let session = try InferenceSession(model: model, threads: threads)
        if let idx {
            try evaluate(session: session, images: idx)
            return
        }
        let values = try TensorFile.read(input!, expectedCount: session.inputElementCount, metadata: model.metadata)
        let result = try session.run(values)
        if let output {
            try TensorFile.write(result, shape: model.metadata.output.shape, to: output)
        }
        let top = result.indices.sorted { result[$0] > result[$1] }.prefix(min(5, result.count))
        let labels = top.map { model.metadata.labels.indices.contains($0) ? model.metadata.labels[$0] : "" }
        if json {
            struct Report: Encodable { var output: [Float]; var top: [Int]; var labels: [String] }
            try printJSON(Report(output: result, top: Array(top), labels: labels))
        } else if output == nil {
            if result.count <= 100 { print(result.map { String($0) }.joined(separator: " ")) }
            for (index, label) in zip(top, labels) {
                print("class \(index)\(label.isEmpty ? "" : " \(label)"): \(result[index])")
            }
        }
    }

    private func evaluate(session: InferenceSession, images: String) throws {
        let imageFile = try IDXFile(contentsOf: URL(fileURLWithPath: images))
        let labelPath = idxLabels ?? images.replacingOccurrences(of: "images-idx3", with: "labels-idx1")
        let labels = labelPath != images && FileManager.default.fileExists(atPath: labelPath)
            ? try IDXFile(contentsOf: URL(fileURLWithPath: labelPath)) : nil
        let isTerminal = isatty(2) != 0
        let start = Date()
        let evaluation = try DatasetEvaluation(session: session, images: imageFile, labels: labels, limit: limit) { done, total in
            if isTerminal && !json { FileHandle.standardError.write(Data("\r\(done)/\(total) images".utf8)) }
        }
        if isTerminal && !json { FileHandle.standardError.write(Data("\n".utf8)) }
        let seconds = Date().timeIntervalSince(start)
        if json {
            struct Report: Encodable { var images: Int; var correct: Int?; var accuracy: Double?; var seconds: Double; var predictionsPerClass: [Int] }
            var perClass = [Int](repeating: 0, count: session.outputElementCount)
            for p in evaluation.predictions { perClass[p] += 1 }
            try printJSON(Report(images: evaluation.count, correct: labels == nil ? nil : evaluation.correct,
                                 accuracy: labels == nil ? nil : evaluation.accuracy, seconds: seconds, predictionsPerClass: perClass))
        } else if labels != nil {
            print(String(format: "accuracy %.2f%% (%d of %d images) in %.2f s", evaluation.accuracy * 100, evaluation.correct, evaluation.count, seconds))
        } else {
            print("ran \(evaluation.count) images in \(String(format: "%.2f", seconds)) s (no labels found at \(labelPath))")
        }
    }
}

/// Tensors and images on disk.
enum TensorFile {
    static func read(_ path: String, expectedCount: Int, metadata: ModelMetadata? = nil) throws -> [Float] {
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
        } else if PGMImage.isPGM(data), let metadata {
            do {
                values = try ImageInput.tensor(pgm: data, for: metadata)
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
