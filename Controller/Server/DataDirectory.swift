import Crypto
import FleetKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The controller's data directory: `fleet.sqlite` (everything but blobs), `blobs/`
/// (models by SHA-256), `signing.key` (Ed25519, mode 0600). Created on first start.
struct DataDirectory {
    let url: URL

    var databasePath: String { url.appendingPathComponent("fleet.sqlite").path }
    var blobsURL: URL { url.appendingPathComponent("blobs") }
    var signingKeyURL: URL { url.appendingPathComponent("signing.key") }

    init(_ url: URL) throws {
        self.url = url
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try FileManager.default.createDirectory(at: blobsURL, withIntermediateDirectories: true)
    }

    /// Loads the signing key, creating it (0600) on first start.
    func signingKey() throws -> Curve25519.Signing.PrivateKey {
        if let data = FileManager.default.contents(atPath: signingKeyURL.path) {
            let attributes = try FileManager.default.attributesOfItem(atPath: signingKeyURL.path)
            if let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
                throw ControllerError.insecureKeyFile(signingKeyURL.path, mode)
            }
            guard let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: data) else {
                throw ControllerError.corruptKeyFile(signingKeyURL.path)
            }
            return key
        }
        let key = Curve25519.Signing.PrivateKey()
        try writeSecret(key.rawRepresentation, to: signingKeyURL)
        return key
    }

    func writeSecret(_ data: Data, to url: URL) throws {
        try AtomicSecretFile.write(data, to: url)
    }
}

enum ControllerError: Error, CustomStringConvertible {
    case insecureKeyFile(String, Int)
    case corruptKeyFile(String)

    var description: String {
        switch self {
        case .insecureKeyFile(let path, let mode):
            return "\(path) is readable by others (mode \(String(mode, radix: 8))); run chmod 600 on it"
        case .corruptKeyFile(let path):
            return "\(path) is not a 32-byte Ed25519 private key"
        }
    }
}

/// Writes secrets with mode 0600 from the start (never briefly world-readable).
enum AtomicSecretFile {
    static func write(_ data: Data, to url: URL) throws {
        let temporary = url.path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: temporary]) }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        fsync(fd)
        close(fd)
        guard written == data.count, rename(temporary, url.path) == 0 else {
            unlink(temporary)
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path])
        }
    }
}
