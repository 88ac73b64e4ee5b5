/// Per-layer cost of a model: output shape, parameter bits and bytes, multiply-accumulates.
public struct LayerStatistics: Codable, Equatable, Sendable {
    public var index: Int
    public var name: String
    public var op: String
    public var inputs: [ValueID]
    public var output: String
    public var parameterBits: Int
    public var parameterBytes: Int
    /// XNOR/popcount MACs (binary layers) and float MACs (everything else).
    public var binaryMACs: Int
    public var floatMACs: Int
}

public struct ModelStatistics: Codable, Equatable, Sendable {
    public var layers: [LayerStatistics]
    public var parameterBits: Int
    public var parameterBytes: Int
    public var binaryMACs: Int
    public var floatMACs: Int

    public init(_ model: Model) throws {
        let shapes = try model.validate()
        layers = model.layers.enumerated().map { index, layer in
            let output = shapes[index + 1]
            let tensors = layer.operation.tensorReferences.map { model.tensors[$0.id] }
            var binary = 0, float = 0
            switch layer.operation {
            case .binaryConv2D(let l):
                binary = output.pixels * l.outChannels * l.window.kernelH * l.window.kernelW * l.inChannels
            case .binaryDense(let l):
                binary = l.inFeatures * l.outFeatures
            case .conv2D(let l):
                float = output.pixels * l.outChannels * l.window.kernelH * l.window.kernelW * l.inChannels
            case .groupedConv2D(let l):
                float = output.pixels * l.outChannels * l.window.kernelH * l.window.kernelW * (l.inChannels / max(l.groups, 1))
            case .dense(let l):
                float = l.inFeatures * l.outFeatures
            default:
                break
            }
            return LayerStatistics(index: index, name: layer.name, op: layer.operation.opName, inputs: layer.inputs,
                                   output: output.description,
                                   parameterBits: tensors.reduce(0) { $0 + $1.informationBits },
                                   parameterBytes: tensors.reduce(0) { $0 + $1.byteCount },
                                   binaryMACs: binary, floatMACs: float)
        }
        parameterBits = layers.reduce(0) { $0 + $1.parameterBits }
        parameterBytes = layers.reduce(0) { $0 + $1.parameterBytes }
        binaryMACs = layers.reduce(0) { $0 + $1.binaryMACs }
        floatMACs = layers.reduce(0) { $0 + $1.floatMACs }
    }
}
