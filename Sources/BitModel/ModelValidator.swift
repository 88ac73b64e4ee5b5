/// Checks a model against every invariant the engine relies on, and infers the shape of
/// every value. Errors name the layer (index, name, op) or tensor at fault.
struct ModelValidator {
    let model: Model

    func validate() throws -> [ValueShape] {
        try checkCounts()
        try checkTensors()
        let shapes = try inferShapes()
        try checkMetadata(outputShape: shapes[model.output])
        try checkSelfTests()
        return shapes
    }

    private func checkCounts() throws {
        guard !model.layers.isEmpty else {
            throw ModelFormatError(.invalidGraph, at: "graph", "the model has no layers")
        }
        guard model.layers.count <= ModelLimits.maxLayers else {
            throw ModelFormatError(.tooLarge, at: "graph", "\(model.layers.count) layers exceed the limit of \(ModelLimits.maxLayers)")
        }
        guard model.tensors.count <= ModelLimits.maxTensors else {
            throw ModelFormatError(.tooLarge, at: "tensors", "\(model.tensors.count) tensors exceed the limit of \(ModelLimits.maxTensors)")
        }
        guard (1...model.layers.count).contains(model.output) else {
            throw ModelFormatError(.invalidGraph, at: "graph output", "value \(model.output) is not produced by any layer")
        }
    }

    private func checkTensors() throws {
        for (index, tensor) in model.tensors.enumerated() {
            let location = "tensor \(index)"
            guard !tensor.shape.isEmpty, tensor.shape.allSatisfy({ (1...ModelLimits.maxDimension).contains($0) }) else {
                throw ModelFormatError(.invalidTensor, at: location, "shape \(tensor.shape) has an empty or out-of-range dimension")
            }
            let elements = tensor.shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
            guard elements <= ModelLimits.maxTensorElements,
                  tensor.shape.dropFirst().reduce(tensor.shape[0], { a, b in a > ModelLimits.maxTensorElements ? a : a * b }) <= ModelLimits.maxTensorElements
            else {
                throw ModelFormatError(.tooLarge, at: location, "shape \(tensor.shape) has more than \(ModelLimits.maxTensorElements) elements")
            }
            switch tensor.storage {
            case .float32(let values):
                guard values.count == elements else {
                    throw ModelFormatError(.invalidTensor, at: location, "shape \(tensor.shape) needs \(elements) floats, found \(values.count)")
                }
            case .bits(let words):
                let rowLength = tensor.shape.last!
                let rows = elements / rowLength
                let wordsPerRow = BitPacking.wordCount(forBits: rowLength)
                guard words.count == rows * wordsPerRow else {
                    throw ModelFormatError(.invalidTensor, at: location, "binary shape \(tensor.shape) needs \(rows * wordsPerRow) words, found \(words.count)")
                }
                let mask = BitPacking.lastWordMask(rowLength: rowLength)
                if mask != ~0 {
                    for row in 0..<rows where words[row * wordsPerRow + wordsPerRow - 1] & ~mask != 0 {
                        throw ModelFormatError(.invalidTensor, at: location, "row \(row) has padding bits set past \(rowLength) values")
                    }
                }
            }
        }
    }

    private func layerLocation(_ index: Int) -> String {
        let layer = model.layers[index]
        return "layer \(index) '\(layer.name)' (\(layer.operation.opName))"
    }

    private func tensor(_ id: TensorID, role: String, of layerIndex: Int,
                        type: Tensor.DataType, shape: [Int]) throws -> Tensor {
        guard model.tensors.indices.contains(id) else {
            throw ModelFormatError(.invalidGraph, at: layerLocation(layerIndex), "\(role) refers to tensor \(id), but the model has \(model.tensors.count) tensors")
        }
        let tensor = model.tensors[id]
        guard tensor.dataType == type else {
            throw ModelFormatError(.invalidGraph, at: layerLocation(layerIndex), "\(role) tensor \(id) is \(tensor.dataType.rawValue), expected \(type.rawValue)")
        }
        guard tensor.shape == shape else {
            throw ModelFormatError(.invalidGraph, at: layerLocation(layerIndex), "\(role) tensor \(id) has shape \(tensor.shape), expected \(shape)")
        }
        return tensor
    }

    private func checkWindow(_ window: Window2D, at index: Int) throws {
        let location = layerLocation(index)
        guard (1...ModelLimits.maxKernelSize).contains(window.kernelH), (1...ModelLimits.maxKernelSize).contains(window.kernelW) else {
            throw ModelFormatError(.invalidGraph, at: location, "kernel \(window.kernelH)x\(window.kernelW) is outside 1...\(ModelLimits.maxKernelSize)")
        }
        guard (1...ModelLimits.maxStride).contains(window.strideH), (1...ModelLimits.maxStride).contains(window.strideW) else {
            throw ModelFormatError(.invalidGraph, at: location, "stride \(window.strideH)x\(window.strideW) is outside 1...\(ModelLimits.maxStride)")
        }
        let pads = [window.padTop, window.padBottom, window.padLeft, window.padRight]
        let kernels = [window.kernelH, window.kernelH, window.kernelW, window.kernelW]
        guard zip(pads, kernels).allSatisfy({ $0 >= 0 && $0 < $1 }) else {
            throw ModelFormatError(.invalidGraph, at: location, "padding \(pads) must be >= 0 and smaller than the kernel")
        }
    }

    private func windowOutput(_ window: Window2D, input: ValueShape, at index: Int) throws -> (Int, Int) {
        try checkWindow(window, at: index)
        guard let h = window.outputHeight(input: input.height), let w = window.outputWidth(input: input.width) else {
            throw ModelFormatError(.invalidGraph, at: layerLocation(index), "a \(window.kernelH)x\(window.kernelW) window does not fit input \(input)")
        }
        return (h, w)
    }

    func inferShapes() throws -> [ValueShape] {
        guard let inputShape = model.metadata.input.spatialShape else {
            throw ModelFormatError(.invalidMetadata, at: "metadata.input", "shape \(model.metadata.input.shape) with layout \(model.metadata.input.layout.rawValue) is not a batch-1 NCHW, NHWC or NC shape")
        }
        guard [inputShape.h, inputShape.w, inputShape.c].allSatisfy({ (1...ModelLimits.maxDimension).contains($0) }) else {
            throw ModelFormatError(.invalidMetadata, at: "metadata.input", "shape \(model.metadata.input.shape) has an out-of-range dimension")
        }
        // Each dimension is at most 2^24, so the product fits in 72 bits: check it before any
        // layer multiplies the dimensions out (later values stay below 2^28 elements each).
        let (pixels, pixelsOverflow) = inputShape.h.multipliedReportingOverflow(by: inputShape.w)
        let (elements, elementsOverflow) = pixels.multipliedReportingOverflow(by: inputShape.c)
        guard !pixelsOverflow, !elementsOverflow, elements <= ModelLimits.maxActivationElements else {
            throw ModelFormatError(.tooLarge, at: "metadata.input", "shape \(model.metadata.input.shape) exceeds \(ModelLimits.maxActivationElements) elements")
        }
        var shapes = [ValueShape(kind: .real, height: inputShape.h, width: inputShape.w, channels: inputShape.c)]
        shapes.reserveCapacity(model.layers.count + 1)
        for (index, layer) in model.layers.enumerated() {
            let produced = index + 1
            for input in layer.inputs where !(0..<produced).contains(input) {
                throw ModelFormatError(.invalidGraph, at: layerLocation(index), "input value \(input) is not produced before this layer")
            }
            let inputs = layer.inputs.map { shapes[$0] }
            let shape = try outputShape(of: layer, index: index, inputs: inputs)
            guard shape.elementCount <= ModelLimits.maxActivationElements, shape.elementCount > 0 else {
                throw ModelFormatError(.tooLarge, at: layerLocation(index), "output \(shape) is empty or exceeds \(ModelLimits.maxActivationElements) elements")
            }
            shapes.append(shape)
        }
        return shapes
    }

    private func expectInputs(_ inputs: [ValueShape], count: Int, kind: ValueShape.Kind, at index: Int) throws {
        let location = layerLocation(index)
        guard inputs.count == count else {
            throw ModelFormatError(.invalidGraph, at: location, "expects \(count) input(s), has \(inputs.count)")
        }
        for input in inputs where input.kind != kind {
            throw ModelFormatError(.invalidGraph, at: location, "expects a \(kind.rawValue) input, got \(input)")
        }
    }

    // One case per op; splitting it would scatter the shape rules.
    // swiftlint:disable:next cyclomatic_complexity function_body_length
    private func outputShape(of layer: Layer, index: Int, inputs: [ValueShape]) throws -> ValueShape {
        let location = layerLocation(index)
        switch layer.operation {
        case .binarize:
            try expectInputs(inputs, count: 1, kind: .real, at: index)
            var shape = inputs[0]
            shape.kind = .bits
            return shape

        case .binaryConv2D(let conv):
            try expectInputs(inputs, count: 1, kind: .bits, at: index)
            guard inputs[0].channels == conv.inChannels, conv.outChannels > 0 else {
                throw ModelFormatError(.invalidGraph, at: location, "declares \(conv.inChannels) input channels, input is \(inputs[0])")
            }
            let (h, w) = try windowOutput(conv.window, input: inputs[0], at: index)
            _ = try tensor(conv.weights, role: "weights", of: index, type: .bits,
                           shape: [conv.outChannels, conv.window.kernelH, conv.window.kernelW, conv.inChannels])
            _ = try tensor(conv.multiplier, role: "multiplier", of: index, type: .float32, shape: [conv.outChannels])
            _ = try tensor(conv.bias, role: "bias", of: index, type: .float32, shape: [conv.outChannels])
            return ValueShape(kind: .real, height: h, width: w, channels: conv.outChannels)

        case .binaryDense(let dense):
            try expectInputs(inputs, count: 1, kind: .bits, at: index)
            guard inputs[0].pixels == 1, inputs[0].channels == dense.inFeatures, dense.outFeatures > 0 else {
                throw ModelFormatError(.invalidGraph, at: location, "declares \(dense.inFeatures) input features, input is \(inputs[0]) (flatten first)")
            }
            _ = try tensor(dense.weights, role: "weights", of: index, type: .bits, shape: [dense.outFeatures, dense.inFeatures])
            _ = try tensor(dense.multiplier, role: "multiplier", of: index, type: .float32, shape: [dense.outFeatures])
            _ = try tensor(dense.bias, role: "bias", of: index, type: .float32, shape: [dense.outFeatures])
            return ValueShape(kind: .real, height: 1, width: 1, channels: dense.outFeatures)

        case .conv2D(let conv):
            try expectInputs(inputs, count: 1, kind: .real, at: index)
            guard inputs[0].channels == conv.inChannels, conv.outChannels > 0 else {
                throw ModelFormatError(.invalidGraph, at: location, "declares \(conv.inChannels) input channels, input is \(inputs[0])")
            }
            let (h, w) = try windowOutput(conv.window, input: inputs[0], at: index)
            _ = try tensor(conv.weights, role: "weights", of: index, type: .float32,
                           shape: [conv.outChannels, conv.window.kernelH, conv.window.kernelW, conv.inChannels])
            if let bias = conv.bias {
                _ = try tensor(bias, role: "bias", of: index, type: .float32, shape: [conv.outChannels])
            }
            return ValueShape(kind: .real, height: h, width: w, channels: conv.outChannels)

        case .groupedConv2D(let conv):
            try expectInputs(inputs, count: 1, kind: .real, at: index)
            guard inputs[0].channels == conv.inChannels, conv.outChannels > 0, conv.groups >= 1, conv.groups <= conv.inChannels,
                  conv.inChannels % conv.groups == 0, conv.outChannels % conv.groups == 0 else {
                throw ModelFormatError(.invalidGraph, at: location, "declares \(conv.inChannels) input channels, \(conv.outChannels) output channels in \(conv.groups) groups (both must divide evenly), input is \(inputs[0])")
            }
            let (h, w) = try windowOutput(conv.window, input: inputs[0], at: index)
            _ = try tensor(conv.weights, role: "weights", of: index, type: .float32,
                           shape: [conv.outChannels, conv.window.kernelH, conv.window.kernelW, conv.inChannels / conv.groups])
            if let bias = conv.bias {
                _ = try tensor(bias, role: "bias", of: index, type: .float32, shape: [conv.outChannels])
            }
            return ValueShape(kind: .real, height: h, width: w, channels: conv.outChannels)

        case .dense(let dense):
            try expectInputs(inputs, count: 1, kind: .real, at: index)
            guard inputs[0].pixels == 1, inputs[0].channels == dense.inFeatures, dense.outFeatures > 0 else {
                throw ModelFormatError(.invalidGraph, at: location, "declares \(dense.inFeatures) input features, input is \(inputs[0]) (flatten first)")
            }
            _ = try tensor(dense.weights, role: "weights", of: index, type: .float32, shape: [dense.outFeatures, dense.inFeatures])
            if let bias = dense.bias {
                _ = try tensor(bias, role: "bias", of: index, type: .float32, shape: [dense.outFeatures])
            }
            return ValueShape(kind: .real, height: 1, width: 1, channels: dense.outFeatures)

        case .channelAffine(let affine):
            try expectInputs(inputs, count: 1, kind: .real, at: index)
            guard inputs[0].channels == affine.channels else {
                throw ModelFormatError(.invalidGraph, at: location, "declares \(affine.channels) channels, input is \(inputs[0])")
            }
            _ = try tensor(affine.multiplier, role: "multiplier", of: index, type: .float32, shape: [affine.channels])
            _ = try tensor(affine.bias, role: "bias", of: index, type: .float32, shape: [affine.channels])
            return inputs[0]

        case .add:
            try expectInputs(inputs, count: 2, kind: .real, at: index)
            guard inputs[0] == inputs[1] else {
                throw ModelFormatError(.invalidGraph, at: location, "adds \(inputs[0]) and \(inputs[1]) of different shapes")
            }
            return inputs[0]

        case .concat:
            guard inputs.count >= 1 else {
                throw ModelFormatError(.invalidGraph, at: location, "expects at least one input")
            }
            try expectInputs(inputs, count: inputs.count, kind: .real, at: index)
            guard inputs.allSatisfy({ $0.height == inputs[0].height && $0.width == inputs[0].width }) else {
                throw ModelFormatError(.invalidGraph, at: location, "concatenates inputs of different spatial sizes: \(inputs)")
            }
            return ValueShape(kind: .real, height: inputs[0].height, width: inputs[0].width,
                              channels: inputs.reduce(0) { $0 + $1.channels })

        case .pool2D(let pool):
            try expectInputs(inputs, count: 1, kind: .real, at: index)
            let (h, w) = try windowOutput(pool.window, input: inputs[0], at: index)
            return ValueShape(kind: .real, height: h, width: w, channels: inputs[0].channels)

        case .globalAveragePool:
            try expectInputs(inputs, count: 1, kind: .real, at: index)
            return ValueShape(kind: .real, height: 1, width: 1, channels: inputs[0].channels)

        case .relu, .softmax, .logSoftmax, .sign:
            try expectInputs(inputs, count: 1, kind: .real, at: index)
            return inputs[0]

        case .prelu(let prelu):
            try expectInputs(inputs, count: 1, kind: .real, at: index)
            guard inputs[0].channels == prelu.channels else {
                throw ModelFormatError(.invalidGraph, at: location, "declares \(prelu.channels) channels, input is \(inputs[0])")
            }
            _ = try tensor(prelu.slope, role: "slope", of: index, type: .float32, shape: [prelu.channels])
            return inputs[0]

        case .clip(let clip):
            try expectInputs(inputs, count: 1, kind: .real, at: index)
            guard !clip.min.isNaN, !clip.max.isNaN, clip.min <= clip.max else {
                throw ModelFormatError(.invalidGraph, at: location, "clip range [\(clip.min), \(clip.max)] is empty")
            }
            return inputs[0]

        case .flatten:
            try expectInputs(inputs, count: 1, kind: .real, at: index)
            return ValueShape(kind: .real, height: 1, width: 1, channels: inputs[0].elementCount)
        }
    }

    private func checkMetadata(outputShape: ValueShape) throws {
        let metadata = model.metadata
        guard outputShape.kind == .real else {
            throw ModelFormatError(.invalidGraph, at: "graph output", "the model output must be real-valued, it is \(outputShape)")
        }
        guard let declared = metadata.output.spatialShape,
              declared.h == outputShape.height, declared.w == outputShape.width, declared.c == outputShape.channels
        else {
            throw ModelFormatError(.invalidMetadata, at: "metadata.output", "declared shape \(metadata.output.shape) (\(metadata.output.layout.rawValue)) does not match the graph output \(outputShape)")
        }
        if !metadata.labels.isEmpty {
            guard metadata.labels.count == outputShape.channels, metadata.labels.count <= ModelLimits.maxLabels else {
                throw ModelFormatError(.invalidMetadata, at: "metadata.labels", "\(metadata.labels.count) labels for \(outputShape.channels) output classes")
            }
        }
        if let pre = metadata.preprocessing {
            let channels = model.metadata.input.spatialShape?.c ?? 0
            for (name, values) in [("mean", pre.mean), ("std", pre.std)] where values.count != 1 && values.count != channels {
                throw ModelFormatError(.invalidMetadata, at: "metadata.preprocessing.\(name)", "\(values.count) values for \(channels) input channels (give 1 or \(channels))")
            }
            guard pre.std.allSatisfy({ $0 != 0 && $0.isFinite }), pre.mean.allSatisfy(\.isFinite), pre.scale.isFinite else {
                throw ModelFormatError(.invalidMetadata, at: "metadata.preprocessing", "mean, std and scale must be finite and std non-zero")
            }
        }
    }

    private func checkSelfTests() throws {
        guard model.selfTests.count <= ModelLimits.maxSelfTests else {
            throw ModelFormatError(.tooLarge, at: "self tests", "\(model.selfTests.count) vectors exceed the limit of \(ModelLimits.maxSelfTests)")
        }
        for (index, vector) in model.selfTests.enumerated() {
            let location = "self test \(index)"
            for (role, id, expected) in [("input", vector.input, model.metadata.input.elementCount),
                                         ("expected output", vector.expected, model.metadata.output.elementCount)] {
                guard model.tensors.indices.contains(id), model.tensors[id].dataType == .float32 else {
                    throw ModelFormatError(.invalidSelfTest, at: location, "\(role) tensor \(id) is missing or not float32")
                }
                guard model.tensors[id].elementCount == expected else {
                    throw ModelFormatError(.invalidSelfTest, at: location, "\(role) tensor \(id) has \(model.tensors[id].elementCount) elements, expected \(expected)")
                }
            }
            guard vector.tolerance.isFinite, vector.tolerance >= 0 else {
                throw ModelFormatError(.invalidSelfTest, at: location, "tolerance \(vector.tolerance) must be finite and >= 0")
            }
        }
    }
}
