import BitEngine
import BitModel
import Foundation
import Testing

/// The layers added for exported models: grouped/depthwise float convolution (QuickNet's
/// stem and blur pool) and log-softmax (PyTorch classifiers), against the reference.
@Suite("Grouped convolution and log-softmax")
struct GroupedConvolutionTests {
    @Test("grouped and depthwise conv2d match the reference over random shapes", arguments: KernelSet.available)
    func groupedConvolution(kernels: KernelSet) throws {
        let seed: UInt64 = 21
        print("GroupedConvolutionTests seed \(seed)")
        var random = SeededGenerator(seed: seed)
        for _ in 0..<20 {
            let groups = [1, 2, 3, 4, 8].randomElement(using: &random)!
            let inC = groups * Int.random(in: 1...3, using: &random), outC = groups * Int.random(in: 1...3, using: &random)
            let kernel = [1, 3, 5].randomElement(using: &random)!
            let padding = Int.random(in: 0..<kernel, using: &random)
            let stride = Int.random(in: 1...2, using: &random)
            let h = Int.random(in: max(1, kernel - 2 * padding)...9, using: &random)
            let w = Int.random(in: max(1, kernel - 2 * padding)...9, using: &random)
            let window = Window2D(kernelH: kernel, kernelW: kernel, strideH: stride, strideW: stride,
                                  padTop: padding, padLeft: padding, padBottom: kernel > 1 ? kernel - 1 - padding : 0, padRight: padding)
            var b = ModelBuilder()
            let weights = b.addTensor(Tensor(shape: [outC, kernel, kernel, inC / groups], floats: random.floats(outC * kernel * kernel * inC / groups)))
            let bias = b.addTensor(Tensor(shape: [outC], floats: random.floats(outC)))
            var y = b.append(.groupedConv2D(GroupedConv2DLayer(inChannels: inC, outChannels: outC, groups: groups, window: window,
                                                               weights: weights, bias: bias)), inputs: [b.input])
            // A BatchNorm after it is folded into its weights by the planner.
            y = b.batchNorm(y, scale: random.floats(outC, in: -2...2), shift: random.floats(outC), mean: random.floats(outC),
                            variance: random.floats(outC, in: 0.1...2))
            let oh = window.outputHeight(input: h)!, ow = window.outputWidth(input: w)!
            let model = b.build(metadata: metadata(input: [1, inC, h, w], layout: .nchw, output: [1, outC, oh, ow], outputLayout: .nchw), output: y)
            let session = try InferenceSession(model: model, kernels: kernels)
            #expect(session.steps.count == 1, "the BatchNorm should fold into the grouped conv: \(session.steps.map(\.label))")
            for (actual, expected) in try compareWithReference(model, input: random.floats(h * w * inC), kernels: kernels) {
                #expect(relativeError(actual, expected) < 1e-5, "groups \(groups) k=\(kernel) s=\(stride) p=\(padding) \(inC)->\(outC) \(h)x\(w)")
            }
        }
    }

    @Test("a grouped conv whose channels do not divide by its groups is refused")
    func invalidGroups() throws {
        var b = ModelBuilder()
        let weights = b.addTensor(Tensor(shape: [4, 3, 3, 2], floats: [Float](repeating: 1, count: 72)))
        let y = b.append(.groupedConv2D(GroupedConv2DLayer(inChannels: 6, outChannels: 4, groups: 3, window: Window2D(kernel: 3, padding: 1),
                                                           weights: weights, bias: nil)), inputs: [b.input])
        let model = b.build(metadata: metadata(input: [1, 6, 5, 5], layout: .nchw, output: [1, 4, 5, 5], outputLayout: .nchw), output: y)
        #expect {
            try model.validate()
        } throws: { error in
            guard let error = error as? ModelFormatError else { return false }
            return error.code == .invalidGraph && error.location.contains("groupedConv2d") && error.description.contains("3 groups")
        }
    }

    @Test("log-softmax matches the reference and stays finite where softmax underflows", arguments: KernelSet.available)
    func logSoftmax(kernels: KernelSet) throws {
        var random = SeededGenerator(seed: 22)
        var b = ModelBuilder()
        let x = b.dense(b.input, inFeatures: 12, outFeatures: 10, weights: random.floats(120), bias: random.floats(10))
        let y = b.append(.logSoftmax, inputs: [x])
        let model = b.build(metadata: metadata(input: [1, 12], layout: .nc, output: [1, 10], outputLayout: .nc), output: y)
        for (actual, expected) in try compareWithReference(model, input: random.floats(12), kernels: kernels) {
            #expect(relativeError(actual, expected) < 1e-5)
            #expect(abs(actual.map { exp($0) }.reduce(0, +) - 1) < 1e-5)
        }
        var large = ModelBuilder()
        let z = large.append(.logSoftmax, inputs: [large.input])
        let wide = large.build(metadata: metadata(input: [1, 3], layout: .nc, output: [1, 3], outputLayout: .nc), output: z)
        let output = try InferenceSession(model: wide, kernels: kernels).run([0, 200, -200])
        #expect(output.allSatisfy { $0.isFinite })
        #expect(abs(output[0] + 200) < 1e-3 && abs(output[1]) < 1e-6 && abs(output[2] + 400) < 1e-3)
    }
}
