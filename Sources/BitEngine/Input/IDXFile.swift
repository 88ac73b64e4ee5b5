import Foundation

/// The IDX format of MNIST and Fashion-MNIST (big-endian header, unsigned bytes), plain or
/// gzip-compressed (as Debian's dataset-fashion-mnist ships it).
public struct IDXFile: Sendable {
    public var dimensions: [Int]
    public var bytes: [UInt8]

    public struct FormatError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(contentsOf url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw FormatError(description: "cannot read \(url.path)")
        }
        if Gzip.isGzip(data) {
            do {
                try self.init(try Gzip.decompress(data), name: url.lastPathComponent)
            } catch let error as Gzip.Error {
                throw FormatError(description: "\(url.path): \(error)")
            }
        } else {
            try self.init(data, name: url.lastPathComponent)
        }
    }

    public init(_ data: Data, name: String = "IDX data") throws {
        let raw = [UInt8](data)
        guard raw.count >= 4, raw[0] == 0, raw[1] == 0 else {
            throw FormatError(description: "\(name): not an IDX file (bad magic)")
        }
        guard raw[2] == 0x08 else {
            throw FormatError(description: "\(name): element type 0x\(String(raw[2], radix: 16)) is not unsigned byte")
        }
        let rank = Int(raw[3])
        guard rank >= 1, rank <= 4, raw.count >= 4 + 4 * rank else {
            throw FormatError(description: "\(name): truncated header")
        }
        dimensions = (0..<rank).map { axis in
            (0..<4).reduce(0) { $0 << 8 | Int(raw[4 + axis * 4 + $1]) }
        }
        let count = dimensions.reduce(1, *)
        let header = 4 + 4 * rank
        guard raw.count == header + count else {
            throw FormatError(description: "\(name): dimensions \(dimensions) need \(count) bytes, the file has \(raw.count - header)")
        }
        bytes = Array(raw[header...])
    }

    /// Number of items along the first dimension (images or labels).
    public var count: Int { dimensions.first ?? 0 }

    /// Bytes of item `index` (one image, or one label).
    public func item(_ index: Int) -> ArraySlice<UInt8> {
        let size = dimensions.dropFirst().reduce(1, *)
        return bytes[(index * size)..<((index + 1) * size)]
    }
}
