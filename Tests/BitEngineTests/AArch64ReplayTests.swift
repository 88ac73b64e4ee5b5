@testable import BitEngine
import BitModel
import Foundation
import Testing

/// The same network on aarch64 code: this engine traces every kernel call of a
/// Bi-Real-Net-18 at 224x224 (every layer shape of the network, with its packing and output
/// transform), and Tests/KernelConformance/replay.c, cross-compiled for aarch64, replays the
/// trace under qemu with the NEON kernels (as a Cortex-A72) and the NEON + UDOT kernels (as a
/// Cortex-A76). Every packed output must match bit for bit and every float output within
/// 1e-5 of the layer's largest magnitude, so a NEON bug cannot hide behind "x86 passes".
/// scripts/test.sh installs the cross compiler and qemu (scripts/aarch64-lib.sh).
@Suite("aarch64 replay of this engine's layers", .enabled(if: AArch64Tools.available, AArch64Tools.missing))
struct AArch64ReplayTests {
    @Test("Bi-Real-Net-18 224x224 layer by layer on NEON and NEON+dotprod equals this engine", arguments: [
        ("cortex-a72", "neon"), ("cortex-a76", "neon-dotprod"),
    ])
    func biRealNet(cpu: String, kernels: String) throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("bitfleet-replay-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let model = SyntheticModels.biRealNet18(inputSize: 224, classes: 1000, seed: 11)
        let session = try InferenceSession(model: model, threads: 1)
        var random = SeededGenerator(seed: 12)
        let trace = try session.kernelTrace(input: random.floats(session.inputElementCount), splitThreads: 4)
        #expect(trace.records.filter { $0.kind == .binaryConvolution }.count == 16)
        let tracePath = work.appendingPathComponent("bireal18.trace").path
        try Data(trace.serialized()).write(to: URL(fileURLWithPath: tracePath))

        let binary = try AArch64Tools.replayBinary(in: work)
        let (status, output) = try AArch64Tools.run(AArch64Tools.qemu + ["-cpu", cpu, binary, tracePath, "--isa", kernels, "--tasks"])
        let failed = output.split(separator: "\n").filter { $0.hasPrefix("record ") && !$0.contains("result=ok") }
        #expect(status == 0, "replay on \(cpu) failed:\n\(failed.joined(separator: "\n"))\n\(output.suffix(2000))")
        #expect(output.contains("\(trace.records.count) records, 0 did not reproduce the trace"), "\(output.suffix(2000))")
        // The kernels the replay chose are the aarch64 ones, not a portable fallback.
        let expected = kernels == "neon" ? "kernel=neon-4x8" : "kernel=neon-dotprod-4x8"
        #expect(output.contains(expected), "no \(expected) in the replay:\n\(output.prefix(2000))")
        #expect(output.contains("kernel=neon-sgemm-8x8"))
    }

    @Test("a wrong expected output is reported (the replay can fail)")
    func replayDetectsCorruption() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("bitfleet-replay-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let model = SyntheticModels.binaryConvStack(size: 12, channels: 64, layers: 2, seed: 3)
        let session = try InferenceSession(model: model)
        var random = SeededGenerator(seed: 4)
        var trace = try session.kernelTrace(input: random.floats(session.inputElementCount), splitThreads: 4)
        // Flip one bit of the first packed output the trace expects.
        let index = try #require(trace.records.firstIndex { $0.kind == .binaryConvolution && $0.label.contains("sign") })
        guard case .words(var words) = trace.records[index].arrays.last! else {
            Issue.record("the fused conv's output is not packed")
            return
        }
        words[3] ^= 1 << 5
        trace.records[index].arrays[trace.records[index].arrays.count - 1] = .words(words)
        let tracePath = work.appendingPathComponent("corrupt.trace").path
        try Data(trace.serialized()).write(to: URL(fileURLWithPath: tracePath))
        let binary = try AArch64Tools.replayBinary(in: work)
        let (status, output) = try AArch64Tools.run(AArch64Tools.qemu + ["-cpu", "cortex-a72", binary, tracePath, "--isa", "neon"])
        #expect(status == 1)
        #expect(output.contains("result=FAIL detail=\"word 3:"), "\(output)")
    }
}

/// The cross compiler and qemu-aarch64 that scripts/aarch64-lib.sh installs.
enum AArch64Tools {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let sysroot = "/usr/aarch64-linux-gnu"
    static let clang = ["/opt/swift/usr/bin/clang", "/usr/bin/clang"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let qemuPath = ["/usr/bin/qemu-aarch64"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static var qemu: [String] { [qemuPath ?? "qemu-aarch64", "-L", sysroot] }

    static var available: Bool {
        clang != nil && qemuPath != nil && FileManager.default.fileExists(atPath: sysroot + "/lib/ld-linux-aarch64.so.1")
    }

    static let missing: Comment = "needs qemu-user and an aarch64 sysroot (scripts/aarch64-lib.sh installs them; scripts/test.sh does)"

    /// Builds Tests/KernelConformance/replay.c with every CBitKernels source for aarch64.
    static func replayBinary(in directory: URL) throws -> String {
        let kernels = root.appendingPathComponent("Sources/CBitKernels")
        let sources = try FileManager.default.contentsOfDirectory(atPath: kernels.path).filter { $0.hasSuffix(".c") }.sorted()
            .map { kernels.appendingPathComponent($0).path }
        let output = directory.appendingPathComponent("replay-aarch64").path
        let (status, log) = try run([clang!, "--target=aarch64-linux-gnu", "-O3", "-mcpu=cortex-a72",
                                     "-I", kernels.appendingPathComponent("include").path, "-o", output,
                                     root.appendingPathComponent("Tests/KernelConformance/replay.c").path] + sources + ["-lm"])
        guard status == 0 else { throw NativeKernelError(description: "cross-compiling the replay failed:\n\(log)") }
        return output
    }

    static func run(_ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
