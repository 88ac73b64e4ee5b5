import BitModel
import Foundation
import Hummingbird

/// Keeps a free-space reserve on the data directory: new work that would eat into it is
/// refused with 507 before anything is written, so a filling disk stops uploads while the
/// database still has room for heartbeats, reports and rollouts, and existing blobs are
/// still served.
struct StorageReserve: Sendable {
    let directory: URL
    let reserveBytes: Int64

    /// Throws a 507 naming what and where when storing `bytes` more would leave less than
    /// the reserve free.
    func ensureRoom(for bytes: Int, what: String) throws {
        guard let free = FreeSpace.available(at: directory) else { return }  // unknown: let the write itself fail cleanly
        guard free - Int64(bytes) < reserveBytes else { return }
        throw APIError(APIError.insufficientStorage, "insufficient_storage",
                       "not enough disk space for \(what) (\(bytes) bytes): \(directory.path) has \(free) bytes free "
                       + "and keeps \(reserveBytes) bytes in reserve (--min-free-bytes); nothing was stored")
    }
}
