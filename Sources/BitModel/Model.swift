/// A BNN model: metadata, the layer graph, its constant tensors and optional self-test
/// vectors. Construct it in code (`ModelBuilder`), read it (`ModelReader`) or write it
/// (`ModelWriter`); `validate()` checks every invariant the engine relies on.
public struct Model: Equatable, Sendable {
    public var metadata: ModelMetadata
    public var layers: [Layer]
    /// The value the model returns; by default the last layer's.
    public var output: ValueID
    public var tensors: [Tensor]
    public var selfTests: [SelfTestVector]

    public init(metadata: ModelMetadata, layers: [Layer], output: ValueID? = nil,
                tensors: [Tensor], selfTests: [SelfTestVector] = []) {
        self.metadata = metadata
        self.layers = layers
        self.output = output ?? layers.count
        self.tensors = tensors
        self.selfTests = selfTests
    }

    /// Checks tensors, graph, shapes, metadata and self tests; returns the inferred shape of
    /// every value (index = ValueID).
    @discardableResult
    public func validate() throws -> [ValueShape] {
        try ModelValidator(model: self).validate()
    }

    /// Sum over weights of the bits they need (32 per float, 1 per binary weight).
    public var weightInformationBits: Int {
        let selfTestTensors = Set(selfTests.flatMap { [$0.input, $0.expected] })
        return tensors.indices.filter { !selfTestTensors.contains($0) }
            .reduce(0) { $0 + tensors[$1].informationBits }
    }
}
