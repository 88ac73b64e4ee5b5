import Foundation

/// Reads and validates `.bnn` files. Every offset, length and count is checked against the
/// file before it is used, so a truncated, corrupted or hostile file yields a
/// `ModelFormatError` naming the problem and where it is, never a crash or an
/// out-of-bounds read.
public enum ModelReader {
    /// Reads a file, memory-mapped where the platform allows it.
    public static func read(contentsOf url: URL) throws -> Model {
        let data: Data
        do {
            data = try Data(contentsOf: url, options: [.alwaysMapped])
        } catch {
            throw ModelFormatError(.truncated, at: url.path, "cannot read the file: \(error.localizedDescription)")
        }
        do {
            return try read(data)
        } catch var error as ModelFormatError {
            error.location = "\(url.lastPathComponent): \(error.location)"
            throw error
        }
    }

    public static func read(_ data: Data) throws -> Model {
        try data.withUnsafeBytes { raw in try read(raw) }
    }

    private struct Section {
        var kind: UInt32
        var flags: UInt32
        var offset: Int
        var length: Int
        var checksum: UInt32
    }

    static func read(_ file: UnsafeRawBufferPointer) throws -> Model {
        let sections = try readSectionTable(file)
        func bytes(of kind: FileLayout.SectionKind, required: Bool) throws -> UnsafeRawBufferPointer? {
            guard let section = sections.first(where: { $0.kind == kind.rawValue }) else {
                if required {
                    throw ModelFormatError(.missingSection, at: "section table", "the file has no \(kind.name) section")
                }
                return nil
            }
            return UnsafeRawBufferPointer(rebasing: file[section.offset..<(section.offset + section.length)])
        }

        let metadata = try decodeJSON(ModelMetadata.self, from: try bytes(of: .metadata, required: true)!, section: .metadata)
        let graph = try decodeJSON(GraphSection.self, from: try bytes(of: .graph, required: true)!, section: .graph)
        let selfTests = try bytes(of: .selfTests, required: false).map {
            try decodeJSON(SelfTestSection.self, from: $0, section: .selfTests).vectors
        } ?? []
        let tensorData = try bytes(of: .tensorData, required: true)!
        let tensors = try readTensors(graph.tensors, from: tensorData)

        let model = Model(metadata: metadata, layers: graph.layers, output: graph.output,
                          tensors: tensors, selfTests: selfTests)
        try model.validate()
        return model
    }

    private static func readSectionTable(_ file: UnsafeRawBufferPointer) throws -> [Section] {
        guard file.count >= FileLayout.headerSize else {
            if file.count >= FileLayout.magic.count, !file.starts(with: FileLayout.magic) {
                throw ModelFormatError(.badMagic, at: "byte 0", "not a .bnn file (wrong magic number)")
            }
            throw ModelFormatError(.truncated, at: "header", "the file has \(file.count) bytes, a header needs \(FileLayout.headerSize)")
        }
        guard file.starts(with: FileLayout.magic) else {
            throw ModelFormatError(.badMagic, at: "byte 0", "not a .bnn file (wrong magic number)")
        }
        let major = file.loadLE(UInt16.self, at: 8)
        let minor = file.loadLE(UInt16.self, at: 10)
        guard major == FileLayout.majorVersion else {
            throw ModelFormatError(.unsupportedVersion, at: "header byte 8", "format version \(major).\(minor) is not supported (this reader reads \(FileLayout.majorVersion).x)")
        }
        let headerSize = Int(file.loadLE(UInt32.self, at: 12))
        guard headerSize >= FileLayout.headerSize, headerSize <= file.count else {
            throw ModelFormatError(.badHeader, at: "header byte 12", "header size \(headerSize) is invalid")
        }
        let declaredSize = file.loadLE(UInt64.self, at: 16)
        guard declaredSize == UInt64(file.count) else {
            let code: ModelFormatError.Code = declaredSize > UInt64(file.count) ? .truncated : .badHeader
            throw ModelFormatError(code, at: "header byte 16", "the header declares \(declaredSize) bytes, the file has \(file.count)")
        }
        guard file.count <= ModelLimits.maxFileBytes else {
            throw ModelFormatError(.tooLarge, at: "header", "\(file.count) bytes exceed the limit of \(ModelLimits.maxFileBytes)")
        }
        let sectionCount = Int(file.loadLE(UInt32.self, at: 24))
        guard (1...ModelLimits.maxSections).contains(sectionCount) else {
            throw ModelFormatError(.badHeader, at: "header byte 24", "section count \(sectionCount) is outside 1...\(ModelLimits.maxSections)")
        }
        let tableOffset64 = file.loadLE(UInt64.self, at: 32)
        let tableBytes = sectionCount * FileLayout.sectionEntrySize
        guard tableBytes <= file.count, tableOffset64 >= UInt64(headerSize), tableOffset64 <= UInt64(file.count - tableBytes) else {
            throw ModelFormatError(.sectionOutOfRange, at: "header byte 32", "section table at \(tableOffset64) (\(tableBytes) bytes) lies outside the file")
        }
        let tableOffset = Int(tableOffset64)

        var sections: [Section] = []
        for index in 0..<sectionCount {
            let base = tableOffset + index * FileLayout.sectionEntrySize
            let kind = file.loadLE(UInt32.self, at: base)
            let flags = file.loadLE(UInt32.self, at: base + 4)
            let offset = file.loadLE(UInt64.self, at: base + 8)
            let length = file.loadLE(UInt64.self, at: base + 16)
            let checksum = file.loadLE(UInt32.self, at: base + 24)
            let known = FileLayout.SectionKind(rawValue: kind)
            let name = known?.name ?? "kind \(kind)"
            let location = "section \(index) (\(name))"
            guard offset <= UInt64(file.count), length <= UInt64(file.count) - offset,
                  offset >= UInt64(tableOffset + tableBytes)
            else {
                throw ModelFormatError(.sectionOutOfRange, at: location, "bytes \(offset)..<\(offset &+ length) lie outside the file's \(file.count) bytes")
            }
            let section = Section(kind: kind, flags: flags, offset: Int(offset), length: Int(length), checksum: checksum)
            if let other = sections.first(where: { $0.kind == kind }) {
                _ = other
                throw ModelFormatError(.malformedSection, at: location, "duplicate \(name) section")
            }
            for other in sections where section.offset < other.offset + other.length && other.offset < section.offset + section.length {
                throw ModelFormatError(.sectionOutOfRange, at: location, "overlaps section of kind \(other.kind)")
            }
            let actual = CRC32.checksum(UnsafeRawBufferPointer(rebasing: file[section.offset..<(section.offset + section.length)]))
            guard actual == checksum else {
                throw ModelFormatError(.checksumMismatch, at: location, "CRC-32 is \(hex(actual)), the table says \(hex(checksum)): the section is corrupted")
            }
            if known == nil && flags & FileLayout.optionalSectionFlag == 0 {
                throw ModelFormatError(.malformedSection, at: location, "unknown required section kind \(kind) (written by a newer BitFleet?)")
            }
            if known == .tensorData, section.offset % FileLayout.alignment != 0 {
                throw ModelFormatError(.malformedSection, at: location, "tensor data starts at \(section.offset), not a multiple of \(FileLayout.alignment)")
            }
            if known != .tensorData && known != nil && section.length > ModelLimits.maxJSONSectionBytes {
                throw ModelFormatError(.tooLarge, at: location, "\(section.length) bytes exceed the limit of \(ModelLimits.maxJSONSectionBytes)")
            }
            sections.append(section)
        }
        return sections
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
    }

    private static func decodeJSON<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer,
                                                 section: FileLayout.SectionKind) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw ModelFormatError(.malformedSection, at: "\(section.name) section", describe(error))
        } catch {
            throw ModelFormatError(.malformedSection, at: "\(section.name) section", "invalid JSON: \(error)")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let components = context.codingPath.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }
            return components.isEmpty ? "top level" : components.joined()
        }
        switch error {
        case .typeMismatch(let type, let context):
            return "at \(path(context)): expected \(type): \(context.debugDescription)"
        case .valueNotFound(let type, let context):
            return "at \(path(context)): missing \(type) value"
        case .keyNotFound(let key, let context):
            return "at \(path(context)): missing key '\(key.stringValue)'"
        case .dataCorrupted(let context):
            return "at \(path(context)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    private static func readTensors(_ entries: [GraphSection.TensorEntry],
                                    from data: UnsafeRawBufferPointer) throws -> [Tensor] {
        guard entries.count <= ModelLimits.maxTensors else {
            throw ModelFormatError(.tooLarge, at: "graph section tensors", "\(entries.count) tensors exceed the limit of \(ModelLimits.maxTensors)")
        }
        var tensors: [Tensor] = []
        tensors.reserveCapacity(entries.count)
        for (index, entry) in entries.enumerated() {
            let location = "tensor \(index)"
            guard !entry.shape.isEmpty, entry.shape.allSatisfy({ (1...ModelLimits.maxDimension).contains($0) }) else {
                throw ModelFormatError(.invalidTensor, at: location, "shape \(entry.shape) has an empty or out-of-range dimension")
            }
            var elements = 1
            for dimension in entry.shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
                guard !overflow, product <= ModelLimits.maxTensorElements else {
                    throw ModelFormatError(.tooLarge, at: location, "shape \(entry.shape) exceeds \(ModelLimits.maxTensorElements) elements")
                }
                elements = product
            }
            let expectedBytes: Int
            switch entry.dtype {
            case .float32: expectedBytes = elements * 4
            case .bits: expectedBytes = BitPacking.wordCount(forBits: elements) * 8
            }
            guard entry.bytes == expectedBytes else {
                throw ModelFormatError(.invalidTensor, at: location, "\(entry.dtype.rawValue) shape \(entry.shape) needs \(expectedBytes) bytes, the table says \(entry.bytes)")
            }
            guard entry.offset >= 0, entry.offset % FileLayout.alignment == 0,
                  entry.offset <= data.count, entry.bytes <= data.count - entry.offset
            else {
                throw ModelFormatError(.sectionOutOfRange, at: location, "\(entry.bytes) bytes at offset \(entry.offset) are misaligned or outside the \(data.count)-byte tensor data section")
            }
            let payload = UnsafeRawBufferPointer(rebasing: data[entry.offset..<(entry.offset + entry.bytes)])
            switch entry.dtype {
            case .float32:
                let values = [Float](unsafeUninitializedCapacity: elements) { buffer, count in
                    for i in 0..<elements { buffer[i] = Float(bitPattern: payload.loadLE(UInt32.self, at: i * 4)) }
                    count = elements
                }
                tensors.append(Tensor(shape: entry.shape, floats: values))
            case .bits:
                let wordCount = entry.bytes / 8
                let dense = [UInt64](unsafeUninitializedCapacity: wordCount) { buffer, count in
                    for i in 0..<wordCount { buffer[i] = payload.loadLE(UInt64.self, at: i * 8) }
                    count = wordCount
                }
                let unused = wordCount * 64 - elements
                if unused > 0, dense[wordCount - 1] >> UInt64(64 - unused) != 0 {
                    throw ModelFormatError(.invalidTensor, at: location, "padding bits after the last of \(elements) binary values are set")
                }
                let rowLength = entry.shape.last!
                let rows = dense.withUnsafeBufferPointer {
                    BitPacking.rows(fromDenseStream: $0, rowLength: rowLength, rows: elements / rowLength)
                }
                tensors.append(Tensor(shape: entry.shape, packedBits: rows))
            }
        }
        return tensors
    }
}

extension UnsafeRawBufferPointer {
    /// Callers check bounds first; this only hides alignment and byte order.
    func loadLE<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count)
        return T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
