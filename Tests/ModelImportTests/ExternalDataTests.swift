import BitModel
import Foundation
@testable import ModelImport
import SwiftProtobuf
import Testing

/// Weights in `.onnx.data` files beside the model (PyTorch's dynamo exporter): read from the
/// model's folder only, refused with a clear error when a location leads elsewhere.
@Suite("External data")
struct ExternalDataTests {
    static let source = "torch_xnor_dynamo_opset18"

    /// A fresh folder holding a copy of the dynamo fixture, its ONNX proto and data file.
    func workspace() throws -> (folder: URL, model: Onnx_ModelProto, data: Data) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bitfleet-external-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let model = try Onnx_ModelProto(serializedBytes: try Data(contentsOf: fixture("\(Self.source).onnx")))
        let data = try Data(contentsOf: fixture("\(Self.source).onnx.data"))
        try data.write(to: folder.appendingPathComponent("\(Self.source).onnx.data"))
        return (folder, model, data)
    }

    func convert(_ model: Onnx_ModelProto, in folder: URL) throws -> ConversionResult {
        let url = folder.appendingPathComponent("model.onnx")
        try model.serializedData().write(to: url)
        return try ONNXConverter.convert(contentsOf: url)
    }

    func error(_ model: Onnx_ModelProto, in folder: URL) throws -> ImportError {
        do {
            _ = try convert(model, in: folder)
        } catch let error as ImportError {
            return error
        }
        Issue.record("the model was accepted")
        return ImportError("", "")
    }

    /// The model with the first external tensor's `key` set to `value`.
    func withExternal(_ model: Onnx_ModelProto, _ key: String, _ value: String) -> (Onnx_ModelProto, String) {
        var model = model
        let index = model.graph.initializer.firstIndex { $0.dataLocation == .external }!
        var entries = model.graph.initializer[index].externalData.filter { $0.key != key }
        var entry = Onnx_StringStringEntryProto()
        entry.key = key
        entry.value = value
        entries.append(entry)
        model.graph.initializer[index].externalData = entries
        return (model, model.graph.initializer[index].name)
    }

    @Test("the fixture really keeps its weights outside, and converts from its folder")
    func reads() throws {
        let (folder, model, _) = try workspace()
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(model.graph.initializer.filter { $0.dataLocation == .external }.count >= 3)
        let result = try convert(model, in: folder)
        #expect(result.notes.contains { $0.contains("external data: \(Self.source).onnx.data") })
    }

    @Test("tensors spread over several files are read from each")
    func severalFiles() throws {
        let (folder, original, data) = try workspace()
        defer { try? FileManager.default.removeItem(at: folder) }
        var model = original
        let index = model.graph.initializer.firstIndex { $0.dataLocation == .external }!
        var entries: [String: String] = [:]
        for entry in model.graph.initializer[index].externalData { entries[entry.key] = entry.value }
        let offset = Int(entries["offset"] ?? "0")!, length = Int(entries["length"]!)!
        try data.subdata(in: offset..<(offset + length)).write(to: folder.appendingPathComponent("second.data"))
        (model, _) = withExternal(model, "location", "second.data")
        (model, _) = withExternal(model, "offset", "0")
        let result = try convert(model, in: folder)
        #expect(result.notes.contains { $0.contains("second.data") && $0.contains("\(Self.source).onnx.data") }, "\(result.notes)")
        let reference = try ONNXConverter.convert(contentsOf: fixture("\(Self.source).onnx")).model
        #expect(result.model.tensors == reference.tensors)
    }

    @Test("bytes alone are refused with what to do instead")
    func bytesAlone() throws {
        let data = try Data(contentsOf: fixture("\(Self.source).onnx"))
        #expect {
            try ONNXConverter.convert(data: data)
        } throws: { error in
            let message = (error as? ImportError)?.description ?? ""
            return message.contains("initializer '") && message.contains("external file ('\(Self.source).onnx.data')") && message.contains("fleetctl model push")
        }
    }

    @Test("locations outside the model's folder are refused", arguments: ["../outside.data", "/etc/passwd", "sub/../../outside.data", "./", ""])
    func escapes(location: String) throws {
        let (folder, model, _) = try workspace()
        defer { try? FileManager.default.removeItem(at: folder) }
        let (changed, tensor) = withExternal(model, "location", location)
        let failure = try error(changed, in: folder)
        #expect(failure.location == "initializer '\(tensor)'")
        #expect(failure.message.contains(location.isEmpty ? "without a location" : "not a relative path inside the model's folder"), "\(failure)")
    }

    @Test("a symbolic link leading out of the folder is refused, one inside is followed")
    func links() throws {
        let (folder, model, data) = try workspace()
        defer { try? FileManager.default.removeItem(at: folder) }
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("bitfleet-outside-\(UUID().uuidString).data")
        try data.write(to: outside)
        defer { try? FileManager.default.removeItem(at: outside) }
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("out.data"), withDestinationURL: outside)
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("in.data"),
                                                   withDestinationURL: folder.appendingPathComponent("\(Self.source).onnx.data"))
        var escaping = model, inside = model
        for index in model.graph.initializer.indices where model.graph.initializer[index].dataLocation == .external {
            for entry in model.graph.initializer[index].externalData.indices where model.graph.initializer[index].externalData[entry].key == "location" {
                escaping.graph.initializer[index].externalData[entry].value = "out.data"
                inside.graph.initializer[index].externalData[entry].value = "in.data"
            }
        }
        let failure = try error(escaping, in: folder)
        #expect(failure.message.contains("'out.data' leads outside the model's folder"), "\(failure)")
        _ = try convert(inside, in: folder)
    }

    @Test("offsets and lengths past the file end, bad numbers and missing files are refused")
    func bounds() throws {
        let (folder, model, data) = try workspace()
        defer { try? FileManager.default.removeItem(at: folder) }
        let (pastEnd, _) = withExternal(model, "offset", "\(data.count - 2)")
        #expect(try error(pastEnd, in: folder).message.contains("past the end of the file (\(data.count) bytes)"))
        let (negative, _) = withExternal(model, "offset", "-4")
        #expect(try error(negative, in: folder).message.contains("offset '-4' is not a non-negative integer"))
        let (huge, _) = withExternal(model, "offset", "\(Int.max)")
        #expect(try error(huge, in: folder).message.contains("past the end"))
        let (length, _) = withExternal(model, "length", "3")
        #expect(try error(length, in: folder).message.contains("length 3 does not match"))
        let (missing, _) = withExternal(model, "location", "nothing-here.data")
        #expect(try error(missing, in: folder).message.contains("'nothing-here.data' does not exist beside the model"))
    }

    @Test("push embeds the external data: the self-contained bytes convert to the same model")
    func selfContained() throws {
        let (folder, model, _) = try workspace()
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appendingPathComponent("model.onnx")
        try model.serializedData().write(to: url)
        #expect(ONNXModelFile.externalDataLocations(try Data(contentsOf: url)) == ["\(Self.source).onnx.data"])
        let embedded = try ONNXModelFile.selfContained(contentsOf: url)
        #expect(embedded.embedded == ["\(Self.source).onnx.data"])
        #expect(ONNXModelFile.externalDataLocations(embedded.data).isEmpty)
        let fromBytes = try ONNXConverter.convert(data: embedded.data).model
        let fromFolder = try ONNXConverter.convert(contentsOf: url).model
        #expect(fromBytes.layers == fromFolder.layers)
        #expect(fromBytes.tensors == fromFolder.tensors)

        let (escaping, _) = withExternal(model, "location", "../x.data")
        try escaping.serializedData().write(to: url)
        #expect(throws: ImportError.self) { try ONNXModelFile.selfContained(contentsOf: url) }
    }
}
