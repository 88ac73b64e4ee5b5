import BitModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Free space on the agent's data file system. A device whose disk is full must refuse new
/// models with a clear reason and keep serving the one it has, so the installer checks the
/// space before downloading and turns ENOSPC from any write into the same clear message.
enum DiskSpace {
    struct Full: Error, CustomStringConvertible {
        var description: String
    }

    /// Throws `Full` unless `needed` bytes are free at `url`.
    static func requireFree(_ needed: Int64, reserve: Int64, for modelBytes: Int, at url: URL) throws {
        guard let free = FreeSpace.available(at: url) else { return }  // unknown: let the writes decide
        if free < needed {
            throw Full(description: "disk full: need \(needed) bytes (model \(modelBytes) + reserve \(reserve)), have \(free) free on \(url.path)")
        }
    }

    /// The error's text, or for "no space left on device" (ENOSPC, EDQUOT) anywhere in its
    /// chain a message in the same form as the up-front check.
    static func describe(_ error: Error, directory: URL) -> String {
        if isNoSpace(error) {
            let free = FreeSpace.available(at: directory).map { "\($0)" } ?? "?"
            // The NSError dump adds nothing an operator can use; the path and free space do.
            return "disk full: no space left on device while writing to \(directory.path) (have \(free) bytes free)"
        }
        return "\(error)"
    }

    static func isNoSpace(_ error: Error) -> Bool {
        let codes: Set<Int> = [Int(ENOSPC), Int(EDQUOT)]
        if let write = error as? AtomicFile.WriteError { return codes.contains(Int(write.errno)) }
        var current: NSError? = error as NSError
        while let ns = current {
            if ns.domain == NSPOSIXErrorDomain, codes.contains(ns.code) { return true }
            if ns.domain == NSCocoaErrorDomain, ns.code == CocoaError.fileWriteOutOfSpace.rawValue { return true }
            current = ns.userInfo[NSUnderlyingErrorKey] as? NSError
        }
        return "\(error)".contains("No space left on device")
    }
}
