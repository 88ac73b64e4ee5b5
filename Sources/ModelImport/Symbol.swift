import BitModel

/// How ONNX sees a 4-D activation. The engine keeps every activation NHWC; an ONNX graph
/// may look at it as NCHW (PyTorch) or NHWC (Keras through tf2onnx, between the Transpose
/// pairs it writes around every Conv). A layout Transpose changes only this view, so
/// Transpose pairs cancel without moving any data.
enum ViewLayout: String {
    case nchw = "NCHW"
    case nhwc = "NHWC"

    /// ONNX axis i holds canonical (N, C, H, W) axis `canonicalAxes[i]`.
    var canonicalAxes: [Int] { self == .nchw ? [0, 1, 2, 3] : [0, 2, 3, 1] }

    init?(canonicalAxes axes: [Int]) {
        switch axes {
        case [0, 1, 2, 3]: self = .nchw
        case [0, 2, 3, 1]: self = .nhwc
        default: return nil
        }
    }
}

/// A real-valued activation of the engine graph, with the ONNX shape it stands for.
struct Activation {
    var value: ValueID
    /// Canonical dims: [1, C, H, W] or [1, N].
    var dims: [Int]
    /// Set when this [1, N] vector came from flattening an NCHW-viewed [1, C, H, W] tensor
    /// with H*W > 1: the engine flattens NHWC, ONNX flattened NCHW, so the next dense
    /// layer's weight columns (and any per-feature parameters before it) are permuted.
    var flattenedFrom: (c: Int, h: Int, w: Int)?
    /// How ONNX sees a 4-D value (ignored for 2-D ones).
    var layout: ViewLayout = .nchw

    init(value: ValueID, dims: [Int], flattenedFrom: (c: Int, h: Int, w: Int)? = nil, layout: ViewLayout = .nchw) {
        self.value = value
        self.dims = dims
        self.flattenedFrom = flattenedFrom
        self.layout = layout
    }

    var channels: Int { dims[1] }
    var isSpatial: Bool { dims.count == 4 }

    /// The dims as the ONNX graph sees them.
    var onnxDims: [Int] { isSpatial ? layout.canonicalAxes.map { dims[$0] } : dims }

    /// The ONNX axis that holds channels (or features).
    var channelAxis: Int { isSpatial && layout == .nhwc ? 3 : 1 }

    /// Same engine value, other dims or view.
    func with(dims: [Int], layout: ViewLayout? = nil) -> Activation {
        Activation(value: value, dims: dims, flattenedFrom: nil, layout: layout ?? self.layout)
    }

    /// Engine feature index -> ONNX feature index, for flattened values.
    func onnxIndex(ofEngineFeature e: Int) -> Int {
        guard let source = flattenedFrom else { return e }
        let c = e % source.c, pixel = e / source.c
        return c * source.h * source.w + pixel
    }
}

/// What an ONNX tensor name refers to while converting.
indirect enum Symbol {
    case real(Activation)
    /// sign(activation), binarized lazily: only binary Conv/Gemm consume it as bits.
    case sign(Activation)
    /// sign(activation) + offset[c] (Larq's `ste_sign` is sign(sign(x) + 0.1)), waiting
    /// for the Sign that turns it back into a binarization.
    case shiftedSign(Activation, offsets: [Double])
    case constant(ONNXConstant)
    /// A constant Pad waiting for the Conv that will absorb it. pads: top, left, bottom, right.
    case padded(Symbol, pads: [Int], value: Double)
    /// x >= 0 (nonNegative) or x < 0, waiting for a Where(cond, +-1, -+1). `tie` says what
    /// happens to x == 0 if the ONNX comparison was strict the other way.
    case comparison(Activation, nonNegative: Bool, tie: String?)

    var kindName: String {
        switch self {
        case .real: return "a real-valued activation"
        case .sign: return "a binarized (Sign) activation"
        case .shiftedSign: return "a binarized activation plus a constant"
        case .constant: return "a constant"
        case .padded: return "a padded activation"
        case .comparison: return "a comparison"
        }
    }

    /// The activation underneath, for ops that only change how ONNX sees it.
    var activation: Activation? {
        switch self {
        case .real(let a), .sign(let a), .shiftedSign(let a, _), .comparison(let a, _, _): return a
        case .padded(let inner, _, _): return inner.activation
        case .constant: return nil
        }
    }

    /// The same symbol over `transform(activation)`.
    func mapActivation(_ transform: (Activation) throws -> Activation) rethrows -> Symbol {
        switch self {
        case .real(let a): return .real(try transform(a))
        case .sign(let a): return .sign(try transform(a))
        case .shiftedSign(let a, let offsets): return .shiftedSign(try transform(a), offsets: offsets)
        case .comparison(let a, let nonNegative, let tie): return .comparison(try transform(a), nonNegative: nonNegative, tie: tie)
        case .padded(let inner, let pads, let value): return .padded(try inner.mapActivation(transform), pads: pads, value: value)
        case .constant: return self
        }
    }
}

/// Weights that are s_o * (+-1) per output row: signs and the magnitudes |s_o|.
struct BinaryWeights {
    var signs: [Float]
    var alpha: [Float]

    /// How the rows of a weight matrix look.
    enum Form {
        case binary(BinaryWeights)
        case real
        /// Every row's magnitudes agree within 1 % but not within float rounding: a layer
        /// that was meant to be binary but was not exported exactly. Refused on a
        /// binarized input, because running it in float would hide the mistake.
        case nearlyBinary(row: Int, relativeDeviation: Double)
    }

    /// Magnitudes equal within this, relative to max(|s_o|, 1): float rounding of the
    /// exporters' arithmetic (BatchNorm folding, `alpha * sign(w)`, the STE `a - b + b` on
    /// latent weights in [-1, 1]) stays far below it, a trained float layer far above.
    static let roundingTolerance = 0x1p-18

    /// Recognises +-1 weights, Sign(constant), alpha * either (XNOR-Net), BatchNorm folded
    /// into them (s_o of either sign), per output row of `rowLength` values.
    static func classify(_ values: [Double], rowLength: Int) -> Form {
        guard rowLength > 0, values.count % rowLength == 0, !values.isEmpty else { return .real }
        let rows = values.count / rowLength
        var signs = [Float](repeating: 1, count: values.count)
        var alpha = [Float](repeating: 0, count: rows)
        var nearly: (row: Int, relativeDeviation: Double)?
        for row in 0..<rows {
            let slice = values[(row * rowLength)..<((row + 1) * rowLength)]
            guard slice.allSatisfy(\.isFinite) else { return .real }
            let magnitude = slice.reduce(0) { $0 + abs($1) } / Double(rowLength)
            let deviation = slice.reduce(0) { max($0, abs(abs($1) - magnitude)) }
            if deviation > roundingTolerance * max(magnitude, 1) {
                guard deviation <= 0.01 * magnitude else { return .real }
                if nearly == nil || deviation / magnitude > nearly!.relativeDeviation {
                    nearly = (row, deviation / magnitude)
                }
            }
            for (offset, value) in slice.enumerated() {
                signs[row * rowLength + offset] = value < 0 ? -1 : 1
            }
            alpha[row] = Float(magnitude)
        }
        if let nearly { return .nearlyBinary(row: nearly.row, relativeDeviation: nearly.relativeDeviation) }
        return .binary(BinaryWeights(signs: signs, alpha: alpha))
    }
}
