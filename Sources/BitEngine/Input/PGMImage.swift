import Foundation

/// Netpbm grayscale images (P5 binary and P2 text), the dependency-free image format for
/// feeding a model from the command line or the agent's local endpoint.
public struct PGMImage: Sendable {
    public var width: Int
    public var height: Int
    public var maxValue: Int
    /// Row-major gray levels in 0...maxValue.
    public var pixels: [Int]

    public struct FormatError: Error, CustomStringConvertible {
        public var description: String
    }

    public static func isPGM(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == UInt8(ascii: "P") && (data[data.startIndex + 1] == UInt8(ascii: "5") || data[data.startIndex + 1] == UInt8(ascii: "2"))
    }

    public init(width: Int, height: Int, maxValue: Int = 255, pixels: [Int]) {
        self.width = width
        self.height = height
        self.maxValue = maxValue
        self.pixels = pixels
    }

    public init(_ data: Data) throws {
        let raw = [UInt8](data)
        var position = 2
        func token() throws -> Int {
            while position < raw.count {
                if raw[position] == UInt8(ascii: "#") {
                    while position < raw.count && raw[position] != 0x0A { position += 1 }
                } else if raw[position] == 0x20 || (0x09...0x0D).contains(raw[position]) {
                    position += 1
                } else {
                    break
                }
            }
            var value = 0, digits = 0
            while position < raw.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(raw[position]), digits < 9 {
                value = value * 10 + Int(raw[position] - UInt8(ascii: "0"))
                position += 1
                digits += 1
            }
            guard digits > 0 else { throw FormatError(description: "PGM header: expected a number at byte \(position)") }
            return value
        }
        guard PGMImage.isPGM(data) else { throw FormatError(description: "not a PGM image (P5 or P2 expected)") }
        let binary = raw[1] == UInt8(ascii: "5")
        width = try token()
        height = try token()
        maxValue = try token()
        guard (1...16384).contains(width), (1...16384).contains(height), (1...65535).contains(maxValue) else {
            throw FormatError(description: "PGM size \(width)x\(height) or max value \(maxValue) is out of range")
        }
        let count = width * height
        if binary {
            position += 1
            let bytesPerPixel = maxValue > 255 ? 2 : 1
            guard raw.count - position >= count * bytesPerPixel else {
                throw FormatError(description: "PGM data is truncated: \(width)x\(height) needs \(count * bytesPerPixel) bytes")
            }
            pixels = (0..<count).map { i in
                bytesPerPixel == 1 ? Int(raw[position + i]) : Int(raw[position + 2 * i]) << 8 | Int(raw[position + 2 * i + 1])
            }
        } else {
            pixels = try (0..<count).map { _ in try token() }
        }
    }

    /// Encoded as binary PGM (P5) with 8-bit levels.
    public var data: Data {
        var out = Data("P5\n\(width) \(height)\n255\n".utf8)
        out.append(contentsOf: pixels.map { UInt8(clamping: $0 * 255 / max(maxValue, 1)) })
        return out
    }
}
