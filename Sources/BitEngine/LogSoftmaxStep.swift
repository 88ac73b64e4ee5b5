import BitModel
import Foundation

/// log(softmax(x)) over channels at every pixel: x - max - log(sum(exp(x - max))), which
/// stays finite where softmax underflows to 0 (PyTorch's `log_softmax` classifiers).
final class LogSoftmaxStep: PlannedStep {
    override var kind: String { "logSoftmax" }

    override func execute(_ context: ExecutionContext) {
        let input = context.floats(at: inputOffsets[0]), output = context.floats(at: outputOffset)
        let c = outputShape.channels
        for p in 0..<outputShape.pixels {
            let x = input + p * c, y = output + p * c
            var largest = -Float.infinity
            for i in 0..<c { largest = max(largest, x[i]) }
            var sum: Float = 0
            for i in 0..<c { sum += exp(x[i] - largest) }
            let offset = largest + log(sum)
            for i in 0..<c { y[i] = x[i] - offset }
        }
    }
}
