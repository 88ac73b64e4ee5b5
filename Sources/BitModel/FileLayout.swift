/// Byte layout of a `.bnn` file (see docs/MODEL_FORMAT.md). All integers little-endian.
enum FileLayout {
    /// PNG-style: a non-ASCII first byte, then CR LF, ^Z and LF, so text-mode transfers and
    /// truncated prefixes are caught at the first bytes.
    static let magic: [UInt8] = [0x89, 0x42, 0x4E, 0x4E, 0x0D, 0x0A, 0x1A, 0x0A]
    static let majorVersion: UInt16 = 1
    static let minorVersion: UInt16 = 0
    static let headerSize = 64
    static let sectionEntrySize = 32
    /// Tensor payloads start at multiples of this, in the file and in the data section,
    /// so a memory-mapped file can be read with aligned SIMD loads (a cache line, and a
    /// multiple of every vector width the engine uses).
    static let alignment = 64

    enum SectionKind: UInt32, CaseIterable {
        case metadata = 1
        case graph = 2
        case tensorData = 3
        case selfTests = 4

        var name: String {
            switch self {
            case .metadata: return "metadata"
            case .graph: return "graph"
            case .tensorData: return "tensor data"
            case .selfTests: return "self tests"
            }
        }
    }

    /// Sections a reader does not know are skipped when this flag is set and rejected
    /// otherwise, so a newer writer can add optional data without breaking old agents.
    static let optionalSectionFlag: UInt32 = 1

    static func aligned(_ value: Int) -> Int { (value + alignment - 1) / alignment * alignment }
}

/// The graph section: layers, the output value and the tensor table.
struct GraphSection: Codable {
    struct TensorEntry: Codable {
        var dtype: Tensor.DataType
        var shape: [Int]
        /// Byte offset inside the tensor data section.
        var offset: Int
        var bytes: Int
    }

    var layers: [Layer]
    var output: ValueID
    var tensors: [TensorEntry]
}

struct SelfTestSection: Codable {
    var vectors: [SelfTestVector]
}
