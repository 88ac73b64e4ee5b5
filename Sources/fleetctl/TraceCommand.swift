import ArgumentParser
import BitEngine
import BitModel
import Foundation

struct TraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Record every kernel call of one inference, to replay on another architecture.",
        discussion: """
        Runs the model once on a fixed pseudo-random input (or --input) and writes, for \
        each native kernel call (binary and float convolutions, binarize, pooling), what the \
        kernel was built from, the input it read, the output this machine computed and the \
        tasks the layer is cut into on --split-threads threads. \
        Tests/KernelConformance/replay.c replays a trace with another CPU's kernels (the \
        aarch64 ones under qemu, see docs/RASPBERRY_PI.md) and must reproduce every output; \
        benchmarks/aarch64/estimate.py counts each layer's aarch64 instructions from it.

        Examples:
          fleetctl model trace model.bnn -o model.trace
          fleetctl model trace model.bnn --input x.npy --split-threads 4 -o model.trace
          BITFLEET_KERNELS=portable fleetctl model trace model.bnn -o portable.trace
        """
    )

    @Argument(help: "The .bnn file.") var file: String
    @Option(name: .shortAndLong, help: "Where to write the trace.") var output: String
    @Option(help: "A .npy input (float32, the model's input shape); default: seeded values in [-1, 1].") var input: String?
    @Option(help: "Thread count whose task split the trace records.") var splitThreads = 4
    @Flag(help: "Print a JSON summary for scripts.") var json = false

    struct Summary: Encodable {
        var model: String
        var kernels: String
        var records: Int
        var bytes: Int
        var split_threads: Int
    }

    func validate() throws {
        guard (1...256).contains(splitThreads) else { throw ValidationError("--split-threads must be in 1...256") }
    }

    func run() throws {
        let model = try readModel(at: file)
        let session = try InferenceSession(model: model)
        var values: [Float]
        if let input {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: input)) } catch {
                throw ValidationError("cannot read \(input): \(error.localizedDescription)")
            }
            values = try NumpyArray(data).values
        } else {
            var random = SeededGenerator(seed: 1)
            values = random.floats(session.inputElementCount)
        }
        let trace = try session.kernelTrace(input: values, splitThreads: splitThreads)
        let bytes = trace.serialized()
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: output))
        } catch {
            throw ValidationError("cannot write \(output): \(error.localizedDescription)")
        }
        let summary = Summary(model: model.metadata.name, kernels: session.kernels.rawValue, records: trace.records.count,
                              bytes: bytes.count, split_threads: splitThreads)
        if json {
            try printJSON(summary)
        } else {
            print("\(output): \(trace.records.count) kernel calls of \(summary.model) (\(summary.kernels) kernels), \(bytes.count) bytes")
        }
    }
}
