import BitModel

/// A real-valued activation of the engine graph, with the ONNX shape it stands for.
struct Activation {
    var value: ValueID
    /// ONNX dims: [1, C, H, W] or [1, N].
    var dims: [Int]
    /// Set when this [1, N] vector came from flattening a [1, C, H, W] tensor with H*W > 1:
    /// the engine flattens NHWC, ONNX flattens NCHW, so the next dense layer's weight
    /// columns (and any per-feature parameters before it) are permuted to match.
    var flattenedFrom: (c: Int, h: Int, w: Int)?

    var channels: Int { dims[1] }

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
    case constant(ONNXConstant)
    /// A constant Pad waiting for the Conv that will absorb it. pads: top, left, bottom, right.
    case padded(Symbol, pads: [Int], value: Double)
    /// x >= 0 (nonNegative) or x < 0, waiting for a Where(cond, +-1, -+1).
    case comparison(Activation, nonNegative: Bool)

    var kindName: String {
        switch self {
        case .real: return "a real-valued activation"
        case .sign: return "a binarized (Sign) activation"
        case .constant: return "a constant"
        case .padded: return "a padded activation"
        case .comparison: return "a comparison"
        }
    }
}

/// Weights that are +-alpha per output row: signs and the positive scales.
struct BinaryWeights {
    var signs: [Float]
    var alpha: [Float]

    /// Recognises +-1 weights, Sign(constant) and alpha * either (XNOR-Net), per output
    /// row of `rowLength` values; nil if any row mixes magnitudes.
    init?(_ values: [Double], rowLength: Int) {
        guard rowLength > 0, values.count % rowLength == 0 else { return nil }
        let rows = values.count / rowLength
        signs = [Float](repeating: 1, count: values.count)
        alpha = [Float](repeating: 0, count: rows)
        for row in 0..<rows {
            let slice = values[(row * rowLength)..<((row + 1) * rowLength)]
            let magnitude = abs(slice.first!)
            guard magnitude.isFinite else { return nil }
            for (offset, value) in slice.enumerated() {
                guard abs(abs(value) - magnitude) <= magnitude * 1e-6 else { return nil }
                signs[row * rowLength + offset] = value < 0 ? -1 : 1
            }
            alpha[row] = Float(magnitude)
        }
    }
}
