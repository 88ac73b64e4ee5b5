import BitModel

extension Conversion {
    /// Flatten, Reshape, Squeeze and Unsqueeze of an activation: the new ONNX shape must be
    /// the same tensor (a no-op), a flatten to [1, N], or a 1x1-spatial <-> vector change.
    mutating func convertReshape(_ node: ONNXNode) throws -> String {
        let source = try input(0, of: node)
        guard let a = source.activation, !isPadded(source) else {
            throw ImportError.node(node, "cannot reshape \(source.kindName)")
        }
        let dims = a.onnxDims
        let target: [Int]
        switch node.opType {
        case "Flatten":
            var axis = node.int("axis", default: 1)
            if axis < 0 { axis += dims.count }
            guard axis == 1 else { throw ImportError.node(node, "only axis=1 is supported, got \(node.int("axis", default: 1))") }
            target = [1, dims.dropFirst().reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }]
        case "Reshape":
            let shape = try constant(1, of: node, role: "shape").integers("shape", of: node)
            target = try ShapeArithmetic.reshape(dims, to: shape, allowZero: node.int("allowzero", default: 0) != 0, node: node)
        case "Squeeze":
            let axes = graph.opset >= 13 ? try optionalConstant(1, of: node, role: "axes")?.integers("axes", of: node) : node.ints("axes")
            target = try ShapeArithmetic.squeeze(dims, axes: axes, node: node)
        default:
            let axes = graph.opset >= 13 ? try constant(1, of: node, role: "axes").integers("axes", of: node) : (node.ints("axes") ?? [])
            target = try ShapeArithmetic.unsqueeze(dims, axes: axes, node: node)
        }
        if target == dims {
            try bind(node, source)
            return "dropped identity (\(node.opType) to the same shape \(dims))"
        }
        let total = a.dims.reduce(1, *)
        // A spatial tensor with more than one pixel flattens to [1, N]: a layer, moved before
        // a binarization (packed bits of an NHWC tensor cannot be flattened without repacking).
        if a.isSpatial, a.dims[2] * a.dims[3] > 1 {
            guard target == [1, total] else {
                throw ImportError.node(node, "only reshapes to [1, N] (a flatten) are supported for \(dims), got \(target)")
            }
            let flat = flattened(a, name: node.name)
            switch source {
            case .sign: try bind(node, .sign(flat))
            case .real: try bind(node, .real(flat))
            default: throw ImportError.node(node, "cannot flatten \(source.kindName)")
            }
            return a.layout == .nhwc ? "flatten (NHWC order, the engine's own)" : "flatten" + (isBinarized(source) ? " (moved before the binarization)" : "")
        }
        guard a.flattenedFrom == nil || target.count == 2 else {
            throw ImportError.node(node, "cannot reshape a flattened spatial tensor to \(target)")
        }
        // One pixel (or a vector): only the channel count must survive.
        let reshaped: Activation
        switch target.count {
        case 2 where target == [1, a.channels]:
            reshaped = Activation(value: a.value, dims: [1, a.channels], flattenedFrom: a.flattenedFrom)
        case 4 where target == [1, a.channels, 1, 1] && a.flattenedFrom == nil:
            reshaped = a.with(dims: [1, a.channels, 1, 1], layout: .nchw)
        case 4 where target == [1, 1, 1, a.channels] && a.flattenedFrom == nil:
            reshaped = a.with(dims: [1, a.channels, 1, 1], layout: .nhwc)
        default:
            throw ImportError.node(node, "reshaping \(dims) to \(target) is not supported (only flattens and [1, C] <-> [1, C, 1, 1])")
        }
        try bind(node, source.mapActivation { _ in reshaped })
        return "dropped identity (\(node.opType) \(dims) -> \(target) moves no data)"
    }

    func isPadded(_ symbol: Symbol) -> Bool {
        if case .padded = symbol { return true }
        return false
    }

    func isBinarized(_ symbol: Symbol) -> Bool {
        if case .sign = symbol { return true }
        return false
    }

    mutating func flattened(_ a: Activation, name: String) -> Activation {
        guard a.isSpatial else { return a }
        let (c, h, w) = (a.dims[1], a.dims[2], a.dims[3])
        let value = builder.append(.flatten, inputs: [a.value], name: name)
        // ONNX flattens its view: NHWC order is the engine's, NCHW needs a permutation.
        return Activation(value: value, dims: [1, c * h * w], flattenedFrom: h * w > 1 && a.layout == .nchw ? (c, h, w) : nil)
    }

    /// A Transpose changes how ONNX sees the tensor: NCHW <-> NHWC, no data moves.
    mutating func convertTranspose(_ node: ONNXNode) throws -> String {
        let source = try input(0, of: node)
        guard let a = source.activation else { throw ImportError.node(node, "cannot transpose \(source.kindName)") }
        let rank = a.onnxDims.count
        let perm = node.ints("perm") ?? Array((0..<rank).reversed())
        guard perm.count == rank, Set(perm) == Set(0..<rank) else {
            throw ImportError.node(node, "perm \(perm) is not a permutation of \(rank) axes")
        }
        if perm == Array(0..<rank) {
            try bind(node, source)
            return "dropped identity (identity permutation)"
        }
        guard a.isSpatial else {
            throw ImportError.node(node, "transposing the vector \(a.onnxDims) with perm \(perm) is not supported")
        }
        let view = a.layout.canonicalAxes
        guard let layout = ViewLayout(canonicalAxes: perm.map { view[$0] }) else {
            throw ImportError.node(node, "perm \(perm) of a \(a.layout.rawValue) tensor \(a.onnxDims) is not a layout change between NCHW and NHWC")
        }
        try bind(node, try source.mapActivation { inner in
            guard inner.isSpatial else { throw ImportError.node(node, "cannot transpose \(inner.onnxDims)") }
            return inner.with(dims: inner.dims, layout: layout)
        })
        return "dropped layout transpose (\(a.layout.rawValue) -> \(layout.rawValue) view; the engine keeps NHWC, no data moves)"
    }

    /// ReduceMean over exactly the spatial axes is global average pooling.
    mutating func convertReduceMean(_ node: ONNXNode) throws -> String {
        let a = try activation(0, of: node)
        guard a.isSpatial else { throw ImportError.node(node, "only ReduceMean over the spatial axes of a 4-D tensor is supported, got \(a.onnxDims)") }
        let axes: [Int]?
        if graph.opset >= 18 {
            axes = try optionalConstant(1, of: node, role: "axes")?.integers("axes", of: node)
        } else {
            axes = node.ints("axes")
        }
        let spatialAxes: Set<Int> = a.layout == .nchw ? [2, 3] : [1, 2]
        guard let axes, Set(try ShapeArithmetic.normalizedAxes(axes, rank: 4, node: node)) == spatialAxes, axes.count == 2 else {
            throw ImportError.node(node, "only ReduceMean over the spatial axes \(spatialAxes.sorted()) of \(a.onnxDims) (global average pooling) is supported")
        }
        let value = builder.append(.globalAveragePool, inputs: [a.value], name: node.name)
        if node.int("keepdims", default: 1) != 0 {
            try bind(node, .real(Activation(value: value, dims: [1, a.channels, 1, 1], layout: a.layout)))
        } else {
            try bind(node, .real(Activation(value: value, dims: [1, a.channels])))
        }
        return "float op: global average pool (ReduceMean over the spatial axes)"
    }
}
