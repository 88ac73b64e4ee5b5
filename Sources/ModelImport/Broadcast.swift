/// NumPy-style (multidirectional) broadcasting of constants, for folding constant
/// subgraphs such as `Mul(W_pm1, alpha)` (XNOR-Net scaled weights) or `Where(mask, a, b)`.
enum Broadcast {
    /// Elements a folded constant may have beyond the larger operand's count.
    static let maxGrowth = 1 << 20

    /// The broadcast shape of `shapes`, or an error naming the node.
    static func shape(_ shapes: [[Int]], node: ONNXNode) throws -> [Int] {
        let rank = shapes.map(\.count).max() ?? 0
        var dims = [Int](repeating: 1, count: rank)
        for shape in shapes {
            let padded = [Int](repeating: 1, count: rank - shape.count) + shape
            for axis in 0..<rank where padded[axis] != 1 {
                guard dims[axis] == 1 || dims[axis] == padded[axis] else {
                    throw ImportError.node(node, "shapes \(shapes.map { "\($0)" }.joined(separator: " and ")) do not broadcast")
                }
                dims[axis] = padded[axis]
            }
        }
        return dims
    }

    /// Elements of `dims`, refused when larger than `limit` (checked, as products can overflow).
    static func count(_ dims: [Int], limit: Int, node: ONNXNode, what: () -> String) throws -> Int {
        var count = 1
        for dim in dims {
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard dim >= 0, !overflow, product <= limit else { throw ImportError.node(node, what()) }
            count = product
        }
        return count
    }

    /// `f` applied elementwise over the broadcast of `operands`. Unless `allowGrowth`, the
    /// result may not be larger than its largest operand (beyond a small allowance): an
    /// outer-product broadcast of tiny constants could otherwise ask for gigabytes.
    /// `alsoTo` is a further shape to broadcast to (Expand's target).
    static func map(_ operands: [ONNXConstant], node: ONNXNode, allowGrowth: Int? = nil, alsoTo extra: [Int]? = nil,
                    _ f: ([Double]) -> Double) throws -> (dims: [Int], values: [Double]) {
        let dims = try shape(operands.map(\.dims) + (extra.map { [$0] } ?? []), node: node)
        let largest = operands.map(\.count).max() ?? 1
        let limit = allowGrowth ?? max(largest, maxGrowth)
        let count = try Self.count(dims, limit: limit, node: node) {
            "folding constants of shapes \(operands.map { "\($0.dims)" }.joined(separator: " and ")) would build a \(dims) tensor, larger than either; not supported"
        }
        let rank = dims.count
        let strides: [[Int]] = operands.map { operand in
            let padded = [Int](repeating: 1, count: rank - operand.dims.count) + operand.dims
            var s = [Int](repeating: 0, count: rank)
            var step = 1
            for axis in stride(from: rank - 1, through: 0, by: -1) {
                s[axis] = padded[axis] == 1 ? 0 : step
                step *= padded[axis]
            }
            return s
        }
        var values = [Double](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: rank)
        var offsets = [Int](repeating: 0, count: operands.count)
        var arguments = [Double](repeating: 0, count: operands.count)
        for flat in 0..<count {
            for k in operands.indices { arguments[k] = operands[k].values[offsets[k]] }
            values[flat] = f(arguments)
            var axis = rank - 1
            while axis >= 0 {
                index[axis] += 1
                for k in operands.indices { offsets[k] += strides[k][axis] }
                if index[axis] < dims[axis] { break }
                for k in operands.indices { offsets[k] -= strides[k][axis] * dims[axis] }
                index[axis] = 0
                axis -= 1
            }
        }
        return (dims, values)
    }

    /// Add, Sub, Mul, Div of two constants (kept for callers that fold one of those).
    static func apply(_ op: String, _ x: ONNXConstant, _ y: ONNXConstant, node: ONNXNode) throws -> ONNXConstant {
        let integer = x.type == .integer && y.type == .integer
        let (dims, values) = try map([x, y], node: node) { v in
            switch op {
            case "Mul": return v[0] * v[1]
            case "Add": return v[0] + v[1]
            case "Sub": return v[0] - v[1]
            default: return integer ? (v[1] == 0 ? 0 : (v[0] / v[1]).rounded(.towardZero)) : v[0] / v[1]
            }
        }
        return ONNXConstant(dims: dims, values: integer ? values : values.map { Double(Float($0)) }, type: integer ? .integer : .float)
    }
}
