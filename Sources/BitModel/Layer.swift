/// Index of a value in a model graph: value 0 is the model input, and layer `i` produces
/// value `i + 1`. Layers may only read values produced before them, so the layer list is a
/// topological order by construction and the graph can hold no cycle.
public typealias ValueID = Int

/// Index into `Model.tensors`.
public typealias TensorID = Int

/// Spatial window of a convolution or pooling: kernel, stride and explicit padding.
public struct Window2D: Codable, Equatable, Sendable {
    public var kernelH: Int
    public var kernelW: Int
    public var strideH: Int
    public var strideW: Int
    public var padTop: Int
    public var padLeft: Int
    public var padBottom: Int
    public var padRight: Int

    public init(kernel: Int, stride: Int = 1, padding: Int = 0) {
        self.init(kernelH: kernel, kernelW: kernel, strideH: stride, strideW: stride,
                  padTop: padding, padLeft: padding, padBottom: padding, padRight: padding)
    }

    public init(kernelH: Int, kernelW: Int, strideH: Int, strideW: Int,
                padTop: Int, padLeft: Int, padBottom: Int, padRight: Int) {
        self.kernelH = kernelH
        self.kernelW = kernelW
        self.strideH = strideH
        self.strideW = strideW
        self.padTop = padTop
        self.padLeft = padLeft
        self.padBottom = padBottom
        self.padRight = padRight
    }

    public var hasPadding: Bool { padTop + padLeft + padBottom + padRight > 0 }

    /// Output size along one axis; nil when the window does not fit.
    public static func outputSize(input: Int, kernel: Int, stride: Int, padBefore: Int, padAfter: Int) -> Int? {
        let span = input + padBefore + padAfter - kernel
        guard span >= 0, stride > 0 else { return nil }
        return span / stride + 1
    }

    public func outputHeight(input: Int) -> Int? {
        Self.outputSize(input: input, kernel: kernelH, stride: strideH, padBefore: padTop, padAfter: padBottom)
    }

    public func outputWidth(input: Int) -> Int? {
        Self.outputSize(input: input, kernel: kernelW, stride: strideW, padBefore: padLeft, padAfter: padRight)
    }
}

/// What a binary convolution sees outside the input. `zero` reproduces a float graph that
/// padded the *binarized* input with 0 (the engine adds a correction term per border
/// position); `minusOne` and `plusOne` pad with that binary value (BMXNet pads with -1).
public enum BinaryPadValue: String, Codable, Sendable {
    case zero
    case plusOne = "+1"
    case minusOne = "-1"
}

/// Binary convolution: XNOR/popcount over packed input bits and packed +-1 weights,
/// followed by a per-output-channel affine map `y = multiplier * dot + bias` (XNOR-Net
/// scale and folded BatchNorm). The output is real-valued; when only a `binarize` reads
/// it, the engine turns the affine map into a threshold and emits packed bits directly.
public struct BinaryConv2DLayer: Codable, Equatable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var window: Window2D
    public var padValue: BinaryPadValue
    /// `b1` tensor of shape [outChannels, kernelH, kernelW, inChannels].
    public var weights: TensorID
    /// `f32` tensors of shape [outChannels].
    public var multiplier: TensorID
    public var bias: TensorID

    public init(inChannels: Int, outChannels: Int, window: Window2D, padValue: BinaryPadValue,
                weights: TensorID, multiplier: TensorID, bias: TensorID) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.window = window
        self.padValue = padValue
        self.weights = weights
        self.multiplier = multiplier
        self.bias = bias
    }
}

/// Binary fully connected layer: `y = multiplier * (K - 2 popcount(x XOR w)) + bias`.
public struct BinaryDenseLayer: Codable, Equatable, Sendable {
    public var inFeatures: Int
    public var outFeatures: Int
    /// `b1` tensor of shape [outFeatures, inFeatures].
    public var weights: TensorID
    public var multiplier: TensorID
    public var bias: TensorID

    public init(inFeatures: Int, outFeatures: Int, weights: TensorID, multiplier: TensorID, bias: TensorID) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.weights = weights
        self.multiplier = multiplier
        self.bias = bias
    }
}

/// Full-precision convolution (stems, 1x1 shortcuts). Zero padding.
public struct Conv2DLayer: Codable, Equatable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var window: Window2D
    /// `f32` [outChannels, kernelH, kernelW, inChannels].
    public var weights: TensorID
    /// `f32` [outChannels], optional.
    public var bias: TensorID?

    public init(inChannels: Int, outChannels: Int, window: Window2D, weights: TensorID, bias: TensorID?) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.window = window
        self.weights = weights
        self.bias = bias
    }
}

/// Full-precision grouped convolution (depthwise when `groups == inChannels ==
/// outChannels`): QuickNet's depthwise stem and blur-pool transitions. Group g reads input
/// channels [g*I/G, (g+1)*I/G) and writes output channels [g*O/G, (g+1)*O/G). Zero padding.
public struct GroupedConv2DLayer: Codable, Equatable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var groups: Int
    public var window: Window2D
    /// `f32` [outChannels, kernelH, kernelW, inChannels / groups].
    public var weights: TensorID
    /// `f32` [outChannels], optional.
    public var bias: TensorID?

    public init(inChannels: Int, outChannels: Int, groups: Int, window: Window2D, weights: TensorID, bias: TensorID?) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.groups = groups
        self.window = window
        self.weights = weights
        self.bias = bias
    }
}

/// Full-precision fully connected layer.
public struct DenseLayer: Codable, Equatable, Sendable {
    public var inFeatures: Int
    public var outFeatures: Int
    /// `f32` [outFeatures, inFeatures].
    public var weights: TensorID
    public var bias: TensorID?

    public init(inFeatures: Int, outFeatures: Int, weights: TensorID, bias: TensorID?) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.weights = weights
        self.bias = bias
    }
}

/// Per-channel `y = multiplier[c] * x + bias[c]`: BatchNorm at inference, or a scale.
public struct ChannelAffineLayer: Codable, Equatable, Sendable {
    public var channels: Int
    public var multiplier: TensorID
    public var bias: TensorID

    public init(channels: Int, multiplier: TensorID, bias: TensorID) {
        self.channels = channels
        self.multiplier = multiplier
        self.bias = bias
    }
}

public struct Pool2DLayer: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable { case max, average }
    public var kind: Kind
    public var window: Window2D
    /// For average pooling: whether padded positions count in the divisor (ONNX
    /// `count_include_pad`). Max pooling ignores padded positions.
    public var countIncludesPadding: Bool

    public init(kind: Kind, window: Window2D, countIncludesPadding: Bool = false) {
        self.kind = kind
        self.window = window
        self.countIncludesPadding = countIncludesPadding
    }
}

public struct PReLULayer: Codable, Equatable, Sendable {
    public var channels: Int
    /// `f32` [channels]: slope for negative inputs.
    public var slope: TensorID

    public init(channels: Int, slope: TensorID) {
        self.channels = channels
        self.slope = slope
    }
}

public struct ClipLayer: Codable, Equatable, Sendable {
    public var min: Float
    public var max: Float

    public init(min: Float, max: Float) {
        self.min = min
        self.max = max
    }
}

/// One operation of the graph.
public enum LayerOperation: Equatable, Sendable {
    /// sign(x): real -> packed bits (x >= 0 is +1).
    case binarize
    /// sign(x) as real +1/-1 values, for full-precision layers that read binarized
    /// activations (e.g. a float classifier after binary layers).
    case sign
    case binaryConv2D(BinaryConv2DLayer)
    case binaryDense(BinaryDenseLayer)
    case conv2D(Conv2DLayer)
    /// A later addition to format 1.0: readers that predate it refuse it as an unknown op.
    case groupedConv2D(GroupedConv2DLayer)
    case dense(DenseLayer)
    case channelAffine(ChannelAffineLayer)
    case add
    case concat
    case pool2D(Pool2DLayer)
    case globalAveragePool
    case relu
    case prelu(PReLULayer)
    case clip(ClipLayer)
    case flatten
    case softmax
    /// log(softmax(x)) over channels, computed stably. A later addition, like groupedConv2D.
    case logSoftmax

    /// The name used in files, `--explain` output and error messages.
    public var opName: String {
        switch self {
        case .binarize: return "binarize"
        case .sign: return "sign"
        case .binaryConv2D: return "binaryConv2d"
        case .binaryDense: return "binaryDense"
        case .conv2D: return "conv2d"
        case .groupedConv2D: return "groupedConv2d"
        case .dense: return "dense"
        case .channelAffine: return "channelAffine"
        case .add: return "add"
        case .concat: return "concat"
        case .pool2D(let pool): return pool.kind == .max ? "maxPool" : "averagePool"
        case .globalAveragePool: return "globalAveragePool"
        case .relu: return "relu"
        case .prelu: return "prelu"
        case .clip: return "clip"
        case .flatten: return "flatten"
        case .softmax: return "softmax"
        case .logSoftmax: return "logSoftmax"
        }
    }

    /// Tensors the operation reads, with the role each plays (for validation and inspect).
    public var tensorReferences: [(role: String, id: TensorID)] {
        switch self {
        case .binaryConv2D(let l):
            return [("weights", l.weights), ("multiplier", l.multiplier), ("bias", l.bias)]
        case .binaryDense(let l):
            return [("weights", l.weights), ("multiplier", l.multiplier), ("bias", l.bias)]
        case .conv2D(let l):
            return [("weights", l.weights)] + (l.bias.map { [("bias", $0)] } ?? [])
        case .groupedConv2D(let l):
            return [("weights", l.weights)] + (l.bias.map { [("bias", $0)] } ?? [])
        case .dense(let l):
            return [("weights", l.weights)] + (l.bias.map { [("bias", $0)] } ?? [])
        case .channelAffine(let l):
            return [("multiplier", l.multiplier), ("bias", l.bias)]
        case .prelu(let l):
            return [("slope", l.slope)]
        default:
            return []
        }
    }
}

public struct Layer: Equatable, Sendable {
    public var name: String
    public var operation: LayerOperation
    public var inputs: [ValueID]

    public init(name: String, operation: LayerOperation, inputs: [ValueID]) {
        self.name = name
        self.operation = operation
        self.inputs = inputs
    }
}

extension Layer: Codable {
    private enum CodingKeys: String, CodingKey { case name, op, inputs, attributes }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        inputs = try container.decode([ValueID].self, forKey: .inputs)
        let op = try container.decode(String.self, forKey: .op)
        func attributes<T: Decodable>(_ type: T.Type) throws -> T {
            try container.decode(T.self, forKey: .attributes)
        }
        switch op {
        case "binarize": operation = .binarize
        case "sign": operation = .sign
        case "binaryConv2d": operation = .binaryConv2D(try attributes(BinaryConv2DLayer.self))
        case "binaryDense": operation = .binaryDense(try attributes(BinaryDenseLayer.self))
        case "conv2d": operation = .conv2D(try attributes(Conv2DLayer.self))
        case "groupedConv2d": operation = .groupedConv2D(try attributes(GroupedConv2DLayer.self))
        case "dense": operation = .dense(try attributes(DenseLayer.self))
        case "channelAffine": operation = .channelAffine(try attributes(ChannelAffineLayer.self))
        case "add": operation = .add
        case "concat": operation = .concat
        case "maxPool", "averagePool": operation = .pool2D(try attributes(Pool2DLayer.self))
        case "globalAveragePool": operation = .globalAveragePool
        case "relu": operation = .relu
        case "prelu": operation = .prelu(try attributes(PReLULayer.self))
        case "clip": operation = .clip(try attributes(ClipLayer.self))
        case "flatten": operation = .flatten
        case "softmax": operation = .softmax
        case "logSoftmax": operation = .logSoftmax
        default:
            throw DecodingError.dataCorruptedError(forKey: .op, in: container,
                                                   debugDescription: "unknown op '\(op)'")
        }
        if case .pool2D(let pool) = operation, pool.kind.rawValue != (op == "maxPool" ? "max" : "average") {
            throw DecodingError.dataCorruptedError(forKey: .attributes, in: container,
                                                   debugDescription: "op '\(op)' has pool kind '\(pool.kind.rawValue)'")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(operation.opName, forKey: .op)
        try container.encode(inputs, forKey: .inputs)
        switch operation {
        case .binaryConv2D(let a): try container.encode(a, forKey: .attributes)
        case .binaryDense(let a): try container.encode(a, forKey: .attributes)
        case .conv2D(let a): try container.encode(a, forKey: .attributes)
        case .groupedConv2D(let a): try container.encode(a, forKey: .attributes)
        case .dense(let a): try container.encode(a, forKey: .attributes)
        case .channelAffine(let a): try container.encode(a, forKey: .attributes)
        case .pool2D(let a): try container.encode(a, forKey: .attributes)
        case .prelu(let a): try container.encode(a, forKey: .attributes)
        case .clip(let a): try container.encode(a, forKey: .attributes)
        case .binarize, .sign, .add, .concat, .globalAveragePool, .relu, .flatten, .softmax, .logSoftmax: break
        }
    }
}
