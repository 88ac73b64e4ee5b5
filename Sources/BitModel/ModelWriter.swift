import Foundation

/// Serializes a validated model to the `.bnn` format.
public enum ModelWriter {
    /// The file's bytes. The model is validated first, so a writer never produces a file
    /// that a reader would reject.
    public static func data(for model: Model) throws -> Data {
        try model.validate()

        var tensorData = Data()
        var entries: [GraphSection.TensorEntry] = []
        entries.reserveCapacity(model.tensors.count)
        for tensor in model.tensors {
            let offset = FileLayout.aligned(tensorData.count)
            tensorData.append(Data(count: offset - tensorData.count))
            switch tensor.storage {
            case .float32(let values):
                values.withUnsafeBufferPointer { buffer in
                    for value in buffer { appendLittleEndian(value.bitPattern, to: &tensorData) }
                }
            case .bits(let words):
                let rowLength = tensor.shape.last!
                let dense = BitPacking.denseStream(fromRows: words, rowLength: rowLength, rows: tensor.elementCount / rowLength)
                for word in dense { appendLittleEndian(word, to: &tensorData) }
            }
            entries.append(.init(dtype: tensor.dataType, shape: tensor.shape, offset: offset, bytes: tensorData.count - offset))
        }

        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let metadata = try encoder.encode(model.metadata)
        let graph = try encoder.encode(GraphSection(layers: model.layers, output: model.output, tensors: entries))
        var sections: [(FileLayout.SectionKind, Data)] = [(.metadata, metadata), (.graph, graph)]
        if !model.selfTests.isEmpty {
            sections.append((.selfTests, try encoder.encode(SelfTestSection(vectors: model.selfTests))))
        }
        sections.append((.tensorData, tensorData))
        return assemble(sections)
    }

    /// Lays out header, section table and sections (tensor data 64-byte aligned).
    static func assemble(_ sections: [(FileLayout.SectionKind, Data)]) -> Data {

        let tableOffset = FileLayout.headerSize
        var cursor = tableOffset + sections.count * FileLayout.sectionEntrySize
        var placed: [(kind: FileLayout.SectionKind, offset: Int, bytes: Data)] = []
        for (kind, bytes) in sections {
            if kind == .tensorData { cursor = FileLayout.aligned(cursor) }
            placed.append((kind, cursor, bytes))
            cursor += bytes.count
        }
        let fileSize = cursor

        var file = Data(capacity: fileSize)
        file.append(contentsOf: FileLayout.magic)
        appendLittleEndian(FileLayout.majorVersion, to: &file)
        appendLittleEndian(FileLayout.minorVersion, to: &file)
        appendLittleEndian(UInt32(FileLayout.headerSize), to: &file)
        appendLittleEndian(UInt64(fileSize), to: &file)
        appendLittleEndian(UInt32(sections.count), to: &file)
        appendLittleEndian(UInt32(0), to: &file)
        appendLittleEndian(UInt64(tableOffset), to: &file)
        file.append(Data(count: FileLayout.headerSize - file.count))
        for section in placed {
            appendLittleEndian(section.kind.rawValue, to: &file)
            appendLittleEndian(UInt32(0), to: &file)
            appendLittleEndian(UInt64(section.offset), to: &file)
            appendLittleEndian(UInt64(section.bytes.count), to: &file)
            appendLittleEndian(CRC32.checksum(section.bytes), to: &file)
            appendLittleEndian(UInt32(0), to: &file)
        }
        for section in placed {
            file.append(Data(count: section.offset - file.count))
            file.append(section.bytes)
        }
        precondition(file.count == fileSize)
        return file
    }

    /// Writes atomically: a temporary file in the same directory, fsync, rename. A crash or
    /// a full disk never leaves a half-written model under the final name.
    public static func write(_ model: Model, to url: URL) throws {
        try AtomicFile.write(try data(for: model), to: url)
    }

    private static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to data: inout Data) {
        withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) }
    }
}
