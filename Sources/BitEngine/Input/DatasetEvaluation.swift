import BitModel
import Foundation

/// Runs a classifier over an IDX image set (e.g. Fashion-MNIST's test set), applying the
/// model's preprocessing, and measures top-1 accuracy against the IDX labels.
public struct DatasetEvaluation: Sendable {
    public var predictions: [Int]
    public var correct: Int
    public var count: Int
    public var accuracy: Double { count == 0 ? 0 : Double(correct) / Double(count) }

    public init(session: InferenceSession, images: IDXFile, labels: IDXFile?, limit: Int? = nil,
                progress: ((Int, Int) -> Void)? = nil) throws {
        guard images.dimensions.count == 3 else {
            throw ImageInput.Error(description: "IDX images must be [count, height, width], got \(images.dimensions)")
        }
        let total = min(images.count, limit ?? images.count)
        if let labels, labels.count < total {
            throw ImageInput.Error(description: "\(labels.count) labels for \(total) images")
        }
        let (height, width) = (images.dimensions[1], images.dimensions[2])
        var output = [Float](repeating: 0, count: session.outputElementCount)
        predictions = []
        predictions.reserveCapacity(total)
        correct = 0
        count = total
        for index in 0..<total {
            let gray = images.item(index).map { Float($0) }
            let input = try ImageInput.tensor(gray: gray, width: width, height: height, for: session.model.metadata)
            try input.withUnsafeBufferPointer { inputBuffer in
                try output.withUnsafeMutableBufferPointer { try session.run(input: inputBuffer, output: $0) }
            }
            let predicted = output.indices.max { output[$0] < output[$1] } ?? 0
            predictions.append(predicted)
            if let labels, Int(labels.item(index).first!) == predicted { correct += 1 }
            if let progress, (index + 1) % 500 == 0 || index + 1 == total { progress(index + 1, total) }
        }
    }
}
