import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Free space on a file system, for the controller's and the agent's disk reserves (they
/// refuse new work before a full disk can break a write).
public enum FreeSpace {
    /// Bytes available to this process on the file system holding `url` (statvfs), or nil
    /// when it cannot be read.
    public static func available(at url: URL) -> Int64? {
        var stats = statvfs()
        guard statvfs(url.path, &stats) == 0 else { return nil }
        return Int64(stats.f_bavail) * Int64(stats.f_frsize)
    }
}
