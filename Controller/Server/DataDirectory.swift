import BitModel
import Crypto
import FleetKit
import Foundation

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
        if let key = try existingSigningKey() { return key }
        let key = Curve25519.Signing.PrivateKey()
        try writeSecret(key.rawRepresentation, to: signingKeyURL)
        return key
    }

    /// The signing key on disk, nil if there is none yet; refused if others can read it.
    func existingSigningKey() throws -> Curve25519.Signing.PrivateKey? {
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
        return nil
    }

    /// Secrets are created with mode 0600 (never briefly readable by others) and replaced atomically.
    func writeSecret(_ data: Data, to url: URL) throws {
        try AtomicFile.write(data, to: url, permissions: 0o600)
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
