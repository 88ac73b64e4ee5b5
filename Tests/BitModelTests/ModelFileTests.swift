import Foundation
import Testing
@testable import BitModel

/// A small but complete model: every tensor kind, labels, preprocessing, a self test.
func sampleModel(seed: UInt64 = 1) -> Model {
    var random = SeededGenerator(seed: seed)
    var b = ModelBuilder()
    var x = b.conv2D(b.input, inChannels: 1, outChannels: 20, window: Window2D(kernel: 3, padding: 1),
                     weights: random.floats(180), bias: random.floats(20), name: "stem")
    x = b.binarize(x, name: "sign1")
    x = b.binaryConv2D(x, inChannels: 20, outChannels: 70, window: Window2D(kernel: 3, stride: 2, padding: 1),
                       padValue: .zero, weights: random.floats(70 * 9 * 20), multiplier: random.floats(70),
                       bias: random.floats(70), name: "conv2")
    x = b.append(.pool2D(Pool2DLayer(kind: .max, window: Window2D(kernel: 2, stride: 2))), inputs: [x], name: "pool")
    x = b.append(.flatten, inputs: [x], name: "flatten")
    x = b.binaryDense(b.binarize(x, name: "sign2"), inFeatures: 70 * 4, outFeatures: 10, weights: random.floats(2800),
                      multiplier: random.floats(10), bias: random.floats(10), name: "fc")
    b.addSelfTest(input: random.floats(64), inputShape: [1, 1, 8, 8], expected: random.floats(10), outputShape: [1, 10])
    let metadata = ModelMetadata(
        name: "sample", version: "v1", description: "test model", producer: "tests",
        input: TensorSpec(name: "input", shape: [1, 1, 8, 8], layout: .nchw),
        output: TensorSpec(name: "logits", shape: [1, 10], layout: .nc),
        preprocessing: Preprocessing(scale: 1 / 255, mean: [0.5], std: [0.25]),
        labels: (0..<10).map { "class \($0)" }, properties: ["accuracy": "0.9"])
    return b.build(metadata: metadata, output: x)
}

@Suite("The .bnn file format")
struct ModelFileTests {
    @Test("CRC-32 matches the standard check value")
    func crc() {
        #expect(CRC32.checksum(Data("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum(Data()) == 0)
    }

    @Test("write then read gives the same model")
    func roundTrip() throws {
        let model = sampleModel()
        let data = try ModelWriter.data(for: model)
        #expect(try ModelReader.read(data) == model)
        #expect(try ModelWriter.data(for: try ModelReader.read(data)) == data, "writing is deterministic")
    }

    @Test("tensor payloads are 64-byte aligned in the file")
    func alignment() throws {
        let data = try ModelWriter.data(for: sampleModel())
        try data.withUnsafeBytes { raw in
            let count = Int(raw.loadLE(UInt32.self, at: 24))
            var found = false
            for index in 0..<count {
                let base = 64 + index * 32
                if raw.loadLE(UInt32.self, at: base) == FileLayout.SectionKind.tensorData.rawValue {
                    #expect(raw.loadLE(UInt64.self, at: base + 8) % 64 == 0)
                    found = true
                }
            }
            #expect(found)
            _ = try ModelReader.read(raw)
        }
    }

    @Test("atomic write leaves no temporary files and replaces the target")
    func atomicWrite() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bnn-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("m.bnn")
        try ModelWriter.write(sampleModel(seed: 1), to: url)
        try ModelWriter.write(sampleModel(seed: 2), to: url)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["m.bnn"])
        #expect(try ModelReader.read(contentsOf: url) == sampleModel(seed: 2))
    }

    /// The file is at most 2% + 4 KB larger than the bits its weights need.
    @Test("file overhead stays within 2% + 4 KB of the weight bits")
    func overhead() throws {
        var models = [SyntheticModels.biRealNet18(inputSize: 224, classes: 1000),
                      SyntheticModels.binaryConvLayer()]
        var withoutSelfTest = sampleModel()
        withoutSelfTest.selfTests = []
        withoutSelfTest.tensors.removeLast(2)
        models.append(withoutSelfTest)
        for model in models {
            let size = try ModelWriter.data(for: model).count
            let needed = model.weightInformationBits / 8
            #expect(Double(size) <= Double(needed) * 1.02 + 4096, "\(model.metadata.name): \(size) bytes for \(needed) bytes of weights")
        }
    }

    @Test("models that break an invariant are rejected before writing")
    func validation() throws {
        var model = sampleModel()
        model.layers[2].inputs = [5]
        #expect(throws: ModelFormatError.self) { try ModelWriter.data(for: model) }

        model = sampleModel()
        model.metadata.labels = ["only one"]
        let error = #expect(throws: ModelFormatError.self) { try model.validate() }
        #expect(error?.code == .invalidMetadata)
        #expect(error?.location == "metadata.labels")

        model = sampleModel()
        if case .binaryConv2D(var conv) = model.layers[2].operation {
            conv.inChannels = 21
            model.layers[2].operation = .binaryConv2D(conv)
        }
        let shapeError = #expect(throws: ModelFormatError.self) { try model.validate() }
        #expect(shapeError?.location == "layer 2 'conv2' (binaryConv2d)")

        model = sampleModel()
        model.tensors[3] = Tensor(shape: [70, 3, 3, 20], packedBits: [UInt64](repeating: ~0, count: 70 * 9))
        let bitsError = #expect(throws: ModelFormatError.self) { try model.validate() }
        #expect(bitsError?.code == .invalidTensor, "padding bits past 20 channels must be zero")
    }
}
