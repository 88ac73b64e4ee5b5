/// Why an ONNX file could not be converted, naming the node (or field) and what was wrong.
public struct ImportError: Error, CustomStringConvertible, Equatable {
    public var location: String
    public var message: String

    public init(_ location: String, _ message: String) {
        self.location = location
        self.message = message
    }

    static func node(_ node: ONNXNode, _ message: String) -> ImportError {
        ImportError("node '\(node.name)' (\(node.opType))", message)
    }

    public var description: String { "\(location): \(message)" }
}
