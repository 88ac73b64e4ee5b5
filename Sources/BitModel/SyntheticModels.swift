/// Architectures with seeded random weights, for benchmarks and engine tests. Latency
/// does not depend on weight values, so these measure exactly what a trained model of the
/// same shape costs.
public enum SyntheticModels {
    public enum Architecture: String, CaseIterable, Sendable {
        /// Bi-Real-Net-18: float 7x7 stem, 16 binary 3x3 convs each with a real-valued
        /// shortcut, avg-pool + float 1x1 downsampling shortcuts, float classifier.
        case biRealNet18 = "bireal18"
        /// One binary 3x3 conv 64->64 with zero padding on a 56x56 input (115.6 M MACs).
        case binaryConvLayer = "conv3x3-64"
        /// Five binary 3x3 convs 64->64 at 56x56, each followed by BatchNorm, with sign
        /// between them (so the middle ones read and emit packed bits): a layer in a stack.
        case binaryConvStack = "conv3x3-64-stack5"
    }

    public static func make(_ architecture: Architecture, inputSize: Int = 224, classes: Int = 1000, seed: UInt64 = 0) -> Model {
        switch architecture {
        case .biRealNet18: return biRealNet18(inputSize: inputSize, classes: classes, seed: seed)
        case .binaryConvLayer: return binaryConvLayer(size: inputSize == 224 ? 56 : inputSize, seed: seed)
        case .binaryConvStack: return binaryConvStack(size: inputSize == 224 ? 56 : inputSize, seed: seed)
        }
    }

    public static func binaryConvLayer(size: Int = 56, channels: Int = 64, seed: UInt64 = 0) -> Model {
        var random = SeededGenerator(seed: seed)
        var b = ModelBuilder()
        let bits = b.binarize(b.input, name: "sign")
        let conv = b.binaryConv2D(bits, inChannels: channels, outChannels: channels, window: Window2D(kernel: 3, stride: 1, padding: 1),
                                  weights: random.floats(channels * 9 * channels), name: "conv")
        let metadata = ModelMetadata(
            name: "binary-conv3x3-\(channels)", version: "synthetic", description: "one binary 3x3 conv, random weights",
            producer: "BitFleet SyntheticModels",
            input: TensorSpec(name: "input", shape: [1, channels, size, size], layout: .nchw),
            output: TensorSpec(name: "output", shape: [1, channels, size, size], layout: .nchw))
        return b.build(metadata: metadata, output: conv)
    }

    public static func binaryConvStack(size: Int = 56, channels: Int = 64, layers: Int = 5, seed: UInt64 = 0) -> Model {
        var random = SeededGenerator(seed: seed)
        var b = ModelBuilder()
        var x = b.input
        for index in 0..<layers {
            let bits = b.binarize(x, name: "sign\(index + 1)")
            x = b.binaryConv2D(bits, inChannels: channels, outChannels: channels, window: Window2D(kernel: 3, stride: 1, padding: 1),
                               weights: random.floats(channels * 9 * channels), name: "conv\(index + 1)")
            x = b.channelAffine(x, multiplier: random.floats(channels, in: 0.5...1.5), bias: random.floats(channels, in: -2...2),
                                name: "bn\(index + 1)")
        }
        let metadata = ModelMetadata(
            name: "binary-conv3x3-\(channels)-stack\(layers)", version: "synthetic",
            description: "\(layers) binary 3x3 convs with BatchNorm and sign between, random weights",
            producer: "BitFleet SyntheticModels",
            input: TensorSpec(name: "input", shape: [1, channels, size, size], layout: .nchw),
            output: TensorSpec(name: "output", shape: [1, channels, size, size], layout: .nchw))
        return b.build(metadata: metadata, output: x)
    }

    public static func biRealNet18(inputSize: Int = 224, classes: Int = 1000, seed: UInt64 = 0) -> Model {
        var random = SeededGenerator(seed: seed)
        var b = ModelBuilder()
        func bn(_ x: ValueID, _ c: Int, _ name: String) -> ValueID {
            b.channelAffine(x, multiplier: random.floats(c, in: 0.5...1.5), bias: random.floats(c, in: -0.2...0.2), name: name)
        }
        let small = inputSize < 64
        var x = b.conv2D(b.input, inChannels: 3, outChannels: 64,
                         window: small ? Window2D(kernel: 3, stride: 1, padding: 1) : Window2D(kernel: 7, stride: 2, padding: 3),
                         weights: random.floats(64 * (small ? 9 : 49) * 3, in: -0.1...0.1), name: "stem.conv")
        x = bn(x, 64, "stem.bn")
        if !small {
            x = b.append(.pool2D(Pool2DLayer(kind: .max, window: Window2D(kernel: 3, stride: 2, padding: 1))), inputs: [x], name: "stem.pool")
        }
        var channels = 64
        for (stage, width) in [64, 128, 256, 512].enumerated() {
            for unit in 0..<4 {
                let name = "stage\(stage + 1).unit\(unit + 1)"
                let downsample = stage > 0 && unit == 0
                let stride = downsample ? 2 : 1
                let bits = b.binarize(x, name: "\(name).sign")
                var y = b.binaryConv2D(bits, inChannels: channels, outChannels: width,
                                       window: Window2D(kernel: 3, stride: stride, padding: 1),
                                       weights: random.floats(width * 9 * channels), name: "\(name).conv")
                y = bn(y, width, "\(name).bn")
                var shortcut = x
                if downsample {
                    shortcut = b.append(.pool2D(Pool2DLayer(kind: .average, window: Window2D(kernel: 2, stride: 2))),
                                        inputs: [x], name: "\(name).down.pool")
                    shortcut = b.conv2D(shortcut, inChannels: channels, outChannels: width, window: Window2D(kernel: 1),
                                        weights: random.floats(width * channels, in: -0.1...0.1), name: "\(name).down.conv")
                    shortcut = bn(shortcut, width, "\(name).down.bn")
                }
                x = b.append(.add, inputs: [y, shortcut], name: "\(name).add")
                channels = width
            }
        }
        x = b.append(.globalAveragePool, inputs: [x], name: "pool")
        x = b.dense(x, inFeatures: channels, outFeatures: classes, weights: random.floats(classes * channels, in: -0.05...0.05),
                    bias: random.floats(classes, in: -0.1...0.1), name: "fc")
        let metadata = ModelMetadata(
            name: "bireal18-synthetic", version: "synthetic",
            description: "Bi-Real-Net-18 architecture with seeded random weights (benchmarks)",
            producer: "BitFleet SyntheticModels",
            input: TensorSpec(name: "input", shape: [1, 3, inputSize, inputSize], layout: .nchw),
            output: TensorSpec(name: "logits", shape: [1, classes], layout: .nc))
        return b.build(metadata: metadata, output: x)
    }
}
