/// ONNX's shape rules for Reshape, Squeeze and Unsqueeze, shared by the constant folder
/// and the activation path. Every product is overflow-checked: the numbers come from a file.
enum ShapeArithmetic {
    static func reshape(_ dims: [Int], to target: [Int], allowZero: Bool = false, node: ONNXNode) throws -> [Int] {
        var total = 1
        for dim in dims {
            let (product, overflow) = total.multipliedReportingOverflow(by: dim)
            guard !overflow else { throw ImportError.node(node, "shape \(dims) is too large") }
            total = product
        }
        guard target.count <= 8, target.filter({ $0 == -1 }).count <= 1,
              target.enumerated().allSatisfy({ $1 >= -1 && ($1 != 0 || allowZero || $0 < dims.count) }) else {
            throw ImportError.node(node, "shape \(target) is not a valid reshape of \(dims)")
        }
        let resolved = target.enumerated().map { $1 == 0 && !allowZero ? dims[$0] : $1 }
        // At most 8 factors of at most 2^31 each: checked, as the product can overflow.
        var known = 1
        for factor in resolved where factor != -1 {
            let (product, overflow) = known.multipliedReportingOverflow(by: factor)
            guard !overflow else { throw ImportError.node(node, "shape \(target) is too large") }
            known = product
        }
        let final = resolved.map { $0 == -1 ? (known == 0 ? 0 : total / known) : $0 }
        guard final.reduce(1, { $0.multipliedReportingOverflow(by: $1).partialValue }) == total else {
            throw ImportError.node(node, "shape \(target) is not a valid reshape of \(dims)")
        }
        return final
    }

    static func normalizedAxes(_ axes: [Int], rank: Int, node: ONNXNode) throws -> [Int] {
        try axes.map { axis in
            let a = axis < 0 ? axis + rank : axis
            guard (0..<rank).contains(a) else { throw ImportError.node(node, "axis \(axis) is out of range for rank \(rank)") }
            return a
        }
    }

    static func squeeze(_ dims: [Int], axes: [Int]?, node: ONNXNode) throws -> [Int] {
        guard let axes, !axes.isEmpty else { return dims.filter { $0 != 1 } }
        let remove = Set(try normalizedAxes(axes, rank: dims.count, node: node))
        for axis in remove where dims[axis] != 1 {
            throw ImportError.node(node, "cannot squeeze axis \(axis) of \(dims): its size is not 1")
        }
        return dims.enumerated().filter { !remove.contains($0.offset) }.map(\.element)
    }

    static func unsqueeze(_ dims: [Int], axes: [Int], node: ONNXNode) throws -> [Int] {
        let rank = dims.count + axes.count
        guard rank <= 8 else { throw ImportError.node(node, "unsqueezing \(dims) by \(axes) gives more than 8 dimensions") }
        let insert = Set(try normalizedAxes(axes, rank: rank, node: node))
        guard insert.count == axes.count else { throw ImportError.node(node, "axes \(axes) repeat") }
        var result: [Int] = []
        var source = dims.makeIterator()
        for axis in 0..<rank { result.append(insert.contains(axis) ? 1 : source.next()!) }
        return result
    }
}
