import BitEngine
import BitModel
import Foundation
import Testing

@Suite("Whole networks")
struct NetworkTests {
    /// Bi-Real-Net-18 (float stem, 16 binary 3x3 convs with real-valued shortcuts,
    /// downsampling shortcuts, global pool, float classifier) at 32x32 against the naive
    /// reference.
    @Test("Bi-Real-Net-18 equals the float reference", arguments: KernelSet.available)
    func biRealNet(kernels: KernelSet) throws {
        let model = SyntheticModels.biRealNet18(inputSize: 32, classes: 10, seed: 5)
        var random = SeededGenerator(seed: 99)
        let input = random.floats(3 * 32 * 32)
        for (actual, expected) in try compareWithReference(model, input: input, kernels: kernels) {
            #expect(relativeError(actual, expected) < 1e-4)
            #expect(argmax(actual) == argmax(expected))
        }
    }

    /// Float kernels differ in rounding (FMA or not), so each kernel set is its own
    /// reference; within one, thread count and repetition change nothing.
    @Test("results are bitwise identical across runs and thread counts", arguments: KernelSet.available)
    func determinism(kernels: KernelSet) throws {
        let model = SyntheticModels.biRealNet18(inputSize: 40, classes: 100, seed: 6)
        var random = SeededGenerator(seed: 7)
        let input = random.floats(3 * 40 * 40)
        let reference = try InferenceSession(model: model, threads: 1, kernels: kernels).run(input)
        do {
            for threads in [1, 2, 3] {
                let session = try InferenceSession(model: model, threads: threads, kernels: kernels)
                #expect(try session.run(input) == reference, "\(kernels) x\(threads)")
                #expect(try session.run(input) == reference, "\(kernels) x\(threads), second run")
            }
        }
    }

    @Test("a saved and reloaded model gives the same output")
    func roundTripThroughFile() throws {
        let model = SyntheticModels.biRealNet18(inputSize: 32, classes: 10, seed: 8)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("bitfleet-\(UUID().uuidString).bnn")
        defer { try? FileManager.default.removeItem(at: url) }
        try ModelWriter.write(model, to: url)
        var random = SeededGenerator(seed: 9)
        let input = random.floats(3 * 32 * 32)
        let fromFile = try InferenceSession(contentsOf: url)
        #expect(try fromFile.run(input) == (try InferenceSession(model: model).run(input)))
    }

    @Test("wrong input sizes are refused with a clear error")
    func wrongInput() throws {
        let session = try InferenceSession(model: SyntheticModels.biRealNet18(inputSize: 32, classes: 10))
        let error = #expect(throws: InferenceError.self) { try session.run([1, 2, 3]) }
        #expect(error?.description.hasPrefix("input has 3 values, the model takes 3072 ([1, 3, 32, 32] ") == true, "\(String(describing: error))")
    }
}

/// One test per kernel set, skipped visibly (with the reason) where this machine cannot run
/// it: the parameterized tests above run over `KernelSet.available`, which would otherwise
/// drop a set without a word. The NEON sets never run natively on an x86-64 CI machine; the
/// aarch64 replay (AArch64ReplayTests) and scripts/test-kernels.sh run them under qemu.
@Suite("Every kernel set, or why not here")
struct KernelSetCoverageTests {
    static func check(_ kernels: KernelSet) throws {
        let model = SyntheticModels.biRealNet18(inputSize: 32, classes: 10, seed: 21)
        var random = SeededGenerator(seed: 22)
        let input = random.floats(3 * 32 * 32)
        for (actual, expected) in try compareWithReference(model, input: input, kernels: kernels, threads: [1, 3]) {
            #expect(relativeError(actual, expected) < 1e-4, "\(kernels)")
            #expect(argmax(actual) == argmax(expected), "\(kernels)")
        }
    }

    @Test("portable", .enabled(if: KernelSet.portable.isAvailable)) func portable() throws { try Self.check(.portable) }
    @Test("avx2", .enabled(if: KernelSet.avx2.isAvailable, "this CPU has no AVX2 + FMA")) func avx2() throws { try Self.check(.avx2) }
    @Test("avx512", .enabled(if: KernelSet.avx512.isAvailable, "this CPU has no AVX-512 VPOPCNTDQ")) func avx512() throws { try Self.check(.avx512) }
    @Test("neon", .enabled(if: KernelSet.neon.isAvailable, "not an aarch64 machine: NEON runs under qemu in AArch64ReplayTests"))
    func neon() throws { try Self.check(.neon) }
    @Test("neon-dotprod", .enabled(if: KernelSet.neonDotprod.isAvailable, "no aarch64 UDOT here: it runs under qemu (-cpu cortex-a76) in AArch64ReplayTests"))
    func neonDotprod() throws { try Self.check(.neonDotprod) }
}
