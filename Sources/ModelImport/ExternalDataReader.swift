import Foundation

/// Reads tensors that an ONNX model keeps in files beside it (ONNX "external data", what
/// PyTorch's dynamo exporter writes as `model.onnx.data`).
///
/// Only files inside the model's folder are read: a location must be a relative path
/// without `..`, must not resolve (through symbolic links) to a place outside the folder,
/// and offset + length must lie inside the file. A model file is untrusted input, and
/// `../../etc/shadow` or a link to it must not become a tensor.
final class ExternalDataReader {
    let directory: URL
    private let resolvedDirectory: String
    private var files: [String: (handle: FileHandle, size: Int)] = [:]
    /// Every file read, relative to the folder (for `fleetctl model push`, and tests).
    private(set) var locationsRead: [String] = []

    init(directory: URL) {
        self.directory = directory
        resolvedDirectory = directory.standardizedFileURL.resolvingSymlinksInPath().path
    }

    deinit {
        for file in files.values { try? file.handle.close() }
    }

    static func describe(_ tensor: Onnx_TensorProto) -> String {
        let location = tensor.externalData.first { $0.key == "location" }?.value ?? "no location"
        return "'\(location)'"
    }

    /// The `bytes` bytes of `tensor`, from its external file.
    func read(_ tensor: Onnx_TensorProto, bytes: Int, location: String) throws -> Data {
        var entries: [String: String] = [:]
        for entry in tensor.externalData { entries[entry.key] = entry.value }
        guard let path = entries["location"], !path.isEmpty else {
            throw ImportError(location, "external data without a location")
        }
        func number(_ key: String) throws -> Int? {
            guard let text = entries[key] else { return nil }
            guard let value = Int(text), value >= 0 else {
                throw ImportError(location, "external data \(key) '\(text)' is not a non-negative integer")
            }
            return value
        }
        let offset = try number("offset") ?? 0
        let length = try number("length")
        if let length, length != bytes {
            throw ImportError(location, "external data length \(length) does not match the \(bytes) bytes its shape and type need")
        }
        let file = try open(path, location: location)
        let (end, overflow) = offset.addingReportingOverflow(bytes)
        guard !overflow, end <= file.size else {
            throw ImportError(location, "external data '\(path)' offset \(offset) + \(bytes) bytes is past the end of the file (\(file.size) bytes)")
        }
        do {
            try file.handle.seek(toOffset: UInt64(offset))
            let data = try file.handle.read(upToCount: bytes) ?? Data()
            guard data.count == bytes else {
                throw ImportError(location, "external data '\(path)': read \(data.count) of \(bytes) bytes")
            }
            return data
        } catch let error as ImportError {
            throw error
        } catch {
            throw ImportError(location, "cannot read external data '\(path)': \(error.localizedDescription)")
        }
    }

    private func open(_ path: String, location: String) throws -> (handle: FileHandle, size: Int) {
        if let file = files[path] { return file }
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        guard !path.hasPrefix("/"), !path.contains("\\"), !path.contains("\0"),
              !components.contains(where: { $0 == ".." || $0.isEmpty }) else {
            throw ImportError(location, "external data location '\(path)' is not a relative path inside the model's folder (no absolute paths, no '..')")
        }
        let url = directory.appendingPathComponent(path)
        let resolved = url.standardizedFileURL.resolvingSymlinksInPath().path
        guard resolved.hasPrefix(resolvedDirectory.hasSuffix("/") ? resolvedDirectory : resolvedDirectory + "/") else {
            throw ImportError(location, "external data location '\(path)' leads outside the model's folder (to \(resolved))")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: resolved, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw ImportError(location, "external data file '\(path)' does not exist beside the model (looked in \(directory.path))")
        }
        guard let handle = FileHandle(forReadingAtPath: resolved) else {
            throw ImportError(location, "cannot open external data file '\(path)'")
        }
        let size: Int
        do {
            size = Int(try handle.seekToEnd())
        } catch {
            throw ImportError(location, "cannot read external data file '\(path)': \(error.localizedDescription)")
        }
        files[path] = (handle, size)
        locationsRead.append(path)
        return (handle, size)
    }
}
