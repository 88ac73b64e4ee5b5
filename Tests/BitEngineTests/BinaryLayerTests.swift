import BitEngine
import BitModel
import Testing

/// Binary convolutions and dense layers over randomized shapes against the naive float
/// reference: channel counts 1...200 (not multiples of 64), kernels 1-5, strides 1-2, every
/// padding mode. With multiplier 1 and bias 0 the output is the integer dot product, so the
/// comparison is exact.
@Suite("Binary layers")
struct BinaryLayerTests {
    struct Case: CustomStringConvertible {
        var inChannels, outChannels, height, width, kernel, stride, padding: Int
        var padValue: BinaryPadValue
        var description: String {
            "in=\(inChannels) out=\(outChannels) \(height)x\(width) k=\(kernel) s=\(stride) p=\(padding) pad=\(padValue.rawValue)"
        }
    }

    static func randomCases(count: Int, seed: UInt64) -> [Case] {
        var random = SeededGenerator(seed: seed)
        var cases: [Case] = []
        while cases.count < count {
            let kernel = [1, 2, 3, 3, 3, 5].randomElement(using: &random)!
            let padding = Int.random(in: 0..<kernel, using: &random)
            let c = Case(inChannels: [1, 3, 17, 48, 63, 64, 65, 100, 128, 129, 200].randomElement(using: &random)!,
                         outChannels: [1, 5, 8, 13, 16, 33, 64, 100].randomElement(using: &random)!,
                         height: Int.random(in: 1...9, using: &random), width: Int.random(in: 1...9, using: &random),
                         kernel: kernel, stride: Int.random(in: 1...2, using: &random), padding: padding,
                         padValue: [.zero, .plusOne, .minusOne].randomElement(using: &random)!)
            guard c.height + 2 * padding >= kernel, c.width + 2 * padding >= kernel else { continue }
            cases.append(c)
        }
        return cases
    }

    static func convolutionModel(_ c: Case, random: inout SeededGenerator, multiplier: [Float]? = nil,
                                 bias: [Float]? = nil) -> Model {
        var b = ModelBuilder()
        let bits = b.binarize(b.input)
        let window = Window2D(kernel: c.kernel, stride: c.stride, padding: c.padding)
        let y = b.binaryConv2D(bits, inChannels: c.inChannels, outChannels: c.outChannels, window: window,
                               padValue: c.padValue, weights: random.floats(c.outChannels * c.kernel * c.kernel * c.inChannels),
                               multiplier: multiplier, bias: bias)
        let oh = window.outputHeight(input: c.height)!, ow = window.outputWidth(input: c.width)!
        return b.build(metadata: metadata(input: [1, c.height, c.width, c.inChannels], output: [1, oh, ow, c.outChannels]), output: y)
    }

    @Test("binary conv2d equals the integer reference exactly", arguments: KernelSet.available)
    func convolutionIsExact(kernels: KernelSet) throws {
        var random = SeededGenerator(seed: 1)
        for c in Self.randomCases(count: 40, seed: 7) {
            let model = Self.convolutionModel(c, random: &random)
            let input = random.floats(c.height * c.width * c.inChannels)
            for (actual, expected) in try compareWithReference(model, input: input, kernels: kernels) {
                #expect(actual == expected, "\(c)")
            }
        }
    }

    @Test("binary conv2d with scale and bias matches the reference", arguments: KernelSet.available)
    func convolutionWithAffineOutput(kernels: KernelSet) throws {
        var random = SeededGenerator(seed: 2)
        for c in Self.randomCases(count: 15, seed: 8) {
            let model = Self.convolutionModel(c, random: &random, multiplier: random.floats(c.outChannels, in: -2...2),
                                              bias: random.floats(c.outChannels, in: -3...3))
            let input = random.floats(c.height * c.width * c.inChannels)
            for (actual, expected) in try compareWithReference(model, input: input, kernels: kernels) {
                #expect(relativeError(actual, expected) < 1e-5, "\(c)")
            }
        }
    }

    /// conv -> binarize fuses into thresholds; a second conv reads the bits. Integer
    /// output again, so any flipped bit shows.
    @Test("fused sign thresholds reproduce sign(multiplier * dot + bias) exactly", arguments: KernelSet.available)
    func fusedThresholds(kernels: KernelSet) throws {
        var random = SeededGenerator(seed: 3)
        for c in Self.randomCases(count: 15, seed: 9) where c.outChannels > 1 {
            var b = ModelBuilder()
            let window = Window2D(kernel: c.kernel, stride: c.stride, padding: c.padding)
            let oh = window.outputHeight(input: c.height)!, ow = window.outputWidth(input: c.width)!
            let bits = b.binarize(b.input)
            // Multipliers of both signs and zero, biases on and between integer dots.
            var multiplier = random.floats(c.outChannels, in: -2...2)
            multiplier[0] = 0
            let bias = (0..<c.outChannels).map { _ in Float(Int.random(in: -6...6, using: &random)) * (Bool.random(using: &random) ? 1 : 0.5) }
            let y = b.binaryConv2D(bits, inChannels: c.inChannels, outChannels: c.outChannels, window: window,
                                   padValue: c.padValue, weights: random.floats(c.outChannels * c.kernel * c.kernel * c.inChannels),
                                   multiplier: multiplier, bias: bias)
            let z = b.binaryConv2D(b.binarize(y), inChannels: c.outChannels, outChannels: 7, window: Window2D(kernel: 1),
                                   weights: random.floats(7 * c.outChannels))
            let model = b.build(metadata: metadata(input: [1, c.height, c.width, c.inChannels], output: [1, oh, ow, 7]), output: z)
            let session = try InferenceSession(model: model, kernels: kernels)
            #expect(session.steps.contains { $0.kind == "binaryConv2d->bits" }, "sign was not fused")
            let input = random.floats(c.height * c.width * c.inChannels)
            for (actual, expected) in try compareWithReference(model, input: input, kernels: kernels) {
                #expect(actual == expected, "\(c)")
            }
        }
    }

    @Test("binary dense equals the reference exactly", arguments: KernelSet.available)
    func dense(kernels: KernelSet) throws {
        var random = SeededGenerator(seed: 4)
        for (inFeatures, outFeatures) in [(1, 1), (63, 10), (64, 64), (65, 7), (200, 100), (784, 256), (1000, 33)] {
            var b = ModelBuilder()
            let y = b.binaryDense(b.binarize(b.input), inFeatures: inFeatures, outFeatures: outFeatures,
                                  weights: random.floats(inFeatures * outFeatures))
            let model = b.build(metadata: metadata(input: [1, inFeatures], layout: .nc, output: [1, outFeatures], outputLayout: .nc), output: y)
            for (actual, expected) in try compareWithReference(model, input: random.floats(inFeatures), kernels: kernels) {
                #expect(actual == expected, "\(inFeatures)->\(outFeatures)")
            }
        }
    }

    /// A residual add after a binary conv fuses into its epilogue.
    @Test("fused residual add matches the reference", arguments: KernelSet.available)
    func fusedResidual(kernels: KernelSet) throws {
        var random = SeededGenerator(seed: 5)
        var b = ModelBuilder()
        let y = b.binaryConv2D(b.binarize(b.input), inChannels: 70, outChannels: 70, window: Window2D(kernel: 3, padding: 1),
                               weights: random.floats(70 * 9 * 70), multiplier: random.floats(70, in: 0.1...1), bias: random.floats(70))
        let bn = b.channelAffine(y, multiplier: random.floats(70, in: 0.5...1.5), bias: random.floats(70))
        let sum = b.append(.add, inputs: [bn, b.input])
        let model = b.build(metadata: metadata(input: [1, 6, 5, 70], output: [1, 6, 5, 70]), output: sum)
        let session = try InferenceSession(model: model, kernels: kernels)
        #expect(session.steps.count == 2, "expected binarize + one fused conv step, got \(session.steps.map(\.label))")
        for (actual, expected) in try compareWithReference(model, input: random.floats(6 * 5 * 70), kernels: kernels) {
            #expect(relativeError(actual, expected) < 1e-5)
        }
    }
}
