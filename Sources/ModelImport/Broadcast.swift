/// NumPy-style broadcasting of two constants, for folding constant subgraphs such as
/// `Mul(W_pm1, alpha)` (XNOR-Net scaled weights).
enum Broadcast {
    /// Elements a folded constant may have beyond the larger operand's count.
    static let maxGrowth = 1 << 20

    static func apply(_ op: String, _ x: ONNXConstant, _ y: ONNXConstant, node: ONNXNode) throws -> ONNXConstant {
        let rank = max(x.dims.count, y.dims.count)
        let xd = [Int](repeating: 1, count: rank - x.dims.count) + x.dims
        let yd = [Int](repeating: 1, count: rank - y.dims.count) + y.dims
        var dims: [Int] = []
        for (a, b) in zip(xd, yd) {
            guard a == b || a == 1 || b == 1 else {
                throw ImportError.node(node, "shapes \(x.dims) and \(y.dims) do not broadcast")
            }
            dims.append(max(a, b))
        }
        // Folding may not build a tensor larger than its operands (beyond a small allowance):
        // an outer-product broadcast of two tiny constants could otherwise ask for gigabytes.
        var count = 1
        for dim in dims {
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= max(x.count, y.count, maxGrowth) else {
                throw ImportError.node(node, "folding constants of shapes \(x.dims) and \(y.dims) would build a \(dims) tensor, larger than either; not supported")
            }
            count = product
        }
        func strides(_ d: [Int]) -> [Int] {
            var s = [Int](repeating: 0, count: rank)
            var acc = 1
            for axis in stride(from: rank - 1, through: 0, by: -1) {
                s[axis] = d[axis] == 1 ? 0 : acc
                acc *= d[axis]
            }
            return s
        }
        let xs = strides(xd), ys = strides(yd)
        var values = [Double](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: rank)
        for flat in 0..<count {
            var xi = 0, yi = 0
            for axis in 0..<rank { xi += index[axis] * xs[axis]; yi += index[axis] * ys[axis] }
            let a = x.values[xi], b = y.values[yi]
            switch op {
            case "Mul": values[flat] = a * b
            case "Add": values[flat] = a + b
            case "Sub": values[flat] = a - b
            default: values[flat] = a / b
            }
            var axis = rank - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < dims[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        return ONNXConstant(dims: dims, values: values)
    }
}
