import ArgumentParser
import BitEngine
import BitModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure a model's latency (batch 1) on this machine.",
        discussion: """
        Runs the model on a fixed pseudo-random input: --warmup runs first, then --runs \
        timed runs. Reports median, p90 and minimum latency in milliseconds, the kernel set \
        and the process's peak resident memory.

        Examples:
          fleetctl model bench model.bnn
          fleetctl model bench model.bnn --threads 2 --runs 100 --json
          BITFLEET_KERNELS=portable fleetctl model bench model.bnn
        """
    )

    @Argument(help: "The .bnn file.") var file: String
    @Option(help: "Threads to use.") var threads = 1
    @Option(help: "Timed runs.") var runs = 30
    @Option(help: "Untimed warm-up runs.") var warmup = 5
    @Flag(help: "Print one JSON object for scripts.") var json = false

    struct Report: Encodable {
        var model: String
        var median_ms: Double
        var p90_ms: Double
        var min_ms: Double
        var mean_ms: Double
        var threads: Int
        var runs: Int
        var kernels: String
        var binary_macs: Int
        var binary_gmacs_per_s: Double
        var peak_rss_mb: Double
        /// Micro-kernel -> how many steps use it (CBitKernels chooses per layer).
        var micro_kernels: [String: Int]
    }

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must be >= 0") }
    }

    func run() throws {
        let model = try readModel(at: file)
        let session = try InferenceSession(model: model, threads: threads)
        var random = SeededGenerator(seed: 1)
        let input = random.floats(session.inputElementCount)
        var output = [Float](repeating: 0, count: session.outputElementCount)
        var times: [Double] = []
        try input.withUnsafeBufferPointer { inputBuffer in
            try output.withUnsafeMutableBufferPointer { outputBuffer in
                for index in 0..<(warmup + runs) {
                    let start = DispatchTime.now().uptimeNanoseconds
                    try session.run(input: inputBuffer, output: outputBuffer)
                    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                    if index >= warmup { times.append(elapsed) }
                }
            }
        }
        times.sort()
        let median = times.count % 2 == 1 ? times[times.count / 2] : (times[times.count / 2 - 1] + times[times.count / 2]) / 2
        let p90 = times[min(times.count - 1, Int((Double(times.count) * 0.9).rounded(.up)) - 1)]
        let macs = try ModelStatistics(model).binaryMACs
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let report = Report(model: model.metadata.name, median_ms: median, p90_ms: p90, min_ms: times[0],
                            mean_ms: times.reduce(0, +) / Double(times.count), threads: threads, runs: runs,
                            kernels: session.kernels.rawValue, binary_macs: macs,
                            binary_gmacs_per_s: Double(macs) / (median * 1e6),
                            peak_rss_mb: Double(usage.ru_maxrss) / 1024,
                            micro_kernels: session.steps.compactMap(\.kernel).reduce(into: [:]) { $0[$1, default: 0] += 1 })
        if json {
            try printJSON(report)
        } else {
            print(String(format: "%@: median %.3f ms, p90 %.3f ms, min %.3f ms over %d runs (%d thread%@, %@ kernels, %.1f G binary MAC/s, peak RSS %.1f MB)",
                         report.model, median, p90, times[0], runs, threads, threads == 1 ? "" : "s", report.kernels,
                         report.binary_gmacs_per_s, report.peak_rss_mb))
            if !report.micro_kernels.isEmpty {
                print("micro-kernels: " + report.micro_kernels.sorted { $0.key < $1.key }.map { "\($0.key) x\($0.value)" }.joined(separator: ", "))
            }
        }
    }
}
