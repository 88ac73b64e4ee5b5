import Crypto
import FleetKit
import Foundation

/// The controller's current signing key. `fleet-controller rotate-signing-key` (another
/// process) replaces `signing.key` atomically; a running controller notices the new file
/// within `checkInterval` and signs with the new key from then on, without a restart.
/// `onChange` runs once per change (the service drops signatures made with the old key and
/// re-reads the announcement chain, so agents learn the new key in the same reply).
final class SigningKeyring: @unchecked Sendable {
    fileprivate let lock = NSLock()
    private let directory: DataDirectory?
    fileprivate var signer: ManifestSigner
    /// Bumped on every key change: what is cached per key (the announcement chain) is
    /// cached under it, so a chain read before the rotation is never served with the new key.
    private var generation = 0
    private var fileStamp: FileStamp?
    private var checkedAt = Date.distantPast
    private let checkInterval: TimeInterval = 1
    private var listeners: [@Sendable () -> Void] = []

    private struct FileStamp: Equatable {
        var modified: Date?
        var inode: Int?
        var size: Int?
    }

    /// Reads `signing.key` (creating it on first start) and follows later replacements.
    init(directory: DataDirectory) throws {
        self.directory = directory
        signer = ManifestSigner(privateKey: try directory.signingKey())
        fileStamp = Self.stamp(directory.signingKeyURL)
        checkedAt = Date()
    }

    /// A fixed key (tests, tools): never reloads.
    init(signer: ManifestSigner) {
        directory = nil
        self.signer = signer
    }

    func onChange(_ listener: @escaping @Sendable () -> Void) {
        lock.withLock { listeners.append(listener) }
    }

    var current: ManifestSigner { snapshot.signer }

    /// The signer to use now and its generation. At most one stat(2) per `checkInterval`;
    /// a key file that is unreadable or corrupt mid-way keeps the previous key (and is
    /// retried next time). Listeners run before the new key is handed to anyone.
    var snapshot: (signer: ManifestSigner, generation: Int) {
        guard let directory else { return lock.withLock { (signer, generation) } }
        let now = Date()
        return lock.withLock {
            guard now.timeIntervalSince(checkedAt) >= checkInterval else { return (signer, generation) }
            checkedAt = now
            let stamp = Self.stamp(directory.signingKeyURL)
            guard stamp != fileStamp, let key = try? directory.existingSigningKey() else { return (signer, generation) }
            fileStamp = stamp
            if key.publicKey.rawRepresentation.base64EncodedString() != signer.publicKeyBase64 {
                signer = ManifestSigner(privateKey: key)
                generation += 1
                // Under the lock (they take only the caches' own lock): nobody signs with
                // the new key before they ran.
                listeners.forEach { $0() }
            }
            return (signer, generation)
        }
    }

    private static func stamp(_ url: URL) -> FileStamp? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path) else { return nil }
        return FileStamp(modified: attributes[.modificationDate] as? Date, inode: (attributes[.systemFileNumber] as? NSNumber)?.intValue,
                         size: (attributes[.size] as? NSNumber)?.intValue)
    }
}

extension SigningKeyring {
    /// `sha256:<hex>` of the key in use, without checking the file again (for logs).
    var fingerprintWithoutReload: String {
        let key = lock.withLock { signer.publicKeyBase64 }
        return ControllerKeyFingerprint.of(publicKeyBase64: key) ?? "?"
    }
}

extension FleetService {
    /// A service with a fixed signing key (tests and tools that need no rotation).
    init(store: any FleetStore, blobs: any BlobStore, signer: ManifestSigner, fleetID: String, configuration: ControllerConfiguration,
         clock: @escaping @Sendable () -> Date, transfers: TransferLimiter = TransferLimiter(permits: 32, queueLimit: 32)) {
        self.init(store: store, blobs: blobs, keyring: SigningKeyring(signer: signer), fleetID: fleetID, configuration: configuration,
                  clock: clock, transfers: transfers)
    }
}
