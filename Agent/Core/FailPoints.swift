import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Named crash points in the install pipeline, a test facility in the spirit of
/// FoundationDB's "buggify" and the Rust `fail` crate: with
/// `BITFLEET_AGENT_FAILPOINT=<name>[:<count>]` in its environment the agent kills itself
/// with SIGKILL the `count`-th time (default: the first) it reaches the point `name`, so a
/// test can crash it at exactly one step of a download or install and check that it
/// restarts with a valid model. Without the variable every point is a no-op (one
/// comparison), and nothing else can arm them: production agents never set it.
/// The points are listed in `FailPoint.Name` and in docs/RELIABILITY.md.
enum FailPoint {
    enum Name: String, CaseIterable, Sendable {
        /// Half of a downloaded chunk is in the .part file (a torn append).
        case chunkHalfWritten = "download.chunk-half-written"
        /// A whole chunk is written to the .part file, not yet fsynced.
        case chunkWritten = "download.chunk-written"
        /// A chunk is written and fsynced.
        case chunkSynced = "download.chunk-synced"
        /// The whole blob is downloaded and verified, the .part file not yet fsynced.
        case beforeFsync = "install.before-fsync"
        /// fsynced, not yet renamed into models/.
        case beforeRename = "install.before-rename"
        /// Renamed into models/, the state still names the old model.
        case afterRename = "install.after-rename"
        /// The new model is loaded and self-tested, the switch not yet saved.
        case beforeStateSave = "install.before-state-save"
        /// state.json names the new model, the runner still serves the old one.
        case afterStateSave = "install.after-state-save"
        /// The new model serves; the activation report is queued, not yet sent.
        case beforeReport = "report.before-send"
        /// A report reached the controller but is not yet removed from the queue.
        case afterReport = "report.after-send"
    }

    private static let armed: (name: String, count: Int)? = {
        guard let value = ProcessInfo.processInfo.environment["BITFLEET_AGENT_FAILPOINT"], !value.isEmpty else { return nil }
        let parts = value.split(separator: ":", maxSplits: 1).map(String.init)
        return (parts[0], parts.count == 2 ? max(1, Int(parts[1]) ?? 1) : 1)
    }()

    private static let lock = NSLock()
    nonisolated(unsafe) private static var hits = 0

    /// Kills the process if `name` is the armed point and this is its `count`-th hit.
    static func hit(_ name: Name) {
        guard let armed, armed.name == name.rawValue else { return }
        lock.lock()
        hits += 1
        let fire = hits == armed.count
        lock.unlock()
        if fire {
            // Flush the log line so the test can see where the agent died.
            print("fail point \(name.rawValue) reached (hit \(armed.count)): SIGKILL")
            fflush(nil)
            kill(getpid(), SIGKILL)
        }
    }
}
