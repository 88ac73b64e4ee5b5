import Crypto
@testable import FleetAgent
import FleetKit
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// The agent's chunked download against a blob server that the test plays itself (an
/// injected transport: no socket), so what each request asked and got is exact.
@Suite("Blob downloads")
struct BlobDownloaderTests {
    /// Serves `blob` to Range requests as an HTTP server would, and counts the requests.
    final class RangeServer: HTTPTransport, @unchecked Sendable {
        let blob: Data
        private let lock = NSLock()
        private(set) var ranges: [String] = []
        init(_ blob: Data) { self.blob = blob }

        func send(_ request: URLRequest, timeout: TimeInterval) async throws -> (Data, HTTPURLResponse) {
            let range = request.value(forHTTPHeaderField: "Range") ?? ""
            lock.withLock { ranges.append(range) }
            let bounds = range.dropFirst("bytes=".count).split(separator: "-").compactMap { Int($0) }
            let start = bounds[0], end = min(bounds[1], blob.count - 1)
            let response = HTTPURLResponse(url: request.url!, statusCode: 206, httpVersion: "HTTP/1.1",
                                           headerFields: ["Content-Range": "bytes \(start)-\(end)/\(blob.count)"])!
            return (blob.subdata(in: start..<(end + 1)), response)
        }
    }

    func manifest(for signed: Data) -> DeploymentManifest {
        DeploymentManifest(fleetID: "f", deviceID: "d", sequence: 1, model: "m", version: "v1",
                           sha256: SHA256.hash(data: signed).map { String(format: "%02x", $0) }.joined(), size: signed.count,
                           issuedAt: Date(), blobPath: "/api/v1/blobs/x")
    }

    func downloader(_ server: RangeServer) throws -> BlobDownloader {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("blobs-\(UUID().uuidString.prefix(8))")
        return BlobDownloader(client: FleetHTTPClient(baseURL: URL(string: "http://controller.test")!, token: nil, transport: server),
                              files: try AgentFiles(directory), chunkSize: 4096)
    }

    @Test("the signed blob arrives in Range chunks and is verified")
    func chunks() async throws {
        let blob = Data((0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let server = RangeServer(blob)
        let file = try await downloader(server).download(manifest(for: blob))
        #expect(try Data(contentsOf: file) == blob)
        #expect(server.ranges == ["bytes=0-4095", "bytes=4096-8191", "bytes=8192-9999"])
    }

    @Test("an oversized blob is refused at its first chunk, not after downloading it")
    func oversizedAtFirstChunk() async throws {
        let signed = Data((0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let server = RangeServer(signed + Data(repeating: 0xEE, count: 100_000))  // 100 KB appended
        let error = await #expect(throws: BlobDownloader.Failure.self) { try await downloader(server).download(manifest(for: signed)) }
        #expect(error?.description == "blob size 110000 does not match the manifest's 10000", "\(String(describing: error))")
        #expect(server.ranges == ["bytes=0-4095"], "one request: \(server.ranges)")
    }
}
