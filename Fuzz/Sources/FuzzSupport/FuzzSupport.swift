import CLibFuzzer
import Foundation

/// Plumbing shared by the fuzz targets. Each target has a test function (one input, must
/// not crash) and a main.swift that calls `Fuzz.main`, so that `fuzz-X --write-seeds DIR`
/// regenerates that target's seed corpus and every other invocation is plain libFuzzer.
public enum Fuzz {
    /// The bytes of one libFuzzer input (libFuzzer may pass a null pointer for 0 bytes).
    public static func data(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Data {
        guard let start, count > 0 else { return Data() }
        return Data(bytes: start, count: count)
    }

    /// The target's `main`: `--write-seeds DIR` writes the seed corpus into DIR (emptied of
    /// files first); anything else goes to libFuzzer, which calls `testOneInput` per input.
    public static func main(testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt,
                            writeSeeds: ((SeedWriter) throws -> Void)? = nil) -> Never {
        let arguments = CommandLine.arguments
        if let flag = arguments.firstIndex(of: "--write-seeds") {
            guard let writeSeeds, flag + 1 < arguments.count else {
                FileHandle.standardError.write(Data("usage: \(arguments[0]) --write-seeds DIR (targets with generated seeds only)\n".utf8))
                exit(2)
            }
            let directory = URL(fileURLWithPath: arguments[flag + 1], isDirectory: true)
            do {
                let writer = try SeedWriter(directory: directory)
                try writeSeeds(writer)
                FileHandle.standardError.write(Data("wrote \(writer.count) seeds to \(directory.path)\n".utf8))
                exit(0)
            } catch {
                FileHandle.standardError.write(Data("writing seeds failed: \(error)\n".utf8))
                exit(1)
            }
        }
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
    }

    /// An invariant of the code under test does not hold: crash, so that libFuzzer saves the
    /// input as a crash artifact.
    public static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("FUZZ INVARIANT VIOLATED: \(message)\n".utf8))
        abort()
    }
}

/// Writes named seed files into one corpus directory.
public final class SeedWriter {
    public let directory: URL
    public private(set) var count = 0

    init(directory: URL) throws {
        self.directory = directory
        let files = FileManager.default
        try files.createDirectory(at: directory, withIntermediateDirectories: true)
        for name in try files.contentsOfDirectory(atPath: directory.path) {
            try files.removeItem(at: directory.appendingPathComponent(name))
        }
    }

    public func write(_ name: String, _ data: Data) throws {
        try data.write(to: directory.appendingPathComponent(name))
        count += 1
    }

    public func write(_ name: String, _ text: String) throws {
        try write(name, Data(text.utf8))
    }
}
