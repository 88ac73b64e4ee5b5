import BitModel
import Foundation
import FuzzSupport

// Fuzzes the .bnn reader and validator (ModelReader.read -> Model.validate), the path every
// model upload to the controller and every install on an agent takes.
//
// Two input forms, told apart by the first bytes:
// - a raw file (starts with the .bnn magic): read as is, and read again with the header's
//   size and every section checksum repaired, so mutations get past the CRC-32 check to the
//   JSON and tensor parsing behind it;
// - anything else: "metadata JSON \0 graph JSON \0 self-test JSON \0 tensor data", which
//   the harness assembles into a well-formed container first, so the fuzzer works on the
//   semantic checks directly (an empty self-test part means no self-test section).
//
// Contract: any input either reads (and then writes and re-reads to the same bytes) or
// throws a ModelFormatError. A crash, trap, hang, other error type or ASan report is a bug.

/// One input (libFuzzer calls this through Fuzz.main in main.swift).
func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = Fuzz.data(start, count)
    if input.starts(with: BNNContainer.magic) {
        check(input)
        if let repaired = BNNContainer.repaired(input), repaired != input { check(repaired) }
    } else {
        check(BNNContainer.assemble(BNNContainer.splitStructured(input)))
    }
    return 0
}

func check(_ file: Data) {
    let model: Model
    do {
        model = try ModelReader.read(file)
    } catch is ModelFormatError {
        return
    } catch {
        Fuzz.fail("ModelReader threw \(type(of: error)), not ModelFormatError: \(error)")
    }
    // A model the reader accepts must be usable: statistics (the controller computes them on
    // upload) and a write/read round trip that is stable byte for byte.
    do {
        _ = try ModelStatistics(model)
        let written = try ModelWriter.data(for: model)
        let reread = try ModelReader.read(written)
        guard try ModelWriter.data(for: reread) == written else { Fuzz.fail("write/read/write is not stable") }
    } catch {
        Fuzz.fail("an accepted model failed statistics or the write/read round trip: \(error)")
    }
}

/// The container layout of docs/MODEL_FORMAT.md, re-implemented here so the harness can
/// repair and assemble files without reaching into BitModel's internals.
enum BNNContainer {
    static let magic: [UInt8] = [0x89, 0x42, 0x4E, 0x4E, 0x0D, 0x0A, 0x1A, 0x0A]
    static let headerSize = 64
    static let entrySize = 32

    static func load<T: FixedWidthInteger>(_ data: Data, _ offset: Int, as: T.Type) -> T? {
        let start = data.startIndex + offset
        guard offset >= 0, offset + MemoryLayout<T>.size <= data.count else { return nil }
        var value = T.zero
        withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: data[start..<(start + MemoryLayout<T>.size)]) }
        return T(littleEndian: value)
    }

    static func store<T: FixedWidthInteger>(_ value: T, into data: inout Data, at offset: Int) {
        let start = data.startIndex + offset
        withUnsafeBytes(of: value.littleEndian) { data.replaceSubrange(start..<(start + MemoryLayout<T>.size), with: $0) }
    }

    /// The input with the header's file size set to its length and every in-range section
    /// entry's CRC-32 recomputed; nil when there is no header or section table to repair.
    static func repaired(_ input: Data) -> Data? {
        var file = Data(input)
        guard file.count >= headerSize, let sections = load(file, 24, as: UInt32.self),
              let table = load(file, 32, as: UInt64.self), table < UInt64(file.count) else { return nil }
        store(UInt64(file.count), into: &file, at: 16)
        for index in 0..<Int(min(sections, 32)) {
            let base = Int(table) + index * entrySize
            guard let offset = load(file, base + 8, as: UInt64.self), let length = load(file, base + 16, as: UInt64.self),
                  base + 28 <= file.count, offset <= UInt64(file.count), length <= UInt64(file.count) - offset else { continue }
            let crc = CRC32.checksum(file[Int(offset)..<Int(offset + length)])
            store(crc, into: &file, at: base + 24)
        }
        return file
    }

    /// metadata, graph, self tests, tensor data (the last may contain zero bytes).
    static func splitStructured(_ input: Data) -> [(kind: UInt32, bytes: Data)] {
        var parts: [Data] = []
        var rest = input[...]
        while parts.count < 3, let zero = rest.firstIndex(of: 0) {
            parts.append(Data(rest[rest.startIndex..<zero]))
            rest = rest[(zero + 1)...]
        }
        parts.append(Data(rest))
        while parts.count < 4 { parts.insert(Data(), at: parts.count - 1) }
        var sections: [(UInt32, Data)] = [(1, parts[0]), (2, parts[1])]
        if !parts[2].isEmpty { sections.append((4, parts[2])) }
        sections.append((3, parts[3]))
        return sections
    }

    /// The sections of a well-formed file (for turning valid models into structured seeds).
    static func sections(of file: Data) -> [(kind: UInt32, bytes: Data)] {
        guard let count = load(file, 24, as: UInt32.self), let table = load(file, 32, as: UInt64.self) else { return [] }
        return (0..<Int(count)).compactMap { index in
            let base = Int(table) + index * entrySize
            guard let kind = load(file, base, as: UInt32.self), let offset = load(file, base + 8, as: UInt64.self),
                  let length = load(file, base + 16, as: UInt64.self) else { return nil }
            return (kind, file.subdata(in: Int(offset)..<Int(offset + length)))
        }
    }

    /// Header, section table, sections; tensor data (kind 3) aligned to 64 bytes.
    static func assemble(_ sections: [(kind: UInt32, bytes: Data)]) -> Data {
        var cursor = headerSize + sections.count * entrySize
        var offsets: [Int] = []
        for (kind, bytes) in sections {
            if kind == 3 { cursor = (cursor + 63) / 64 * 64 }
            offsets.append(cursor)
            cursor += bytes.count
        }
        var file = Data(count: cursor)
        file.replaceSubrange(0..<8, with: magic)
        store(UInt16(1), into: &file, at: 8)
        store(UInt16(0), into: &file, at: 10)
        store(UInt32(headerSize), into: &file, at: 12)
        store(UInt64(cursor), into: &file, at: 16)
        store(UInt32(sections.count), into: &file, at: 24)
        store(UInt64(headerSize), into: &file, at: 32)
        for (index, (kind, bytes)) in sections.enumerated() {
            let base = headerSize + index * entrySize
            store(kind, into: &file, at: base)
            store(UInt64(offsets[index]), into: &file, at: base + 8)
            store(UInt64(bytes.count), into: &file, at: base + 16)
            store(CRC32.checksum(bytes), into: &file, at: base + 24)
            file.replaceSubrange(offsets[index]..<(offsets[index] + bytes.count), with: bytes)
        }
        return file
    }

    static func structured(_ file: Data) -> Data {
        let byKind = Dictionary(sections(of: file).map { ($0.kind, $0.bytes) }, uniquingKeysWith: { a, _ in a })
        var out = Data()
        for kind: UInt32 in [1, 2, 4] {
            out.append(byKind[kind] ?? Data())
            out.append(0)
        }
        out.append(byKind[3] ?? Data())
        return out
    }
}

/// Seeds: small valid models made with BitModel's own builder and writer (every layer
/// kind, every tensor kind, labels, preprocessing, self tests), their structured forms,
/// truncations and a few classic corruptions.
enum BNNSeeds {
    static func models() -> [(String, Model)] {
        var random = SeededGenerator(seed: 7)
        var result: [(String, Model)] = []

        // Conv stem, binary conv, max pool, flatten, binary dense; labels, preprocessing, self test.
        do {
            var b = ModelBuilder()
            var x = b.conv2D(b.input, inChannels: 1, outChannels: 4, window: Window2D(kernel: 3, padding: 1),
                             weights: random.floats(36), bias: random.floats(4), name: "stem")
            x = b.binarize(x, name: "sign1")
            x = b.binaryConv2D(x, inChannels: 4, outChannels: 6, window: Window2D(kernel: 3, stride: 2, padding: 1),
                               padValue: .zero, weights: random.floats(6 * 9 * 4), multiplier: random.floats(6),
                               bias: random.floats(6), name: "conv2")
            x = b.append(.pool2D(Pool2DLayer(kind: .max, window: Window2D(kernel: 2, stride: 2))), inputs: [x], name: "pool")
            x = b.append(.flatten, inputs: [x], name: "flatten")
            x = b.binaryDense(b.binarize(x, name: "sign2"), inFeatures: 6 * 4, outFeatures: 3, weights: random.floats(72),
                              multiplier: random.floats(3), bias: random.floats(3), name: "fc")
            b.addSelfTest(input: random.floats(64), inputShape: [1, 1, 8, 8], expected: random.floats(3), outputShape: [1, 3])
            let metadata = ModelMetadata(
                name: "seed-cnn", version: "v1", description: "fuzz seed", producer: "fuzz-bnn",
                input: TensorSpec(name: "input", shape: [1, 1, 8, 8], layout: .nchw),
                output: TensorSpec(name: "logits", shape: [1, 3], layout: .nc),
                preprocessing: Preprocessing(scale: 1 / 255, mean: [0.5], std: [0.25]),
                labels: ["a", "b", "c"], properties: ["accuracy": "0.9"])
            result.append(("cnn", b.build(metadata: metadata, output: x)))
        }

        // Every other op: NHWC input, +1/-1 padding, average pool with padding, affine,
        // PReLU, clip, relu, add, concat, global pool, sign, dense, softmax.
        do {
            var b = ModelBuilder()
            let c = 3
            var x = b.channelAffine(b.input, multiplier: random.floats(c), bias: random.floats(c), name: "bn")
            let bits = b.binarize(x, name: "sign")
            let p = b.binaryConv2D(bits, inChannels: c, outChannels: c, window: Window2D(kernel: 3, padding: 1),
                                   padValue: .plusOne, weights: random.floats(c * 9 * c), name: "pconv")
            let m = b.binaryConv2D(bits, inChannels: c, outChannels: c, window: Window2D(kernel: 3, padding: 1),
                                   padValue: .minusOne, weights: random.floats(c * 9 * c), name: "mconv")
            x = b.append(.add, inputs: [p, m], name: "add")
            x = b.prelu(x, slope: random.floats(c), name: "prelu")
            x = b.append(.clip(ClipLayer(min: -1, max: 1)), inputs: [x], name: "clip")
            let y = b.append(.relu, inputs: [x], name: "relu")
            x = b.append(.concat, inputs: [x, y], name: "concat")
            x = b.append(.pool2D(Pool2DLayer(kind: .average, window: Window2D(kernel: 3, stride: 2, padding: 1),
                                             countIncludesPadding: true)), inputs: [x], name: "avg")
            x = b.conv2D(x, inChannels: 2 * c, outChannels: 4, window: Window2D(kernel: 1), weights: random.floats(8 * c), name: "proj")
            x = b.append(.globalAveragePool, inputs: [x], name: "gap")
            x = b.append(.sign, inputs: [x], name: "sign2")
            x = b.dense(x, inFeatures: 4, outFeatures: 2, weights: random.floats(8), bias: random.floats(2), name: "fc")
            x = b.append(.softmax, inputs: [x], name: "softmax")
            let metadata = ModelMetadata(
                name: "seed-ops", input: TensorSpec(name: "x", shape: [1, 5, 5, c], layout: .nhwc),
                output: TensorSpec(name: "y", shape: [1, 2], layout: .nc))
            result.append(("ops", b.build(metadata: metadata, output: x)))
        }

        // An MLP on an NC input; a row length that is not a multiple of 64.
        do {
            var b = ModelBuilder()
            var x = b.binarize(b.input, name: "sign")
            x = b.binaryDense(x, inFeatures: 70, outFeatures: 5, weights: random.floats(350), name: "fc1")
            let metadata = ModelMetadata(name: "seed-mlp", input: TensorSpec(name: "x", shape: [1, 70], layout: .nc),
                                         output: TensorSpec(name: "y", shape: [1, 5], layout: .nc))
            result.append(("mlp", b.build(metadata: metadata, output: x)))
        }

        result.append(("conv3x3", SyntheticModels.binaryConvLayer(size: 5, channels: 8, seed: 3)))
        return result
    }

    static func write(_ seeds: SeedWriter) throws {
        for (name, model) in models() {
            let file = try ModelWriter.data(for: model)
            try seeds.write("valid-\(name).bnn", file)
            try seeds.write("structured-\(name)", BNNContainer.structured(file))
        }
        let file = try ModelWriter.data(for: models()[0].1)
        for length in [0, 7, 8, 24, 63, 64, 100, 200, file.count / 2, file.count - 1] {
            try seeds.write("truncated-\(length).bnn", file.prefix(length))
        }
        var badCRC = file
        badCRC[badCRC.count - 1] ^= 0x40
        try seeds.write("bad-crc.bnn", badCRC)
        var badVersion = file
        badVersion[8] = 2
        try seeds.write("bad-version.bnn", badVersion)
        var hugeTable = file
        BNNContainer.store(UInt32(32), into: &hugeTable, at: 24)
        try seeds.write("many-sections.bnn", hugeTable)
    }
}
