import BitModel

/// Graph-level simplifications after conversion, so the file holds the folded network:
/// layers whose value reaches no output dropped (a Clip only a Sign read, sign values
/// nothing reads), per-channel affine maps (BatchNorm, scales, ReActNet's learnable
/// shifts) merged with each other and folded into the conv or dense layer before them,
/// and tensors no layer uses dropped.
enum GraphRewriter {
    static func optimize(_ model: Model) throws -> Model {
        var model = removeDeadLayers(model)
        while let (first, second) = mergeableAffines(in: model) {
            merge(affine: second, into: first, of: &model)
        }
        while let (producer, affine) = foldableAffine(in: model) {
            fold(affine: affine, into: producer, of: &model)
        }
        return compactTensors(model)
    }

    private static func readerCounts(_ model: Model) -> [Int] {
        var readers = [Int](repeating: 0, count: model.layers.count + 1)
        for layer in model.layers { for input in layer.inputs { readers[input] += 1 } }
        readers[model.output] += 1
        return readers
    }

    /// Drops every layer whose value no later layer (or the output) reads.
    private static func removeDeadLayers(_ model: Model) -> Model {
        var model = model
        var live = [Bool](repeating: false, count: model.layers.count + 1)
        live[model.output] = true
        for index in model.layers.indices.reversed() where live[index + 1] {
            for input in model.layers[index].inputs { live[input] = true }
        }
        var newValue = [ValueID](repeating: -1, count: model.layers.count + 1)
        newValue[0] = 0
        var layers: [Layer] = []
        for (index, layer) in model.layers.enumerated() where live[index + 1] {
            var kept = layer
            kept.inputs = layer.inputs.map { newValue[$0] }
            layers.append(kept)
            newValue[index + 1] = layers.count
        }
        model.layers = layers
        model.output = newValue[model.output]
        return model
    }

    /// A channelAffine whose input is another channelAffine read by nothing else.
    private static func mergeableAffines(in model: Model) -> (first: Int, second: Int)? {
        let readers = readerCounts(model)
        for (index, layer) in model.layers.enumerated() {
            guard case .channelAffine = layer.operation, let input = layer.inputs.first, input > 0, readers[input] == 1,
                  case .channelAffine = model.layers[input - 1].operation else { continue }
            return (input - 1, index)
        }
        return nil
    }

    /// second(first(x)) = m2 (m1 x + b1) + b2, stored in `first`; `second` is removed.
    private static func merge(affine second: Int, into first: Int, of model: inout Model) {
        guard case .channelAffine(let outer) = model.layers[second].operation,
              case .channelAffine(let inner) = model.layers[first].operation else { return }
        let m2 = model.tensors[outer.multiplier].floats, b2 = model.tensors[outer.bias].floats
        let m1 = model.tensors[inner.multiplier].floats, b1 = model.tensors[inner.bias].floats
        model.tensors[inner.multiplier] = Tensor(shape: [m1.count], floats: m1.indices.map { m2[$0] * m1[$0] })
        model.tensors[inner.bias] = Tensor(shape: [b1.count], floats: b1.indices.map { m2[$0] * b1[$0] + b2[$0] })
        model.layers[first].name += "+" + model.layers[second].name
        removeLayer(second, replacingWith: first + 1, in: &model)
    }

    /// A channelAffine whose input is a conv/dense output read by nothing else.
    private static func foldableAffine(in model: Model) -> (producer: Int, affine: Int)? {
        let readers = readerCounts(model)
        for (index, layer) in model.layers.enumerated() {
            guard case .channelAffine = layer.operation, let input = layer.inputs.first, input > 0,
                  readers[input] == 1 else { continue }
            switch model.layers[input - 1].operation {
            case .binaryConv2D, .binaryDense, .conv2D, .groupedConv2D, .dense: return (input - 1, index)
            default: continue
            }
        }
        return nil
    }

    private static func fold(affine index: Int, into producer: Int, of model: inout Model) {
        guard case .channelAffine(let affine) = model.layers[index].operation else { return }
        let scale = model.tensors[affine.multiplier].floats, shift = model.tensors[affine.bias].floats
        func rescale(multiplier: TensorID, bias: TensorID) {
            let m = model.tensors[multiplier].floats, b = model.tensors[bias].floats
            model.tensors[multiplier] = Tensor(shape: [m.count], floats: m.indices.map { m[$0] * scale[$0] })
            model.tensors[bias] = Tensor(shape: [b.count], floats: b.indices.map { b[$0] * scale[$0] + shift[$0] })
        }
        func rescaleFloat(weights: TensorID, bias: TensorID?) -> TensorID {
            let w = model.tensors[weights]
            let values = w.floats, rows = w.shape[0], perRow = values.count / rows
            model.tensors[weights] = Tensor(shape: w.shape, floats: values.indices.map { values[$0] * scale[$0 / perRow] })
            let b = bias.map { model.tensors[$0].floats } ?? [Float](repeating: 0, count: rows)
            let folded = Tensor(shape: [rows], floats: b.indices.map { b[$0] * scale[$0] + shift[$0] })
            if let bias {
                model.tensors[bias] = folded
                return bias
            }
            model.tensors.append(folded)
            return model.tensors.count - 1
        }
        var layer = model.layers[producer]
        switch layer.operation {
        case .binaryConv2D(let conv): rescale(multiplier: conv.multiplier, bias: conv.bias)
        case .binaryDense(let dense): rescale(multiplier: dense.multiplier, bias: dense.bias)
        case .conv2D(var conv):
            conv.bias = rescaleFloat(weights: conv.weights, bias: conv.bias)
            layer.operation = .conv2D(conv)
        case .groupedConv2D(var conv):
            conv.bias = rescaleFloat(weights: conv.weights, bias: conv.bias)
            layer.operation = .groupedConv2D(conv)
        case .dense(var dense):
            dense.bias = rescaleFloat(weights: dense.weights, bias: dense.bias)
            layer.operation = .dense(dense)
        default: return
        }
        layer.name += "+" + model.layers[index].name
        model.layers[producer] = layer
        removeLayer(index, replacingWith: producer + 1, in: &model)
    }

    /// Deletes layer `index`, redirecting its readers to `replacement` and renumbering.
    private static func removeLayer(_ index: Int, replacingWith replacement: ValueID, in model: inout Model) {
        let removed = index + 1
        func remap(_ value: ValueID) -> ValueID {
            if value == removed { return replacement }
            return value > removed ? value - 1 : value
        }
        model.layers.remove(at: index)
        for i in model.layers.indices { model.layers[i].inputs = model.layers[i].inputs.map(remap) }
        model.output = remap(model.output)
    }

    private static func compactTensors(_ model: Model) -> Model {
        var model = model
        var used = Set<TensorID>()
        for layer in model.layers { for reference in layer.operation.tensorReferences { used.insert(reference.id) } }
        for test in model.selfTests { used.insert(test.input); used.insert(test.expected) }
        let kept = model.tensors.indices.filter { used.contains($0) }
        var newID = [TensorID: TensorID]()
        for (new, old) in kept.enumerated() { newID[old] = new }
        model.tensors = kept.map { model.tensors[$0] }
        func id(_ old: TensorID) -> TensorID { newID[old]! }
        for i in model.layers.indices {
            switch model.layers[i].operation {
            case .binaryConv2D(var l): l.weights = id(l.weights); l.multiplier = id(l.multiplier); l.bias = id(l.bias); model.layers[i].operation = .binaryConv2D(l)
            case .binaryDense(var l): l.weights = id(l.weights); l.multiplier = id(l.multiplier); l.bias = id(l.bias); model.layers[i].operation = .binaryDense(l)
            case .conv2D(var l): l.weights = id(l.weights); l.bias = l.bias.map(id); model.layers[i].operation = .conv2D(l)
            case .groupedConv2D(var l): l.weights = id(l.weights); l.bias = l.bias.map(id); model.layers[i].operation = .groupedConv2D(l)
            case .dense(var l): l.weights = id(l.weights); l.bias = l.bias.map(id); model.layers[i].operation = .dense(l)
            case .channelAffine(var l): l.multiplier = id(l.multiplier); l.bias = id(l.bias); model.layers[i].operation = .channelAffine(l)
            case .prelu(var l): l.slope = id(l.slope); model.layers[i].operation = .prelu(l)
            default: break
            }
        }
        model.selfTests = model.selfTests.map { SelfTestVector(input: id($0.input), expected: id($0.expected), tolerance: $0.tolerance) }
        return model
    }
}
