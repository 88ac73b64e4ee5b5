import BitEngine
import BitModel
import Foundation
import ModelImport
import Testing

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let samples = repositoryRoot.appendingPathComponent("Models/fashion-mnist")
/// Installed by Debian's dataset-fashion-mnist (scripts/test.sh installs it).
let testImages = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
let testLabels = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")

struct TrainingReport: Decodable {
    struct Entry: Decodable {
        var onnxruntime_accuracy: Double
        var mean: Double
        var std: Double
    }
    var models: [String: Entry]
}

/// The committed sample models on all 10,000 Fashion-MNIST test images: the engine's
/// accuracy equals the training script's ONNX Runtime figure within 0.1 points, and its
/// predictions agree with ONNX Runtime's on at least 99.9% of the images.
@Suite("Fashion-MNIST sample models")
struct FashionMNISTTests {
    static let models = ["bnn-mlp", "bnn-cnn"]

    @Test("accuracy and agreement with ONNX Runtime on the full test set", arguments: models)
    func accuracy(model name: String) throws {
        let report = try JSONDecoder().decode(TrainingReport.self, from: Data(contentsOf: samples.appendingPathComponent("accuracy.json")))
        let expected = try #require(report.models[name])
        let session = try InferenceSession(contentsOf: samples.appendingPathComponent("\(name).bnn"), threads: 2)
        try SelfTests.verify(session)
        let evaluation = try DatasetEvaluation(session: session, images: try IDXFile(contentsOf: testImages),
                                               labels: try IDXFile(contentsOf: testLabels))
        #expect(evaluation.count == 10_000)
        #expect(abs(evaluation.accuracy - expected.onnxruntime_accuracy) <= 0.001,
                "engine \(evaluation.accuracy) vs ONNX Runtime \(expected.onnxruntime_accuracy)")
        let ort = try Data(contentsOf: samples.appendingPathComponent("\(name).ort-predictions.bin"))
        let agree = zip(evaluation.predictions, ort).filter { $0 == Int($1) }.count
        #expect(agree >= 9_990, "\(agree) of 10000 predictions agree with ONNX Runtime")
        if name == "bnn-cnn" { #expect(evaluation.accuracy >= 0.88) }
    }

    @Test("the committed .bnn files are what the converter produces from the ONNX files", arguments: models)
    func committedFilesAreCurrent(model name: String) throws {
        let committed = try ModelReader.read(contentsOf: samples.appendingPathComponent("\(name).bnn"))
        let labels = try String(contentsOf: samples.appendingPathComponent("labels.txt"), encoding: .utf8)
            .split(whereSeparator: \.isNewline).map(String.init)
        let fresh = try ONNXConverter.convert(contentsOf: samples.appendingPathComponent("\(name).onnx"),
                                              options: ConversionOptions(labels: labels)).model
        #expect(fresh.layers == committed.layers, "re-run tools/models/convert_samples.sh")
        #expect(Array(fresh.tensors.prefix(fresh.tensors.count)) == Array(committed.tensors.prefix(fresh.tensors.count)))
        #expect(committed.metadata.labels == labels)
        #expect(committed.metadata.preprocessing == Preprocessing(scale: 1 / 255, mean: [0.286], std: [0.353]))
        #expect(committed.selfTests.count == 1)
    }
}
