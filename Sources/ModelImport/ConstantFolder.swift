import Foundation

/// A small float reference evaluator for ONNX nodes whose inputs are all constants, so that
/// a weight computed in the graph (`alpha * sign(w)`, `w.view(shape)`, the STE weight
/// `a - b + b`, BatchNorm folded by hand) or a shape computed from `Shape(x)` is just a
/// tensor by the time the converter matches layers. Values are doubles; float results are
/// rounded to float32 after every op, as ONNX Runtime computes them.
///
/// `Sign(0)` is 0 here, as in ONNX: a weight that is exactly 0 stays 0 (and the layer then
/// is not binary). Every result is bounded in size before it is allocated.
enum ConstantFolder {
    /// Largest tensor a single fold may produce (Expand, ConstantOfShape, Range, Tile).
    static let maxElements = 1 << 24

    static let foldableOperators: Set<String> = [
        "Identity", "Dropout", "Cast", "CastLike", "Abs", "Neg", "Sign", "Sqrt", "Reciprocal", "Exp", "Log", "Relu",
        "Floor", "Ceil", "Round", "Not", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "Equal", "Less",
        "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Where", "Clip", "ReduceMean", "ReduceSum",
        "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "Transpose", "Reshape", "Flatten", "Squeeze",
        "Unsqueeze", "Concat", "Gather", "Slice", "Expand", "ConstantOfShape", "Shape", "Size", "Range", "Tile",
        "BatchNormalization", "HardTanh",
    ]

    /// The result of `node` on constant `inputs` (nil entries are omitted optional
    /// inputs), or nil when the operator is not one this evaluator folds.
    static func fold(_ node: ONNXNode, _ inputs: [ONNXConstant?], opset: Int) throws -> ONNXConstant? {
        guard foldableOperators.contains(node.opType) else { return nil }
        func input(_ index: Int) throws -> ONNXConstant {
            guard index < inputs.count, let value = inputs[index] else {
                throw ImportError.node(node, "expects input \(index)")
            }
            return value
        }
        func optional(_ index: Int) -> ONNXConstant? { index < inputs.count ? inputs[index] : nil }

        switch node.opType {
        case "Identity", "Dropout":
            return try input(0)
        case "Cast":
            return try cast(try input(0), to: node.int("to", default: 1), node: node)
        case "CastLike":
            var result = try input(0)
            result = try cast(result, to: try input(1).type == .float ? 1 : (try input(1).type == .bool ? 9 : 7), node: node)
            return result
        case "Abs", "Neg", "Sign", "Sqrt", "Reciprocal", "Exp", "Log", "Relu", "Floor", "Ceil", "Round", "Not":
            return unary(node.opType, try input(0))
        case "Add", "Sub", "Mul", "Div", "Pow", "Mod":
            return try arithmetic(node.opType, try input(0), try input(1), node: node)
        case "Max", "Min":
            var result = try input(0)
            for index in 1..<max(inputs.count, 1) {
                result = try arithmetic(node.opType, result, try input(index), node: node)
            }
            return result
        case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor":
            let (dims, values) = try Broadcast.map([try input(0), try input(1)], node: node) { v in
                let (a, b) = (v[0], v[1])
                let truth: Bool
                switch node.opType {
                case "Equal": truth = a == b
                case "Less": truth = a < b
                case "Greater": truth = a > b
                case "LessOrEqual": truth = a <= b
                case "GreaterOrEqual": truth = a >= b
                case "And": truth = a != 0 && b != 0
                case "Or": truth = a != 0 || b != 0
                default: truth = (a != 0) != (b != 0)
                }
                return truth ? 1 : 0
            }
            return ONNXConstant(dims: dims, values: values, type: .bool)
        case "Where":
            let x = try input(1)
            let (dims, values) = try Broadcast.map([try input(0), x, try input(2)], node: node) { v in v[0] != 0 ? v[1] : v[2] }
            return ONNXConstant(dims: dims, values: values, type: x.type)
        case "Clip", "HardTanh":
            var low = -Double.infinity, high = Double.infinity
            if opset < 11 || node.opType == "HardTanh" {
                low = Double(node.float("min", default: -.infinity))
                high = Double(node.float("max", default: .infinity))
            } else {
                if let c = optional(1) { low = c.values.first ?? low }
                if let c = optional(2) { high = c.values.first ?? high }
            }
            var result = try input(0)
            result.values = result.values.map { $0.isNaN ? $0 : Swift.min(Swift.max($0, low), high) }
            return result
        case "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2":
            return try reduce(node, try input(0), axesInput: optional(1), opset: opset)
        case "Transpose":
            let x = try input(0)
            let perm = node.ints("perm") ?? Array((0..<x.dims.count).reversed())
            return try transpose(x, perm: perm, node: node)
        case "Reshape":
            let x = try input(0)
            let target = try input(1).integers("shape", of: node)
            var result = x
            result.dims = try ShapeArithmetic.reshape(x.dims, to: target, allowZero: node.int("allowzero", default: 0) != 0, node: node)
            return result
        case "Flatten":
            let x = try input(0)
            let rank = x.dims.count
            var axis = node.int("axis", default: 1)
            if axis < 0 { axis += rank }
            guard (0...rank).contains(axis) else { throw ImportError.node(node, "axis \(node.int("axis", default: 1)) is out of range for rank \(rank)") }
            var result = x
            result.dims = [x.dims[..<axis].reduce(1, *), x.dims[axis...].reduce(1, *)]
            return result
        case "Squeeze", "Unsqueeze":
            let x = try input(0)
            let axes = opset >= 13 ? try optional(1)?.integers("axes", of: node) : node.ints("axes")
            var result = x
            result.dims = node.opType == "Squeeze"
                ? try ShapeArithmetic.squeeze(x.dims, axes: axes, node: node)
                : try ShapeArithmetic.unsqueeze(x.dims, axes: axes ?? [], node: node)
            return result
        case "Concat":
            return try concat(inputs.compactMap { $0 }, axis: node.int("axis", default: 0), node: node)
        case "Gather":
            return try gather(try input(0), indices: try input(1), axis: node.int("axis", default: 0), node: node)
        case "Slice":
            return try slice(node, try input(0), inputs: inputs, opset: opset)
        case "Expand":
            let x = try input(0)
            let shape = try input(1).integers("shape", of: node, limit: maxElements)
            let (dims, values) = try Broadcast.map([x], node: node, allowGrowth: maxElements, alsoTo: shape) { $0[0] }
            return ONNXConstant(dims: dims, values: values, type: x.type)
        case "ConstantOfShape":
            let shape = try input(0).integers("shape", of: node, limit: maxElements)
            var value = 0.0, type = ONNXConstant.ElementType.float
            if let attribute = node.attributes["value"], attribute.hasT {
                let tensor = try ONNXConstant(attribute.t, location: "node '\(node.name)' (ConstantOfShape) value")
                value = tensor.values.first ?? 0
                type = tensor.type
            }
            var result = try filled(shape, value: value, node: node)
            result.type = type
            return result
        case "Shape":
            let x = try input(0)
            return shapeOf(x.dims, node: node)
        case "Size":
            return ONNXConstant(dims: [], values: [Double(try input(0).count)], type: .integer)
        case "Range":
            let start = try input(0).values.first ?? 0, limit = try input(1).values.first ?? 0, delta = try input(2).values.first ?? 1
            guard delta != 0, start.isFinite, limit.isFinite, delta.isFinite else { throw ImportError.node(node, "Range with delta \(delta) from \(start) to \(limit)") }
            let count = max(0, Int((((limit - start) / delta).rounded(.up)).clamped(to: 0...Double(maxElements + 1))))
            guard count <= maxElements else { throw ImportError.node(node, "Range of \(count) values is too large") }
            return ONNXConstant(dims: [count], values: (0..<count).map { start + Double($0) * delta }, type: try input(0).type)
        case "Tile":
            let x = try input(0)
            let repeats = try input(1).integers("repeats", of: node, limit: maxElements)
            guard repeats.count == x.dims.count, repeats.allSatisfy({ $0 >= 0 }) else {
                throw ImportError.node(node, "repeats \(repeats) do not match rank \(x.dims.count)")
            }
            let dims = zip(x.dims, repeats).map { $0 * $1 }
            let count = try Broadcast.count(dims, limit: maxElements, node: node) { "Tile to \(dims) is too large" }
            let outStrides = ONNXConstant.strides(dims), inStrides = ONNXConstant.strides(x.dims)
            var values = [Double](repeating: 0, count: count)
            for flat in 0..<count {
                var rest = flat, source = 0
                for axis in dims.indices {
                    let i = rest / outStrides[axis]
                    rest %= outStrides[axis]
                    source += (i % x.dims[axis]) * inStrides[axis]
                }
                values[flat] = x.values[source]
            }
            return ONNXConstant(dims: dims, values: values, type: x.type)
        case "BatchNormalization":
            let x = try input(0)
            let scale = try input(1), bias = try input(2), mean = try input(3), variance = try input(4)
            guard x.dims.count >= 2 else { throw ImportError.node(node, "BatchNormalization of a rank-\(x.dims.count) constant") }
            let c = x.dims[1]
            guard [scale, bias, mean, variance].allSatisfy({ $0.count == c }) else { throw ImportError.node(node, "parameters do not have \(c) values") }
            let epsilon = Double(node.float("epsilon", default: 1e-5))
            let inner = x.dims.dropFirst(2).reduce(1, *)
            var result = x
            for i in x.values.indices {
                let channel = (i / inner) % c
                let m = scale.values[channel] / (variance.values[channel] + epsilon).squareRoot()
                result.values[i] = Double(Float((x.values[i] - mean.values[channel]) * m + bias.values[channel]))
            }
            return result
        default:
            return nil
        }
    }

    static func shapeOf(_ dims: [Int], node: ONNXNode) -> ONNXConstant {
        let rank = dims.count
        func clampIndex(_ value: Int) -> Int { Swift.min(Swift.max(value < 0 ? value + rank : value, 0), rank) }
        let start = clampIndex(node.int("start", default: 0))
        let end = node.attributes["end"] == nil ? rank : clampIndex(node.int("end", default: rank))
        let selected = start < end ? Array(dims[start..<end]) : []
        return ONNXConstant(dims: [selected.count], values: selected.map(Double.init), type: .integer)
    }

    static func filled(_ shape: [Int], value: Double, node: ONNXNode) throws -> ONNXConstant {
        let count = try Broadcast.count(shape, limit: maxElements, node: node) { "a constant of shape \(shape) is too large" }
        return ONNXConstant(dims: shape, values: [Double](repeating: value, count: count))
    }

    // MARK: - Elementwise

    static func roundToType(_ values: [Double], _ type: ONNXConstant.ElementType) -> [Double] {
        type == .float ? values.map { Double(Float($0)) } : values
    }

    static func cast(_ x: ONNXConstant, to code: Int, node: ONNXNode) throws -> ONNXConstant {
        var result = x
        switch Onnx_TensorProto.DataType(rawValue: code) {
        case .float?, .double?, .float16?, .bfloat16?:
            result.type = .float
            result.values = roundToType(x.values, .float)
        case .int64?, .int32?, .int16?, .int8?, .uint8?, .uint16?, .uint32?, .uint64?:
            result.type = .integer
            result.values = x.values.map { $0.isFinite ? $0.rounded(.towardZero) : 0 }
        case .bool?:
            result.type = .bool
            result.values = x.values.map { $0 != 0 ? 1 : 0 }
        default:
            throw ImportError.node(node, "Cast to data type \(code) is not supported")
        }
        return result
    }

    static func unary(_ op: String, _ x: ONNXConstant) -> ONNXConstant {
        var result = x
        let f: (Double) -> Double
        switch op {
        case "Abs": f = { abs($0) }
        case "Neg": f = { -$0 }
        case "Sign": f = { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }
        case "Sqrt": f = { $0.squareRoot() }
        case "Reciprocal": f = { 1 / $0 }
        case "Exp": f = { Foundation.exp($0) }
        case "Log": f = { Foundation.log($0) }
        case "Relu": f = { Swift.max($0, 0) }
        case "Floor": f = { $0.rounded(.down) }
        case "Ceil": f = { $0.rounded(.up) }
        case "Round": f = { $0.rounded(.toNearestOrEven) }
        default:
            result.type = .bool
            f = { $0 == 0 ? 1 : 0 }
        }
        result.values = roundToType(x.values.map(f), result.type)
        return result
    }

    static func arithmetic(_ op: String, _ x: ONNXConstant, _ y: ONNXConstant, node: ONNXNode) throws -> ONNXConstant {
        let type: ONNXConstant.ElementType = x.type == .float || y.type == .float ? .float : .integer
        let integer = type == .integer
        let (dims, values) = try Broadcast.map([x, y], node: node) { v in
            let (a, b) = (v[0], v[1])
            switch op {
            case "Add": return a + b
            case "Sub": return a - b
            case "Mul": return a * b
            case "Div": return integer ? (b == 0 ? 0 : (a / b).rounded(.towardZero)) : a / b
            case "Pow": return Foundation.pow(a, b)
            case "Max": return Swift.max(a, b)
            case "Min": return Swift.min(a, b)
            default:
                guard b != 0 else { return integer ? 0 : .nan }
                let r = integer ? a - (a / b).rounded(.down) * b : Foundation.fmod(a, b)
                return r
            }
        }
        return ONNXConstant(dims: dims, values: roundToType(values, type), type: type)
    }

    // MARK: - Reductions and data movement

    static func reduce(_ node: ONNXNode, _ x: ONNXConstant, axesInput: ONNXConstant?, opset: Int) throws -> ONNXConstant {
        let rank = x.dims.count
        let axesFromInput = node.opType == "ReduceSum" ? opset >= 13 : opset >= 18
        var axes = axesFromInput ? try axesInput?.integers("axes", of: node) : node.ints("axes")
        if axes?.isEmpty ?? true {
            axes = node.int("noop_with_empty_axes", default: 0) != 0 ? [] : Array(0..<rank)
            if axes!.isEmpty { return x }
        }
        let normalized = try axes!.map { axis -> Int in
            let a = axis < 0 ? axis + rank : axis
            guard (0..<rank).contains(a) else { throw ImportError.node(node, "axis \(axis) is out of range for rank \(rank)") }
            return a
        }
        let reduced = Set(normalized)
        let keep = node.int("keepdims", default: 1) != 0
        let outDims = x.dims.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
        let outCount = outDims.reduce(1, *)
        let groupSize = outCount == 0 ? 0 : x.count / Swift.max(outCount, 1)
        var accumulators = [[Double]](repeating: [], count: outCount)
        for index in accumulators.indices { accumulators[index].reserveCapacity(groupSize) }
        let inStrides = ONNXConstant.strides(x.dims), outStrides = ONNXConstant.strides(outDims)
        for flat in 0..<x.count {
            var rest = flat, target = 0
            for axis in 0..<rank {
                let i = rest / inStrides[axis]
                rest %= inStrides[axis]
                if !reduced.contains(axis) { target += i * outStrides[axis] }
            }
            accumulators[target].append(x.values[flat])
        }
        let values = accumulators.map { group -> Double in
            switch node.opType {
            case "ReduceMean": return group.isEmpty ? .nan : group.reduce(0, +) / Double(group.count)
            case "ReduceSum": return group.reduce(0, +)
            case "ReduceMax": return group.max() ?? -.infinity
            case "ReduceMin": return group.min() ?? .infinity
            case "ReduceProd": return group.reduce(1, *)
            case "ReduceL1": return group.reduce(0) { $0 + abs($1) }
            default: return group.reduce(0) { $0 + $1 * $1 }.squareRoot()
            }
        }
        let dims = keep ? outDims : x.dims.enumerated().filter { !reduced.contains($0.offset) }.map(\.element)
        return ONNXConstant(dims: dims, values: roundToType(values, x.type), type: x.type)
    }

    static func transpose(_ x: ONNXConstant, perm: [Int], node: ONNXNode) throws -> ONNXConstant {
        let rank = x.dims.count
        guard perm.count == rank, Set(perm) == Set(0..<rank) else {
            throw ImportError.node(node, "perm \(perm) is not a permutation of \(rank) axes")
        }
        let outDims = perm.map { x.dims[$0] }
        let inStrides = ONNXConstant.strides(x.dims), outStrides = ONNXConstant.strides(outDims)
        var values = [Double](repeating: 0, count: x.count)
        for flat in 0..<x.count {
            var rest = flat, source = 0
            for axis in 0..<rank {
                let i = rest / outStrides[axis]
                rest %= outStrides[axis]
                source += i * inStrides[perm[axis]]
            }
            values[flat] = x.values[source]
        }
        return ONNXConstant(dims: outDims, values: values, type: x.type)
    }

    static func concat(_ parts: [ONNXConstant], axis rawAxis: Int, node: ONNXNode) throws -> ONNXConstant {
        guard let first = parts.first else { throw ImportError.node(node, "has no inputs") }
        let rank = first.dims.count
        let axis = rawAxis < 0 ? rawAxis + rank : rawAxis
        guard (0..<Swift.max(rank, 1)).contains(axis), parts.allSatisfy({ $0.dims.count == rank }) else {
            throw ImportError.node(node, "cannot concatenate shapes \(parts.map(\.dims)) along axis \(rawAxis)")
        }
        if rank == 0 { return ONNXConstant(dims: [parts.count], values: parts.flatMap(\.values), type: first.type) }
        for part in parts {
            for d in 0..<rank where d != axis && part.dims[d] != first.dims[d] {
                throw ImportError.node(node, "cannot concatenate shapes \(parts.map(\.dims)) along axis \(rawAxis)")
            }
        }
        var dims = first.dims
        dims[axis] = parts.reduce(0) { $0 + $1.dims[axis] }
        let outer = first.dims[..<axis].reduce(1, *)
        var values: [Double] = []
        values.reserveCapacity(parts.reduce(0) { $0 + $1.count })
        for o in 0..<outer {
            for part in parts {
                let block = part.dims[axis...].reduce(1, *)
                values.append(contentsOf: part.values[(o * block)..<((o + 1) * block)])
            }
        }
        return ONNXConstant(dims: dims, values: values, type: parts.contains { $0.type == .float } ? .float : first.type)
    }

    static func gather(_ x: ONNXConstant, indices: ONNXConstant, axis rawAxis: Int, node: ONNXNode) throws -> ONNXConstant {
        let rank = x.dims.count
        let axis = rawAxis < 0 ? rawAxis + rank : rawAxis
        guard (0..<rank).contains(axis) else { throw ImportError.node(node, "axis \(rawAxis) is out of range for rank \(rank)") }
        let size = x.dims[axis]
        let picked = try indices.integers("index", of: node).map { index -> Int in
            let i = index < 0 ? index + size : index
            guard (0..<size).contains(i) else { throw ImportError.node(node, "index \(index) is out of range for a dimension of \(size)") }
            return i
        }
        let outer = x.dims[..<axis].reduce(1, *), inner = x.dims[(axis + 1)...].reduce(1, *)
        let dims = Array(x.dims[..<axis]) + indices.dims + Array(x.dims[(axis + 1)...])
        _ = try Broadcast.count(dims, limit: maxElements, node: node) { "Gather to \(dims) is too large" }
        var values: [Double] = []
        for o in 0..<outer {
            for i in picked {
                let start = (o * size + i) * inner
                values.append(contentsOf: x.values[start..<(start + inner)])
            }
        }
        return ONNXConstant(dims: dims, values: values, type: x.type)
    }

    static func slice(_ node: ONNXNode, _ x: ONNXConstant, inputs: [ONNXConstant?], opset: Int) throws -> ONNXConstant {
        let rank = x.dims.count
        let starts: [Int], ends: [Int]
        var axes: [Int]?, steps: [Int]?
        let limit = Int(Int32.max) * 4
        if opset < 10 {
            starts = node.ints("starts") ?? []
            ends = node.ints("ends") ?? []
            axes = node.ints("axes")
        } else {
            func ints(_ index: Int, _ role: String) throws -> [Int]? {
                guard index < inputs.count, let c = inputs[index] else { return nil }
                return try c.values.map { v in
                    guard !v.isNaN else { throw ImportError.node(node, "\(role) value \(v) is not an integer") }
                    return Int(v.clamped(to: -Double(limit)...Double(limit)))
                }
            }
            starts = try ints(1, "starts") ?? []
            ends = try ints(2, "ends") ?? []
            axes = try ints(3, "axes")
            steps = try ints(4, "steps")
        }
        let sliceAxes = axes ?? Array(0..<starts.count)
        guard starts.count == ends.count, sliceAxes.count == starts.count, (steps?.count ?? starts.count) == starts.count else {
            throw ImportError.node(node, "starts, ends, axes and steps differ in length")
        }
        var ranges = x.dims.map { (start: 0, step: 1, count: $0) }
        for (k, rawAxis) in sliceAxes.enumerated() {
            let axis = rawAxis < 0 ? rawAxis + rank : rawAxis
            guard (0..<rank).contains(axis) else { throw ImportError.node(node, "axis \(rawAxis) is out of range for rank \(rank)") }
            let size = x.dims[axis], step = steps?[k] ?? 1
            guard step != 0 else { throw ImportError.node(node, "step 0") }
            var start = starts[k] < 0 ? starts[k] + size : starts[k]
            var end = ends[k] < 0 ? ends[k] + size : ends[k]
            if step > 0 {
                start = Swift.min(Swift.max(start, 0), size)
                end = Swift.min(Swift.max(end, 0), size)
                ranges[axis] = (start, step, Swift.max(0, (end - start + step - 1) / step))
            } else {
                start = Swift.min(Swift.max(start, -1), size - 1)
                end = Swift.min(Swift.max(end, -1), size - 1)
                ranges[axis] = (start, step, Swift.max(0, (start - end - step - 1) / -step))
            }
        }
        let dims = ranges.map(\.count)
        let count = dims.reduce(1, *)
        let inStrides = ONNXConstant.strides(x.dims), outStrides = ONNXConstant.strides(dims)
        var values = [Double](repeating: 0, count: count)
        for flat in 0..<count {
            var rest = flat, source = 0
            for axis in 0..<rank {
                let i = rest / outStrides[axis]
                rest %= outStrides[axis]
                source += (ranges[axis].start + i * ranges[axis].step) * inStrides[axis]
            }
            values[flat] = x.values[source]
        }
        return ONNXConstant(dims: dims, values: values, type: x.type)
    }
}

extension Comparable {
    func clamped(to range: ClosedRange<Self>) -> Self { Swift.min(Swift.max(self, range.lowerBound), range.upperBound) }
}
