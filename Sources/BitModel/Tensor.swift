/// A constant tensor stored in a model: float32 weights, or binary weights packed one bit
/// per weight.
///
/// Binary tensors have a logical shape whose last dimension is packed into 64-bit words
/// (bit `i % 64` of word `i / 64`, 1 = +1, 0 = -1). Bits past the logical size of the last
/// dimension are zero; the reader rejects a file where they are not, because the kernels
/// rely on zero padding in both operands of the XOR.
public struct Tensor: Equatable, Sendable {
    public enum DataType: String, Codable, Sendable {
        case float32 = "f32"
        case bits = "b1"
    }

    public enum Storage: Equatable, Sendable {
        case float32([Float])
        case bits([UInt64])
    }

    public var shape: [Int]
    public var storage: Storage

    public var dataType: DataType {
        switch storage {
        case .float32: return .float32
        case .bits: return .bits
        }
    }

    public init(shape: [Int], floats: [Float]) {
        self.shape = shape
        self.storage = .float32(floats)
    }

    public init(shape: [Int], packedBits: [UInt64]) {
        self.shape = shape
        self.storage = .bits(packedBits)
    }

    /// Packs `values` (interpreted with `sign`: >= 0 is +1) along the last dimension.
    public init(shape: [Int], signsOf values: [Float]) {
        precondition(!shape.isEmpty && shape.reduce(1, *) == values.count, "shape does not match values")
        self.shape = shape
        self.storage = .bits(BitPacking.pack(values, rowLength: shape.last!))
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// Number of 64-bit words one row of the packed last dimension takes.
    public var wordsPerRow: Int { BitPacking.wordCount(forBits: shape.last ?? 0) }

    public var floats: [Float] {
        if case .float32(let values) = storage { return values }
        preconditionFailure("tensor is not float32")
    }

    public var words: [UInt64] {
        if case .bits(let words) = storage { return words }
        preconditionFailure("tensor is not binary")
    }

    /// Bytes this tensor's payload takes in a `.bnn` file (before alignment).
    public var byteCount: Int {
        switch storage {
        case .float32(let values): return values.count * 4
        case .bits(let words): return words.count * 8
        }
    }

    /// Bits the weights need: 32 per float, 1 per binary weight (padding excluded).
    public var informationBits: Int {
        switch storage {
        case .float32(let values): return values.count * 32
        case .bits: return elementCount
        }
    }

    /// Unpacks a binary tensor to +1/-1 floats (for tests and references).
    public func unpackedSigns() -> [Float] {
        guard let rowLength = shape.last else { return [] }
        return BitPacking.unpack(words, rowLength: rowLength, rows: elementCount / max(rowLength, 1))
    }
}
