/// How the caller lays out an input or output tensor in memory. The engine works in NHWC
/// internally; imported ONNX models keep ONNX's NCHW at their boundary so callers can feed
/// exactly what they fed ONNX Runtime.
public enum TensorLayout: String, Codable, Sendable {
    case nchw = "NCHW"
    case nhwc = "NHWC"
    /// A batch of flat feature vectors: [N, C].
    case nc = "NC"
}

/// A model boundary: the caller-visible name, shape (batch first, batch is 1) and layout.
public struct TensorSpec: Codable, Equatable, Sendable {
    public var name: String
    public var shape: [Int]
    public var layout: TensorLayout

    public init(name: String, shape: [Int], layout: TensorLayout) {
        self.name = name
        self.shape = shape
        self.layout = layout
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// Height, width and channels of the tensor in the engine's NHWC terms.
    public var spatialShape: (h: Int, w: Int, c: Int)? {
        switch (layout, shape.count) {
        case (.nchw, 4) where shape[0] == 1: return (shape[2], shape[3], shape[1])
        case (.nhwc, 4) where shape[0] == 1: return (shape[1], shape[2], shape[3])
        case (.nc, 2) where shape[0] == 1: return (1, 1, shape[1])
        default: return nil
        }
    }
}

/// What an application does to raw data before it enters the model:
/// `x' = (x * scale - mean[c]) / std[c]`, per channel (one value applies to all channels).
/// Images given to `fleetctl model run` or to an agent go through it; raw tensors do not.
public struct Preprocessing: Codable, Equatable, Sendable {
    public var scale: Float
    public var mean: [Float]
    public var std: [Float]

    public init(scale: Float = 1, mean: [Float] = [0], std: [Float] = [1]) {
        self.scale = scale
        self.mean = mean
        self.std = std
    }
}

public struct ModelMetadata: Codable, Equatable, Sendable {
    public var name: String
    public var version: String
    public var description: String
    /// Tool that wrote the file, e.g. "bitfleet-convert 0.1 (onnx opset 13)".
    public var producer: String
    public var input: TensorSpec
    public var output: TensorSpec
    public var preprocessing: Preprocessing?
    /// One label per output class, or empty.
    public var labels: [String]
    /// Free-form facts such as `accuracy` or `dataset`.
    public var properties: [String: String]

    public init(name: String, version: String = "", description: String = "", producer: String = "",
                input: TensorSpec, output: TensorSpec, preprocessing: Preprocessing? = nil,
                labels: [String] = [], properties: [String: String] = [:]) {
        self.name = name
        self.version = version
        self.description = description
        self.producer = producer
        self.input = input
        self.output = output
        self.preprocessing = preprocessing
        self.labels = labels
        self.properties = properties
    }
}

/// An input and the output the model must produce for it, so a device can check a model
/// before it serves traffic. `tolerance` is relative to the largest expected magnitude.
public struct SelfTestVector: Codable, Equatable, Sendable {
    public var input: TensorID
    public var expected: TensorID
    public var tolerance: Float

    public init(input: TensorID, expected: TensorID, tolerance: Float = 1e-4) {
        self.input = input
        self.expected = expected
        self.tolerance = tolerance
    }
}
