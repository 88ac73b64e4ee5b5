import FleetKit
import Foundation
import BitModel

/// Where model blobs live, addressed by SHA-256. Behind a protocol so replicated
/// controllers can keep blobs in an HTTP cache or S3-compatible store instead.
protocol BlobStore: Sendable {
    func put(_ data: Data) throws -> String
    func url(for sha256: String) -> URL?
    func size(of sha256: String) -> Int?
}

/// Blobs as files named by their SHA-256 under one directory, written atomically.
struct FileBlobStore: BlobStore {
    let directory: URL

    func put(_ data: Data) throws -> String {
        let digest = Secrets.sha256Hex(data)
        let target = directory.appendingPathComponent(digest)
        if !FileManager.default.fileExists(atPath: target.path) {
            try AtomicFile.write(data, to: target)
        }
        return digest
    }

    func url(for sha256: String) -> URL? {
        guard sha256.count == 64, sha256.allSatisfy(\.isHexDigit) else { return nil }
        let url = directory.appendingPathComponent(sha256.lowercased())
        return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }

    /// Removes what uploads killed mid-write left behind: AtomicFile's temporaries
    /// (`.<sha>.tmp-<pid>-<n>`). Blobs become visible only by rename once complete, so a
    /// temporary is never a model; call this at startup, before anything writes blobs.
    func removeTemporaryFiles() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let stale = names.filter { $0.hasPrefix(".") && $0.contains(".tmp-") }
        for name in stale { try? FileManager.default.removeItem(at: directory.appendingPathComponent(name)) }
        return stale
    }

    func size(of sha256: String) -> Int? {
        guard let url = url(for: sha256) else { return nil }
        return (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? nil
    }
}
