/// Builds a model layer by layer in code: used by the ONNX converter, tests and the
/// benchmark models. Each method appends one layer and returns the value it produces.
public struct ModelBuilder: Sendable {
    public private(set) var layers: [Layer] = []
    public private(set) var tensors: [Tensor] = []
    public private(set) var selfTests: [SelfTestVector] = []

    /// The model input.
    public let input: ValueID = 0

    public init() {}

    public mutating func addTensor(_ tensor: Tensor) -> TensorID {
        tensors.append(tensor)
        return tensors.count - 1
    }

    @discardableResult
    public mutating func append(_ operation: LayerOperation, inputs: [ValueID], name: String? = nil) -> ValueID {
        layers.append(Layer(name: name ?? "\(operation.opName)\(layers.count)", operation: operation, inputs: inputs))
        return layers.count
    }

    public mutating func binarize(_ x: ValueID, name: String? = nil) -> ValueID {
        append(.binarize, inputs: [x], name: name)
    }

    /// `weights`: [out, kh, kw, in] values, binarized with sign (>= 0 is +1).
    public mutating func binaryConv2D(_ x: ValueID, inChannels: Int, outChannels: Int, window: Window2D,
                                      padValue: BinaryPadValue = .zero, weights: [Float],
                                      multiplier: [Float]? = nil, bias: [Float]? = nil, name: String? = nil) -> ValueID {
        let w = addTensor(Tensor(shape: [outChannels, window.kernelH, window.kernelW, inChannels], signsOf: weights))
        let m = addTensor(Tensor(shape: [outChannels], floats: multiplier ?? [Float](repeating: 1, count: outChannels)))
        let b = addTensor(Tensor(shape: [outChannels], floats: bias ?? [Float](repeating: 0, count: outChannels)))
        return append(.binaryConv2D(BinaryConv2DLayer(inChannels: inChannels, outChannels: outChannels, window: window,
                                                      padValue: padValue, weights: w, multiplier: m, bias: b)),
                      inputs: [x], name: name)
    }

    /// `weights`: [out, in] values, binarized with sign.
    public mutating func binaryDense(_ x: ValueID, inFeatures: Int, outFeatures: Int, weights: [Float],
                                     multiplier: [Float]? = nil, bias: [Float]? = nil, name: String? = nil) -> ValueID {
        let w = addTensor(Tensor(shape: [outFeatures, inFeatures], signsOf: weights))
        let m = addTensor(Tensor(shape: [outFeatures], floats: multiplier ?? [Float](repeating: 1, count: outFeatures)))
        let b = addTensor(Tensor(shape: [outFeatures], floats: bias ?? [Float](repeating: 0, count: outFeatures)))
        return append(.binaryDense(BinaryDenseLayer(inFeatures: inFeatures, outFeatures: outFeatures, weights: w,
                                                    multiplier: m, bias: b)), inputs: [x], name: name)
    }

    /// `weights`: [out, kh, kw, in] floats.
    public mutating func conv2D(_ x: ValueID, inChannels: Int, outChannels: Int, window: Window2D,
                                weights: [Float], bias: [Float]? = nil, name: String? = nil) -> ValueID {
        let w = addTensor(Tensor(shape: [outChannels, window.kernelH, window.kernelW, inChannels], floats: weights))
        let b = bias.map { addTensor(Tensor(shape: [outChannels], floats: $0)) }
        return append(.conv2D(Conv2DLayer(inChannels: inChannels, outChannels: outChannels, window: window,
                                          weights: w, bias: b)), inputs: [x], name: name)
    }

    /// `weights`: [out, in] floats.
    public mutating func dense(_ x: ValueID, inFeatures: Int, outFeatures: Int, weights: [Float],
                               bias: [Float]? = nil, name: String? = nil) -> ValueID {
        let w = addTensor(Tensor(shape: [outFeatures, inFeatures], floats: weights))
        let b = bias.map { addTensor(Tensor(shape: [outFeatures], floats: $0)) }
        return append(.dense(DenseLayer(inFeatures: inFeatures, outFeatures: outFeatures, weights: w, bias: b)),
                      inputs: [x], name: name)
    }

    public mutating func channelAffine(_ x: ValueID, multiplier: [Float], bias: [Float], name: String? = nil) -> ValueID {
        let m = addTensor(Tensor(shape: [multiplier.count], floats: multiplier))
        let b = addTensor(Tensor(shape: [bias.count], floats: bias))
        return append(.channelAffine(ChannelAffineLayer(channels: multiplier.count, multiplier: m, bias: b)),
                      inputs: [x], name: name)
    }

    /// BatchNorm at inference, folded to a per-channel affine map.
    public mutating func batchNorm(_ x: ValueID, scale: [Float], shift: [Float], mean: [Float], variance: [Float],
                                   epsilon: Float = 1e-5, name: String? = nil) -> ValueID {
        let multiplier = scale.indices.map { scale[$0] / (variance[$0] + epsilon).squareRoot() }
        let bias = scale.indices.map { shift[$0] - mean[$0] * multiplier[$0] }
        return channelAffine(x, multiplier: multiplier, bias: bias, name: name)
    }

    public mutating func prelu(_ x: ValueID, slope: [Float], name: String? = nil) -> ValueID {
        let s = addTensor(Tensor(shape: [slope.count], floats: slope))
        return append(.prelu(PReLULayer(channels: slope.count, slope: s)), inputs: [x], name: name)
    }

    public mutating func addSelfTest(input: [Float], inputShape: [Int], expected: [Float], outputShape: [Int],
                                     tolerance: Float = 1e-4) {
        let i = addTensor(Tensor(shape: inputShape, floats: input))
        let e = addTensor(Tensor(shape: outputShape, floats: expected))
        selfTests.append(SelfTestVector(input: i, expected: e, tolerance: tolerance))
    }

    public func build(metadata: ModelMetadata, output: ValueID? = nil) -> Model {
        Model(metadata: metadata, layers: layers, output: output, tensors: tensors, selfTests: selfTests)
    }
}
