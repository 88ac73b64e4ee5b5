import BitModel
import Foundation

/// A small DEFLATE (RFC 1951) decoder with the gzip (RFC 1952) wrapper, so datasets
/// shipped as .gz (Debian's Fashion-MNIST) load with no system zlib on any platform.
public enum Gzip {
    public struct Error: Swift.Error, CustomStringConvertible {
        public var description: String
    }

    public static func isGzip(_ data: Data) -> Bool { data.count >= 2 && data.prefix(2) == Data([0x1F, 0x8B]) }

    public static func decompress(_ data: Data, limit: Int = 1 << 30) throws -> Data {
        let bytes = [UInt8](data)
        guard bytes.count >= 18, bytes[0] == 0x1F, bytes[1] == 0x8B, bytes[2] == 8 else {
            throw Error(description: "not a gzip stream with DEFLATE compression")
        }
        let flags = bytes[3]
        var position = 10
        if flags & 4 != 0 {
            guard position + 2 <= bytes.count else { throw Error(description: "truncated gzip header") }
            position += 2 + (Int(bytes[position]) | Int(bytes[position + 1]) << 8)
        }
        for flag in [UInt8(8), 16] where flags & flag != 0 {
            while position < bytes.count && bytes[position] != 0 { position += 1 }
            position += 1
        }
        if flags & 2 != 0 { position += 2 }
        guard position < bytes.count else { throw Error(description: "truncated gzip header") }
        var inflater = Inflater(bytes: bytes, position: position, limit: limit)
        let output = try inflater.run()
        let trailer = inflater.alignedPosition
        guard trailer + 8 <= bytes.count else { throw Error(description: "truncated gzip trailer") }
        let size = (0..<4).reduce(0) { $0 | Int(bytes[trailer + 4 + $1]) << (8 * $1) }
        guard size == output.count & 0xFFFF_FFFF else {
            throw Error(description: "gzip size mismatch: trailer says \(size), inflated \(output.count)")
        }
        let crc = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[trailer + $1]) << (8 * UInt32($1)) }
        let actual = output.withUnsafeBufferPointer { CRC32.checksum(UnsafeRawBufferPointer($0)) }
        guard crc == actual else { throw Error(description: "gzip CRC mismatch: the file is corrupted") }
        return Data(output)
    }
}

private struct Inflater {
    let bytes: [UInt8]
    var position: Int
    var bitBuffer: UInt64 = 0
    var bitCount = 0
    let limit: Int
    var output: [UInt8] = []

    init(bytes: [UInt8], position: Int, limit: Int) {
        self.bytes = bytes
        self.position = position
        self.limit = limit
    }

    /// Byte position after the last bit consumed, rounded up to a whole byte.
    var alignedPosition: Int { position - bitCount / 8 }

    mutating func bits(_ count: Int) throws -> Int {
        while bitCount < count {
            guard position < bytes.count else { throw Gzip.Error(description: "truncated DEFLATE stream") }
            bitBuffer |= UInt64(bytes[position]) << UInt64(bitCount)
            position += 1
            bitCount += 8
        }
        let value = Int(bitBuffer & ((1 << UInt64(count)) - 1))
        bitBuffer >>= UInt64(count)
        bitCount -= count
        return value
    }

    /// Canonical Huffman code: counts per length and symbols sorted by code.
    struct Huffman {
        var counts = [Int](repeating: 0, count: 16)
        var symbols: [Int] = []

        init(lengths: [Int]) throws {
            for length in lengths { counts[length] += 1 }
            counts[0] = 0
            var offsets = [Int](repeating: 0, count: 16)
            for length in 1..<16 { offsets[length] = offsets[length - 1] + counts[length - 1] }
            symbols = [Int](repeating: 0, count: lengths.count)
            for (symbol, length) in lengths.enumerated() where length > 0 {
                symbols[offsets[length]] = symbol
                offsets[length] += 1
            }
        }
    }

    mutating func decode(_ huffman: Huffman) throws -> Int {
        var code = 0, first = 0, index = 0
        for length in 1..<16 {
            code |= try bits(1)
            let count = huffman.counts[length]
            if code - first < count { return huffman.symbols[index + code - first] }
            index += count
            first = (first + count) << 1
            code <<= 1
        }
        throw Gzip.Error(description: "invalid Huffman code in DEFLATE stream")
    }

    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distanceBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    static let distanceExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    mutating func run() throws -> [UInt8] {
        var last = 0
        repeat {
            last = try bits(1)
            switch try bits(2) {
            case 0: try stored()
            case 1:
                let fixedLengths = (0..<288).map { $0 < 144 ? 8 : $0 < 256 ? 9 : $0 < 280 ? 7 : 8 }
                try block(literals: try Huffman(lengths: fixedLengths), distances: try Huffman(lengths: [Int](repeating: 5, count: 30)))
            case 2:
                let (literals, distances) = try dynamicTables()
                try block(literals: literals, distances: distances)
            default:
                throw Gzip.Error(description: "invalid DEFLATE block type")
            }
        } while last == 0
        return output
    }

    mutating func stored() throws {
        bitBuffer = 0
        position -= bitCount / 8
        bitCount = 0
        guard position + 4 <= bytes.count else { throw Gzip.Error(description: "truncated stored block") }
        let length = Int(bytes[position]) | Int(bytes[position + 1]) << 8
        let complement = Int(bytes[position + 2]) | Int(bytes[position + 3]) << 8
        guard length == ~complement & 0xFFFF else { throw Gzip.Error(description: "corrupted stored block length") }
        position += 4
        guard position + length <= bytes.count, output.count + length <= limit else { throw Gzip.Error(description: "truncated or oversized stored block") }
        output.append(contentsOf: bytes[position..<(position + length)])
        position += length
    }

    mutating func dynamicTables() throws -> (Huffman, Huffman) {
        let literalCount = try bits(5) + 257, distanceCount = try bits(5) + 1, codeCount = try bits(4) + 4
        let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
        var codeLengths = [Int](repeating: 0, count: 19)
        for i in 0..<codeCount { codeLengths[order[i]] = try bits(3) }
        let codeHuffman = try Huffman(lengths: codeLengths)
        var lengths: [Int] = []
        while lengths.count < literalCount + distanceCount {
            let symbol = try decode(codeHuffman)
            switch symbol {
            case 0..<16: lengths.append(symbol)
            case 16:
                guard let previous = lengths.last else { throw Gzip.Error(description: "repeat with no previous length") }
                lengths += [Int](repeating: previous, count: 3 + (try bits(2)))
            case 17: lengths += [Int](repeating: 0, count: 3 + (try bits(3)))
            default: lengths += [Int](repeating: 0, count: 11 + (try bits(7)))
            }
        }
        guard lengths.count == literalCount + distanceCount else { throw Gzip.Error(description: "code lengths overflow") }
        return (try Huffman(lengths: Array(lengths[0..<literalCount])), try Huffman(lengths: Array(lengths[literalCount...])))
    }

    mutating func block(literals: Huffman, distances: Huffman) throws {
        while true {
            let symbol = try decode(literals)
            if symbol < 256 {
                output.append(UInt8(symbol))
            } else if symbol == 256 {
                return
            } else {
                let index = symbol - 257
                guard index < 29 else { throw Gzip.Error(description: "invalid length symbol") }
                let length = Self.lengthBase[index] + (try bits(Self.lengthExtra[index]))
                let distanceSymbol = try decode(distances)
                guard distanceSymbol < 30 else { throw Gzip.Error(description: "invalid distance symbol") }
                let distance = Self.distanceBase[distanceSymbol] + (try bits(Self.distanceExtra[distanceSymbol]))
                guard distance <= output.count else { throw Gzip.Error(description: "distance too far back") }
                guard output.count + length <= limit else { throw Gzip.Error(description: "inflated data exceeds \(limit) bytes") }
                let start = output.count - distance
                for i in 0..<length { output.append(output[start + i]) }
            }
        }
    }
}
