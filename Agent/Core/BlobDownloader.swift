import FleetKit
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Downloads a model blob in Range-requested chunks appended to `downloads/<sha>.part`, so
/// progress survives dropped connections, timeouts and restarts; then checks size and
/// SHA-256 against the signed manifest. Any HTTP server or cache can serve the blob:
/// integrity comes from the manifest, not the transport.
struct BlobDownloader: Sendable {
    let client: FleetHTTPClient
    let files: AgentFiles
    var chunkSize = 256 * 1024

    enum Failure: Error, CustomStringConvertible {
        case sizeMismatch(expected: Int, got: Int)
        case digestMismatch(expected: String, got: String)
        case server(String)

        var description: String {
            switch self {
            case .sizeMismatch(let expected, let got): return "blob size \(got) does not match the manifest's \(expected)"
            case .digestMismatch(let expected, let got): return "blob sha256 \(got.prefix(12))… does not match the manifest's \(expected.prefix(12))…"
            case .server(let why): return why
            }
        }
    }

    /// Seconds a download keeps coming back to a busy server (503 + Retry-After) before
    /// it gives up; a whole fleet downloading at once is served in turns, not failed.
    var busyPatience: TimeInterval = 900

    /// One Range request, retried with backoff when the connection fails (cut, reset,
    /// timeout), and after the server's Retry-After (plus jitter, so refused devices do not
    /// return together) while it answers busy; any other HTTP error answer is final.
    /// Completed chunks are already on disk, so a retry only repeats the chunk that was cut.
    private func fetchChunk(_ path: String, from start: Int, to end: Int) async throws -> (Data, HTTPURLResponse) {
        var attempt = 0
        var waitedForBusyServer: TimeInterval = 0
        while true {
            do {
                return try await client.send("GET", path, headers: ["Range": "bytes=\(start)-\(end)"])
            } catch let error as FleetClientError where error.status == nil && attempt < 5 {
                attempt += 1
                try await Task.sleep(for: .milliseconds(200 << attempt))
            } catch let error as FleetClientError where error.isBusy && waitedForBusyServer < busyPatience {
                let wait = FleetClientError.busyDelay(retryAfter: error.retryAfter)
                waitedForBusyServer += wait
                try await Task.sleep(for: .milliseconds(Int(wait * 1000)))
            }
        }
    }

    /// Returns the verified file (still named .part; the installer renames it). A write
    /// that fails for lack of space removes the .part file, so a full disk does not stay
    /// full because of a download that cannot finish.
    func download(_ manifest: DeploymentManifest) async throws -> URL {
        let part = files.partialURL(sha256: manifest.sha256)
        do {
            return try await fetch(manifest, into: part)
        } catch where DiskSpace.isNoSpace(error) {
            try? FileManager.default.removeItem(at: part)
            throw error
        }
    }

    private func fetch(_ manifest: DeploymentManifest, into part: URL) async throws -> URL {
        if !FileManager.default.fileExists(atPath: part.path) {
            guard FileManager.default.createFile(atPath: part.path, contents: nil) else {
                throw CocoaError(.fileWriteOutOfSpace, userInfo: [NSFilePathErrorKey: part.path,
                    NSUnderlyingErrorKey: NSError(domain: NSPOSIXErrorDomain, code: Int(errno))])
            }
        }
        var have = (try FileManager.default.attributesOfItem(atPath: part.path)[.size] as? Int) ?? 0
        if have > manifest.size {
            try Data().write(to: part)
            have = 0
        }
        while have < manifest.size {
            let end = min(have + chunkSize, manifest.size) - 1
            let (data, response) = try await fetchChunk(manifest.blobPath, from: have, to: end)
            let handle = try FileHandle(forWritingTo: part)
            defer { try? handle.close() }
            if response.statusCode == 200 {
                // No Range support: the body is the whole blob; it must be exactly the signed size.
                guard data.count == manifest.size else { throw Failure.sizeMismatch(expected: manifest.size, got: data.count) }
                try handle.truncate(atOffset: 0)
                try handle.write(contentsOf: data)
                try handle.synchronize()
                have = data.count
                break
            }
            guard response.statusCode == 206, !data.isEmpty, data.count <= end - have + 1 else {
                throw Failure.server("unexpected blob response \(response.statusCode) with \(data.count) bytes")
            }
            // The server names the blob's full size; one that is not the signed size is the
            // wrong (or an oversized) blob, refused at its first chunk instead of its last.
            if let total = Self.totalSize(response), total != manifest.size {
                throw Failure.sizeMismatch(expected: manifest.size, got: total)
            }
            try handle.seek(toOffset: UInt64(have))
            let half = data.count / 2
            try handle.write(contentsOf: data.prefix(half))
            FailPoint.hit(.chunkHalfWritten)
            try handle.write(contentsOf: data.dropFirst(half))
            FailPoint.hit(.chunkWritten)
            try handle.synchronize()
            FailPoint.hit(.chunkSynced)
            have += data.count
        }
        guard have == manifest.size else {
            try? FileManager.default.removeItem(at: part)
            throw Failure.sizeMismatch(expected: manifest.size, got: have)
        }
        let digest = try FileDigest.sha256Hex(of: part)
        guard digest == manifest.sha256.lowercased() else {
            try? FileManager.default.removeItem(at: part)
            throw Failure.digestMismatch(expected: manifest.sha256, got: digest)
        }
        return part
    }

    /// The total from `Content-Range: bytes a-b/total`, if the server sent one.
    static func totalSize(_ response: HTTPURLResponse) -> Int? {
        guard let header = response.value(forHTTPHeaderField: "Content-Range"), let slash = header.lastIndex(of: "/") else { return nil }
        return Int(header[header.index(after: slash)...].trimmingCharacters(in: .whitespaces))
    }
}
