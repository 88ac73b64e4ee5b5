import Foundation

/// Reading and writing float32 `.npy` files (NumPy format 1.0-3.0, little-endian `<f4`,
/// C order), the interchange format of the tests, the CLI and the agent's local endpoint.
public struct NumpyArray: Equatable, Sendable {
    public var shape: [Int]
    public var values: [Float]

    public init(shape: [Int], values: [Float]) {
        self.shape = shape
        self.values = values
    }

    public struct FormatError: Error, CustomStringConvertible {
        public var description: String
    }

    public static func isNumpy(_ data: Data) -> Bool {
        data.count >= 6 && data.prefix(6) == Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59])
    }

    public init(_ data: Data) throws {
        let bytes = [UInt8](data)
        guard NumpyArray.isNumpy(data), bytes.count >= 10 else {
            throw FormatError(description: "not a .npy file (missing \\x93NUMPY magic)")
        }
        let major = bytes[6]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw FormatError(description: ".npy header is truncated") }
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
            headerStart = 12
        default:
            throw FormatError(description: ".npy format version \(major) is not supported")
        }
        guard headerLength <= 1 << 20, headerStart + headerLength <= bytes.count,
              let header = String(bytes: bytes[headerStart..<(headerStart + headerLength)], encoding: .utf8) else {
            throw FormatError(description: ".npy header is truncated or not text")
        }
        func field(_ key: String) -> Substring? {
            guard let range = header.range(of: "'\(key)':") else { return nil }
            return header[range.upperBound...].drop { $0 == " " }
        }
        guard let descr = field("descr"), descr.hasPrefix("'<f4'") || descr.hasPrefix("'float32'") else {
            throw FormatError(description: ".npy dtype must be little-endian float32 ('<f4'), header: \(header)")
        }
        if let order = field("fortran_order"), order.hasPrefix("True") {
            throw FormatError(description: ".npy arrays in Fortran order are not supported")
        }
        guard let shapeField = field("shape"), shapeField.hasPrefix("("), let close = shapeField.firstIndex(of: ")") else {
            throw FormatError(description: ".npy header has no shape: \(header)")
        }
        let dims = shapeField[shapeField.index(after: shapeField.startIndex)..<close]
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var parsed: [Int] = []
        for dim in dims {
            guard let value = Int(dim), value >= 0, value <= 1 << 31 else {
                throw FormatError(description: ".npy shape has an invalid dimension '\(dim)'")
            }
            parsed.append(value)
        }
        var count = 1
        for dim in parsed {
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= 1 << 31 else { throw FormatError(description: ".npy shape \(parsed) is too large") }
            count = product
        }
        let payload = headerStart + headerLength
        guard bytes.count - payload == count * 4 else {
            throw FormatError(description: ".npy shape \(parsed) needs \(count * 4) data bytes, the file has \(bytes.count - payload)")
        }
        shape = parsed
        values = (0..<count).map { i in
            let o = payload + i * 4
            return Float(bitPattern: UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24)
        }
    }

    public var data: Data {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        let length = UInt16(header.utf8.count)
        out.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        out.append(contentsOf: Array(header.utf8))
        for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }
}
