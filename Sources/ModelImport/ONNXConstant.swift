import Foundation

/// A constant tensor, as doubles (exact for float32 and for the int64 shapes, pads and
/// indices the converter reads), with the kind of ONNX element type it had: integer
/// division truncates, comparisons make booleans, and float results round to float32 as
/// ONNX Runtime's would.
struct ONNXConstant: Equatable {
    enum ElementType: String {
        case float, integer, bool
    }

    var dims: [Int]
    var values: [Double]
    var type: ElementType

    init(dims: [Int], values: [Double], type: ElementType = .float) {
        self.dims = dims
        self.values = values
        self.type = type
    }

    /// Decodes an initializer or a Constant node's tensor; `external` reads the bytes of a
    /// tensor stored in a file beside the model (nil: such tensors are refused).
    init(_ tensor: Onnx_TensorProto, location: String, external: ExternalDataReader? = nil) throws {
        dims = tensor.dims.map { Int($0) }
        guard dims.allSatisfy({ $0 >= 0 }) else { throw ImportError(location, "negative dimension in \(dims)") }
        // Zero-sized dimensions count as 1 here, so that no product of dimensions (such as
        // the strides of a broadcast) can overflow even when the tensor is empty.
        var count = 1, extent = 1
        for dim in dims {
            let (product, overflow) = extent.multipliedReportingOverflow(by: max(dim, 1))
            guard !overflow, product <= 1 << 30 else { throw ImportError(location, "shape \(dims) is too large") }
            extent = product
            count *= dim
        }
        let dataType = Onnx_TensorProto.DataType(rawValue: Int(tensor.dataType))
        let size: Int
        switch dataType {
        case .float?, .int32?: size = 4
        case .double?, .int64?: size = 8
        case .bool?: size = 1
        default:
            throw ImportError(location, "data type \(tensor.dataType) is not supported (float, double, int32, int64, bool)")
        }
        let raw: Data
        if tensor.dataLocation == .external {
            guard let external else {
                throw ImportError(location, "the weights are in an external file (\(ExternalDataReader.describe(tensor))), which is not available here; convert the model from its folder (fleetctl model convert model.onnx) or push it with fleetctl model push, which reads the file beside it")
            }
            raw = try external.read(tensor, bytes: count * size, location: location)
        } else {
            raw = tensor.rawData
        }
        let shape = dims
        func fromRaw<T: FixedWidthInteger>(_ type: T.Type, _ convert: (T) -> Double) throws -> [Double] {
            guard raw.count == count * size else {
                throw ImportError(location, "raw data has \(raw.count) bytes, shape \(shape) needs \(count * size)")
            }
            return raw.withUnsafeBytes { bytes in
                (0..<count).map { convert(T(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * size, as: T.self))) }
            }
        }
        switch dataType {
        case .float?:
            type = .float
            values = raw.isEmpty ? tensor.floatData.map(Double.init) : try fromRaw(UInt32.self) { Double(Float(bitPattern: $0)) }
        case .double?:
            type = .float
            values = raw.isEmpty ? tensor.doubleData : try fromRaw(UInt64.self) { Double(bitPattern: $0) }
        case .int64?:
            type = .integer
            values = raw.isEmpty ? tensor.int64Data.map(Double.init) : try fromRaw(Int64.self) { Double($0) }
        case .int32?:
            type = .integer
            values = raw.isEmpty ? tensor.int32Data.map(Double.init) : try fromRaw(Int32.self) { Double($0) }
        default:
            type = .bool
            values = raw.isEmpty ? tensor.int32Data.map(Double.init) : try fromRaw(UInt8.self) { Double($0) }
        }
        guard values.count == count else {
            throw ImportError(location, "has \(values.count) values, shape \(dims) needs \(count)")
        }
    }

    var floats: [Float] { values.map { Float($0) } }
    var count: Int { values.count }
    var isScalarLike: Bool { values.count == 1 }

    /// The values as integers (shapes, pads); an error naming the role unless every value
    /// is a whole number of magnitude at most `limit` (NaN, infinities and 1e300 are not).
    func integers(_ role: String, of node: ONNXNode, limit: Int = 1 << 31) throws -> [Int] {
        try values.map { value in
            guard value.isFinite, value.rounded() == value, abs(value) <= Double(limit) else {
                throw ImportError.node(node, "\(role) value \(value) is not an integer in -\(limit)...\(limit)")
            }
            return Int(value)
        }
    }

    /// Row-major strides of `dims`.
    static func strides(_ dims: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: dims.count)
        var step = 1
        for axis in stride(from: dims.count - 1, through: 0, by: -1) {
            strides[axis] = step
            step *= max(dims[axis], 1)
        }
        return strides
    }
}
