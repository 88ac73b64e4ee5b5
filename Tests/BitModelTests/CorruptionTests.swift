import Foundation
import Testing
@testable import BitModel

/// Damaged files of every kind: each must produce a ModelFormatError that says what and
/// where, never a crash, a hang or an out-of-bounds read.
@Suite("Reading damaged files")
struct CorruptionTests {
    let valid: Data = try! ModelWriter.data(for: sampleModel())

    func readError(_ data: Data) -> ModelFormatError? {
        do {
            _ = try ModelReader.read(data)
            return nil
        } catch let error as ModelFormatError {
            return error
        } catch {
            Issue.record("unexpected error type \(type(of: error)): \(error)")
            return nil
        }
    }

    @Test("every truncation is reported as such")
    func truncation() {
        // Every length, not a sample: a reader that trusted one field would accept just the
        // prefixes ending inside it. The sample model is small enough to read them all.
        #expect(valid.count > 1000, "a model with every section")
        for length in 0..<valid.count {
            let error = readError(valid.prefix(length))
            #expect(error != nil, "prefix of \(length) bytes was accepted")
            if length >= 16, let error { #expect(error.code == .truncated, "\(length): \(error)") }
        }
    }

    @Test("wrong magic and version")
    func header() {
        var data = valid
        data[1] = UInt8(ascii: "X")
        #expect(readError(data)?.code == .badMagic)
        #expect(readError(Data("hello, this is a text file and not a model at all, not even close.".utf8))?.code == .badMagic)
        data = valid
        data[8] = 2
        let error = readError(data)
        #expect(error?.code == .unsupportedVersion)
        #expect(error?.description.contains("2.0") == true)
    }

    @Test("section offsets and lengths outside the file")
    func sectionTable() {
        for field in [8, 16] {
            var data = valid
            data.replaceSubrange((64 + field)..<(64 + field + 8), with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Data($0) })
            #expect(readError(data)?.code == .sectionOutOfRange, "field \(field)")
        }
        var data = valid
        data.replaceSubrange(24..<28, with: withUnsafeBytes(of: UInt32(100_000).littleEndian) { Data($0) })
        #expect(readError(data)?.code == .badHeader)
    }

    /// Rebuilds the file with `edit` applied to the graph section's JSON (checksums
    /// recomputed), so the semantic checks behind the checksum are what is tested.
    func withGraph(_ edit: (inout [String: Any]) -> Void) throws -> Data {
        let sectionCount = valid.withUnsafeBytes { Int($0.loadLE(UInt32.self, at: 24)) }
        var sections: [(FileLayout.SectionKind, Data)] = []
        for index in 0..<sectionCount {
            let base = 64 + index * 32
            let (kind, offset, length) = valid.withUnsafeBytes { raw in
                (raw.loadLE(UInt32.self, at: base), Int(raw.loadLE(UInt64.self, at: base + 8)), Int(raw.loadLE(UInt64.self, at: base + 16)))
            }
            var bytes = valid.subdata(in: offset..<(offset + length))
            if kind == FileLayout.SectionKind.graph.rawValue {
                var json = try JSONSerialization.jsonObject(with: bytes) as! [String: Any]
                edit(&json)
                bytes = try JSONSerialization.data(withJSONObject: json)
            }
            sections.append((FileLayout.SectionKind(rawValue: kind)!, bytes))
        }
        return ModelWriter.assemble(sections)
    }

    @Test("inconsistent shapes, absurd sizes and bad references name the layer or tensor")
    func semanticErrors() throws {
        var tensors: [[String: Any]] = []
        let wrongShape = try withGraph { graph in
            tensors = graph["tensors"] as! [[String: Any]]
            var layers = graph["layers"] as! [[String: Any]]
            var attributes = layers[2]["attributes"] as! [String: Any]
            attributes["outChannels"] = 71
            layers[2]["attributes"] = attributes
            graph["layers"] = layers
        }
        let shapeError = readError(wrongShape)
        #expect(shapeError?.code == .invalidGraph)
        #expect(shapeError?.location.contains("conv2") == true, "\(String(describing: shapeError))")

        let absurd = try withGraph { graph in
            var entries = graph["tensors"] as! [[String: Any]]
            entries[0]["shape"] = [1 << 20, 1 << 20, 1 << 20]
            graph["tensors"] = entries
        }
        let sizeError = readError(absurd)
        #expect(sizeError?.code == .tooLarge || sizeError?.code == .invalidTensor, "\(String(describing: sizeError))")
        #expect(sizeError?.location == "tensor 0")

        let outside = try withGraph { graph in
            var entries = graph["tensors"] as! [[String: Any]]
            entries[1]["offset"] = 1 << 30
            graph["tensors"] = entries
        }
        #expect(readError(outside)?.code == .sectionOutOfRange)
        #expect(!tensors.isEmpty)

        let cycle = try withGraph { graph in
            var layers = graph["layers"] as! [[String: Any]]
            layers[1]["inputs"] = [3]
            graph["layers"] = layers
        }
        #expect(readError(cycle)?.location.hasPrefix("layer 1") == true)

        let unknownOp = try withGraph { graph in
            var layers = graph["layers"] as! [[String: Any]]
            layers[4]["op"] = "teleport"
            graph["layers"] = layers
        }
        let opError = readError(unknownOp)
        #expect(opError?.code == .malformedSection)
        #expect(opError?.detail.contains("teleport") == true)
        #expect(opError?.detail.contains("[4]") == true, "\(String(describing: opError))")
    }

    /// Thousands of seeded random corruptions: byte flips anywhere, random splices,
    /// truncations, garbage appended. The reader must throw or return a valid model.
    @Test("thousands of random corruptions never crash the reader")
    func randomCorruption() {
        var random = SeededGenerator(seed: 2024)
        var rejected = 0
        let trials = 4000
        for trial in 0..<trials {
            var data = valid
            switch trial % 4 {
            case 0:
                for _ in 0..<Int.random(in: 1...8, using: &random) {
                    let i = Int.random(in: 0..<data.count, using: &random)
                    data[i] ^= UInt8.random(in: 1...255, using: &random)
                }
            case 1:
                let i = Int.random(in: 0..<data.count, using: &random)
                data = data.prefix(i) + Data((0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) })
            case 2:
                // Corrupt only the header and section table, where no checksum protects.
                let i = Int.random(in: 0..<(64 + 4 * 32), using: &random)
                data[i] = UInt8.random(in: 0...255, using: &random)
            default:
                data.append(Data(repeating: UInt8.random(in: 0...255, using: &random), count: Int.random(in: 1...100, using: &random)))
            }
            if let model = try? ModelReader.read(data) {
                #expect((try? model.validate()) != nil)
            } else {
                rejected += 1
            }
        }
        #expect(rejected > trials * 3 / 4, "most corruptions must be detected, \(rejected) of \(trials) were")
    }
}
