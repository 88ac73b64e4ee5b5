import BitModel

/// A model compiled for execution: fused steps, and one arena in which every activation
/// has a fixed offset, so running the model allocates nothing.
struct ExecutionPlan {
    let steps: [PlannedStep]
    let shapes: [ValueShape]
    let arenaBytes: Int
    let scratchBytesPerThread: Int
    let inputOffset: Int
    let outputOffset: Int
    let output: ValueID
}

/// Turns a validated model into an `ExecutionPlan`.
///
/// Fusions (each only where the intermediate value has no other reader):
/// - binary conv/dense + channelAffine (BatchNorm) -> folded multiplier and bias;
/// - then + binarize -> per-channel thresholds, the step emits packed bits;
/// - or + add of an earlier value -> residual added in the epilogue (Bi-Real shortcuts);
/// - float conv/dense (and grouped conv) + channelAffine -> folded into weights and bias.
enum Planner {
    static func plan(_ model: Model, kernels: KernelSet, threads: Int) throws -> ExecutionPlan {
        let shapes = try model.validate()
        var consumers = [[Int]](repeating: [], count: shapes.count)
        for (index, layer) in model.layers.enumerated() {
            for input in layer.inputs { consumers[input].append(index) }
        }
        func soleConsumer(of value: ValueID) -> Int? {
            guard value != model.output, consumers[value].count == 1 else { return nil }
            let consumer = consumers[value][0]
            return model.layers[consumer].inputs.filter { $0 == value }.count == 1 ? consumer : nil
        }
        func floats(_ id: TensorID) -> [Float] { model.tensors[id].floats }

        var absorbed = Set<Int>()
        var steps: [PlannedStep] = []
        for (index, layer) in model.layers.enumerated() where !absorbed.contains(index) {
            let value = index + 1
            var names = [layer.name]

            // Follows a chain of channelAffine layers, folding them into (m, b).
            func foldAffines(from start: ValueID, multiplier m: inout [Float], bias b: inout [Float]) -> ValueID {
                var current = start
                while let next = soleConsumer(of: current), case .channelAffine(let affine) = model.layers[next].operation {
                    let scale = floats(affine.multiplier), shift = floats(affine.bias)
                    for o in m.indices {
                        m[o] *= scale[o]
                        b[o] = b[o] * scale[o] + shift[o]
                    }
                    absorbed.insert(next)
                    names.append(model.layers[next].name)
                    current = next + 1
                }
                return current
            }

            switch layer.operation {
            case .binaryConv2D, .binaryDense:
                let (window, padValue, weights, multiplierID, biasID): (Window2D, BinaryPadValue, TensorID, TensorID, TensorID)
                switch layer.operation {
                case .binaryConv2D(let conv):
                    (window, padValue, weights, multiplierID, biasID) = (conv.window, conv.padValue, conv.weights, conv.multiplier, conv.bias)
                case .binaryDense(let dense):
                    (window, padValue, weights, multiplierID, biasID) = (Window2D(kernel: 1), .zero, dense.weights, dense.multiplier, dense.bias)
                default: preconditionFailure()
                }
                var m = floats(multiplierID), b = floats(biasID)
                var current = foldAffines(from: value, multiplier: &m, bias: &b)
                let epilogue: BinaryConvolutionStep.Output
                var residual: ValueID?
                if let next = soleConsumer(of: current), case .binarize = model.layers[next].operation {
                    let maxDot = window.kernelH * window.kernelW * shapes[layer.inputs[0]].channels
                    let (direction, threshold) = BinaryConvolutionStep.thresholds(multiplier: m, bias: b, maxDot: maxDot)
                    epilogue = .sign(direction: direction, threshold: threshold)
                    absorbed.insert(next)
                    names.append(model.layers[next].name)
                    current = next + 1
                } else if let next = soleConsumer(of: current), case .add = model.layers[next].operation,
                          let other = model.layers[next].inputs.first(where: { $0 != current }), other <= index {
                    residual = other
                    epilogue = .real(multiplier: m, bias: b, residual: true)
                    absorbed.insert(next)
                    names.append(model.layers[next].name)
                    current = next + 1
                } else {
                    epilogue = .real(multiplier: m, bias: b, residual: false)
                }
                steps.append(try BinaryConvolutionStep(
                    label: names.joined(separator: "+"), input: layer.inputs[0], residual: residual, output: current,
                    inputShape: shapes[layer.inputs[0]], outputShape: shapes[current], window: window,
                    padValue: padValue, weights: model.tensors[weights], epilogue: epilogue, kernels: kernels, threads: threads))

            case .conv2D, .dense:
                let (window, weightsID, biasID, outChannels): (Window2D, TensorID, TensorID?, Int)
                switch layer.operation {
                case .conv2D(let conv): (window, weightsID, biasID, outChannels) = (conv.window, conv.weights, conv.bias, conv.outChannels)
                case .dense(let dense): (window, weightsID, biasID, outChannels) = (Window2D(kernel: 1), dense.weights, dense.bias, dense.outFeatures)
                default: preconditionFailure()
                }
                var scale = [Float](repeating: 1, count: outChannels)
                var b = biasID.map(floats) ?? [Float](repeating: 0, count: outChannels)
                let current = foldAffines(from: value, multiplier: &scale, bias: &b)
                var w = floats(weightsID)
                let perChannel = w.count / outChannels
                if scale.contains(where: { $0 != 1 }) {
                    for o in 0..<outChannels {
                        for k in 0..<perChannel { w[o * perChannel + k] *= scale[o] }
                    }
                }
                steps.append(try FloatConvolutionStep(
                    label: names.joined(separator: "+"), input: layer.inputs[0], output: current,
                    inputShape: shapes[layer.inputs[0]], outputShape: shapes[current], window: window,
                    weights: w, bias: b, kernels: kernels, threads: threads))

            case .groupedConv2D(let conv):
                var scale = [Float](repeating: 1, count: conv.outChannels)
                var b = conv.bias.map(floats) ?? [Float](repeating: 0, count: conv.outChannels)
                let current = foldAffines(from: value, multiplier: &scale, bias: &b)
                var w = floats(conv.weights)
                let perChannel = w.count / conv.outChannels
                for o in 0..<conv.outChannels where scale[o] != 1 {
                    for k in 0..<perChannel { w[o * perChannel + k] *= scale[o] }
                }
                steps.append(GroupedConvolutionStep(
                    label: names.joined(separator: "+"), input: layer.inputs[0], output: current,
                    inputShape: shapes[layer.inputs[0]], outputShape: shapes[current], window: conv.window,
                    groups: conv.groups, weights: w, bias: b))

            case .binarize:
                steps.append(BinarizeStep(label: layer.name, input: layer.inputs[0], output: value, outputShape: shapes[value]))
            case .channelAffine(let affine):
                steps.append(ChannelAffineStep(label: layer.name, input: layer.inputs[0], output: value, outputShape: shapes[value],
                                               multiplier: floats(affine.multiplier), bias: floats(affine.bias)))
            case .add:
                steps.append(AddStep(label: layer.name, inputs: layer.inputs, output: value, outputShape: shapes[value]))
            case .concat:
                steps.append(ConcatStep(label: layer.name, inputs: layer.inputs, channelCounts: layer.inputs.map { shapes[$0].channels },
                                        output: value, outputShape: shapes[value]))
            case .pool2D(let pool):
                steps.append(PoolStep(label: layer.name, input: layer.inputs[0], output: value, inputShape: shapes[layer.inputs[0]],
                                      outputShape: shapes[value], pool: pool))
            case .globalAveragePool:
                steps.append(GlobalAveragePoolStep(label: layer.name, input: layer.inputs[0], output: value,
                                                   inputShape: shapes[layer.inputs[0]], outputShape: shapes[value]))
            case .sign:
                steps.append(ActivationStep(label: layer.name, input: layer.inputs[0], output: value, outputShape: shapes[value], function: .sign))
            case .relu:
                steps.append(ActivationStep(label: layer.name, input: layer.inputs[0], output: value, outputShape: shapes[value], function: .relu))
            case .prelu(let prelu):
                steps.append(ActivationStep(label: layer.name, input: layer.inputs[0], output: value, outputShape: shapes[value],
                                            function: .prelu(slope: floats(prelu.slope))))
            case .clip(let clip):
                steps.append(ActivationStep(label: layer.name, input: layer.inputs[0], output: value, outputShape: shapes[value],
                                            function: .clip(min: clip.min, max: clip.max)))
            case .flatten:
                steps.append(CopyStep(label: layer.name, inputs: layer.inputs, output: value, outputShape: shapes[value]))
            case .softmax:
                steps.append(SoftmaxStep(label: layer.name, inputs: layer.inputs, output: value, outputShape: shapes[value]))
            case .logSoftmax:
                steps.append(LogSoftmaxStep(label: layer.name, inputs: layer.inputs, output: value, outputShape: shapes[value]))
            }
        }
        return allocate(steps: steps, shapes: shapes, output: model.output)
    }

    /// Greedy-by-size placement of every value's buffer into one arena: values whose
    /// lifetimes (defining step ... last reading step) overlap never share bytes.
    private static func allocate(steps: [PlannedStep], shapes: [ValueShape], output: ValueID) -> ExecutionPlan {
        struct Lifetime { var value: ValueID; var bytes: Int; var first: Int; var last: Int }
        var lifetimes: [ValueID: Lifetime] = [0: Lifetime(value: 0, bytes: shapes[0].byteCount, first: -1, last: -1)]
        for (index, step) in steps.enumerated() {
            lifetimes[step.output] = Lifetime(value: step.output, bytes: shapes[step.output].byteCount, first: index, last: index)
            for input in step.inputs { lifetimes[input]?.last = index }
        }
        lifetimes[output]?.last = steps.count
        let aligned = { (bytes: Int) in (bytes + 63) / 64 * 64 }
        var placed: [(lifetime: Lifetime, offset: Int)] = []
        var offsets: [ValueID: Int] = [:]
        var arenaBytes = 0
        for lifetime in lifetimes.values.sorted(by: { ($0.bytes, $1.value) > ($1.bytes, $0.value) }) {
            let conflicts = placed
                .filter { $0.lifetime.first <= lifetime.last && lifetime.first <= $0.lifetime.last }
                .sorted { $0.offset < $1.offset }
            var offset = 0
            for other in conflicts {
                if offset + aligned(lifetime.bytes) <= other.offset { break }
                offset = max(offset, other.offset + aligned(other.lifetime.bytes))
            }
            placed.append((lifetime, offset))
            offsets[lifetime.value] = offset
            arenaBytes = max(arenaBytes, offset + aligned(lifetime.bytes))
        }
        for step in steps {
            step.inputOffsets = step.inputs.map { offsets[$0]! }
            step.outputOffset = offsets[step.output]!
        }
        let scratch = ((steps.map(\.scratchBytesPerThread).max() ?? 0) + 63) / 64 * 64
        return ExecutionPlan(steps: steps, shapes: shapes, arenaBytes: max(arenaBytes, 64),
                             scratchBytesPerThread: max(scratch, 64), inputOffset: offsets[0]!,
                             outputOffset: offsets[output]!, output: output)
    }
}
