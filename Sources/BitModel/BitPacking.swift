/// Packing of +1/-1 values into 64-bit words, the layout shared by the file format and the
/// engine: rows of `rowLength` values, each row padded with zero bits to a whole word.
public enum BitPacking {
    public static func wordCount(forBits bits: Int) -> Int { (bits + 63) / 64 }

    /// Bit `i` of a row is 1 when the value is >= 0 (sign(0) = +1).
    public static func pack(_ values: [Float], rowLength: Int) -> [UInt64] {
        precondition(rowLength > 0 && values.count % rowLength == 0)
        let rows = values.count / rowLength
        let words = wordCount(forBits: rowLength)
        var packed = [UInt64](repeating: 0, count: rows * words)
        for row in 0..<rows {
            for i in 0..<rowLength where values[row * rowLength + i] >= 0 {
                packed[row * words + i / 64] |= 1 << UInt64(i % 64)
            }
        }
        return packed
    }

    public static func unpack(_ packed: [UInt64], rowLength: Int, rows: Int) -> [Float] {
        let words = wordCount(forBits: rowLength)
        var values = [Float](repeating: -1, count: rows * rowLength)
        for row in 0..<rows {
            for i in 0..<rowLength where packed[row * words + i / 64] >> UInt64(i % 64) & 1 == 1 {
                values[row * rowLength + i] = 1
            }
        }
        return values
    }

    /// Mask of the bits of the last word of a row that carry values.
    public static func lastWordMask(rowLength: Int) -> UInt64 {
        let used = rowLength % 64
        return used == 0 ? ~0 : (1 << UInt64(used)) - 1
    }
}

extension BitPacking {
    /// Reads `count` bits starting at bit `offset` of a little-endian word stream.
    @inline(__always)
    static func bits(_ stream: UnsafeBufferPointer<UInt64>, at offset: Int, count: Int) -> UInt64 {
        let word = offset / 64, shift = offset % 64
        var value = stream[word] >> UInt64(shift)
        if shift != 0 && shift + count > 64 { value |= stream[word + 1] << UInt64(64 - shift) }
        return count == 64 ? value : value & ((1 << UInt64(count)) - 1)
    }

    /// Row-padded words (the engine's layout) to one dense bit stream of `rows * rowLength`
    /// bits, the file's layout: a file holds exactly the bits the weights need.
    public static func denseStream(fromRows packed: [UInt64], rowLength: Int, rows: Int) -> [UInt64] {
        let wordsPerRow = wordCount(forBits: rowLength)
        var dense = [UInt64](repeating: 0, count: wordCount(forBits: rows * rowLength))
        var position = 0
        for row in 0..<rows {
            for w in 0..<wordsPerRow {
                let count = min(64, rowLength - w * 64)
                let value = packed[row * wordsPerRow + w]
                let word = position / 64, shift = position % 64
                dense[word] |= value << UInt64(shift)
                if shift != 0 && shift + count > 64 { dense[word + 1] |= value >> UInt64(64 - shift) }
                position += count
            }
        }
        return dense
    }

    /// The inverse of `denseStream`.
    public static func rows(fromDenseStream dense: UnsafeBufferPointer<UInt64>, rowLength: Int, rows: Int) -> [UInt64] {
        let wordsPerRow = wordCount(forBits: rowLength)
        var packed = [UInt64](repeating: 0, count: rows * wordsPerRow)
        var position = 0
        for row in 0..<rows {
            for w in 0..<wordsPerRow {
                let count = min(64, rowLength - w * 64)
                packed[row * wordsPerRow + w] = bits(dense, at: position, count: count)
                position += count
            }
        }
        return packed
    }
}
