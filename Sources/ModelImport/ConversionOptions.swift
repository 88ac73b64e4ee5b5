import BitModel

/// What the caller knows that the ONNX file does not: names, labels, preprocessing.
public struct ConversionOptions: Sendable {
    public var name: String?
    public var version: String
    public var description: String
    public var labels: [String]
    public var preprocessing: Preprocessing?
    public var properties: [String: String]

    public init(name: String? = nil, version: String = "", description: String = "", labels: [String] = [],
                preprocessing: Preprocessing? = nil, properties: [String: String] = [:]) {
        self.name = name
        self.version = version
        self.description = description
        self.labels = labels
        self.preprocessing = preprocessing
        self.properties = properties
    }
}

/// One line of `fleetctl model convert --explain`: an ONNX node and what it became.
public struct NodeExplanation: Sendable, Codable, Equatable {
    public var node: String
    public var opType: String
    public var result: String
}

public struct ConversionResult: Sendable {
    public var model: Model
    public var explanation: [NodeExplanation]
    /// Facts about the conversion worth telling the user (e.g. a symbolic batch size).
    public var notes: [String]
}
