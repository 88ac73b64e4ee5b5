import BitEngine
import BitModel
import Testing

@Suite("Float layers and pointwise ops")
struct FloatLayerTests {
    @Test("float conv2d matches the reference over random shapes", arguments: KernelSet.available)
    func convolution(kernels: KernelSet) throws {
        var random = SeededGenerator(seed: 11)
        for _ in 0..<20 {
            let kernel = [1, 3, 5, 7].randomElement(using: &random)!
            let padding = Int.random(in: 0..<kernel, using: &random)
            let stride = Int.random(in: 1...2, using: &random)
            let inC = [1, 3, 8, 17].randomElement(using: &random)!, outC = [1, 5, 16, 33, 64].randomElement(using: &random)!
            let h = Int.random(in: max(1, kernel - 2 * padding)...11, using: &random)
            let w = Int.random(in: max(1, kernel - 2 * padding)...11, using: &random)
            var b = ModelBuilder()
            let window = Window2D(kernel: kernel, stride: stride, padding: padding)
            let y = b.conv2D(b.input, inChannels: inC, outChannels: outC, window: window,
                             weights: random.floats(outC * kernel * kernel * inC), bias: random.floats(outC))
            let model = b.build(metadata: metadata(input: [1, inC, h, w], layout: .nchw,
                                                   output: [1, outC, window.outputHeight(input: h)!, window.outputWidth(input: w)!],
                                                   outputLayout: .nchw), output: y)
            for (actual, expected) in try compareWithReference(model, input: random.floats(h * w * inC), kernels: kernels) {
                #expect(relativeError(actual, expected) < 1e-5, "k=\(kernel) s=\(stride) p=\(padding) \(inC)->\(outC) \(h)x\(w)")
            }
        }
    }

    @Test("dense, batch norm folding, activations, softmax", arguments: KernelSet.available)
    func classifierHead(kernels: KernelSet) throws {
        var random = SeededGenerator(seed: 12)
        var b = ModelBuilder()
        var x = b.dense(b.input, inFeatures: 37, outFeatures: 50, weights: random.floats(37 * 50), bias: random.floats(50))
        x = b.batchNorm(x, scale: random.floats(50, in: 0.5...2), shift: random.floats(50), mean: random.floats(50),
                        variance: random.floats(50, in: 0.1...2))
        x = b.prelu(x, slope: random.floats(50, in: 0...0.5))
        x = b.append(.clip(ClipLayer(min: -0.5, max: 0.75)), inputs: [x])
        x = b.dense(x, inFeatures: 50, outFeatures: 20, weights: random.floats(50 * 20), bias: nil)
        x = b.append(.relu, inputs: [x])
        x = b.append(.softmax, inputs: [x])
        let model = b.build(metadata: metadata(input: [1, 37], layout: .nc, output: [1, 20], outputLayout: .nc), output: x)
        for (actual, expected) in try compareWithReference(model, input: random.floats(37), kernels: kernels) {
            #expect(relativeError(actual, expected) < 1e-5)
            #expect(abs(actual.reduce(0, +) - 1) < 1e-5)
        }
    }

    @Test("pooling with padding, global pooling, concat, add, flatten", arguments: KernelSet.available)
    func poolingAndShapes(kernels: KernelSet) throws {
        var random = SeededGenerator(seed: 13)
        for (kernel, stride, padding, includePad) in [(2, 2, 0, false), (3, 2, 1, false), (3, 1, 1, true), (3, 2, 1, true), (5, 3, 2, false)] {
            var b = ModelBuilder()
            let window = Window2D(kernel: kernel, stride: stride, padding: padding)
            let maxPool = b.append(.pool2D(Pool2DLayer(kind: .max, window: window)), inputs: [b.input])
            let avgPool = b.append(.pool2D(Pool2DLayer(kind: .average, window: window, countIncludesPadding: includePad)), inputs: [b.input])
            let sum = b.append(.add, inputs: [maxPool, avgPool])
            let joined = b.append(.concat, inputs: [maxPool, sum, avgPool])
            let global = b.append(.globalAveragePool, inputs: [joined])
            let flat = b.append(.flatten, inputs: [joined])
            let both = b.append(.concat, inputs: [global, b.append(.flatten, inputs: [global])])
            _ = flat
            let (h, w, c) = (9, 8, 5)
            let oh = window.outputHeight(input: h)!, ow = window.outputWidth(input: w)!
            let flatModel = b.build(metadata: metadata(input: [1, h, w, c], output: [1, oh * ow * 3 * c], outputLayout: .nc), output: flat)
            let globalModel = b.build(metadata: metadata(input: [1, h, w, c], output: [1, 6 * c], outputLayout: .nc), output: both)
            for model in [flatModel, globalModel] {
                for (actual, expected) in try compareWithReference(model, input: random.floats(h * w * c), kernels: kernels) {
                    #expect(relativeError(actual, expected) < 1e-6, "k=\(kernel) s=\(stride) p=\(padding)")
                }
            }
        }
    }
}
