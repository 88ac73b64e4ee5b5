/// Shape and representation of an activation, in the engine's NHWC terms (batch 1).
public struct ValueShape: Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// float32, [h][w][c]
        case real
        /// sign bits, [h][w][ceil(c/64)] 64-bit words, padding bits zero
        case bits
    }

    public var kind: Kind
    public var height: Int
    public var width: Int
    public var channels: Int

    public init(kind: Kind, height: Int, width: Int, channels: Int) {
        self.kind = kind
        self.height = height
        self.width = width
        self.channels = channels
    }

    public var pixels: Int { height * width }
    public var elementCount: Int { height * width * channels }
    public var wordsPerPixel: Int { BitPacking.wordCount(forBits: channels) }

    /// Bytes of one buffer holding this value.
    public var byteCount: Int {
        switch kind {
        case .real: return elementCount * 4
        case .bits: return pixels * wordsPerPixel * 8
        }
    }

    public var description: String {
        "\(kind == .bits ? "bits" : "f32")[\(height)x\(width)x\(channels)]"
    }
}
