import BitEngine
import BitModel
import FleetKit
import Foundation

/// The active model, ready to infer. Swapped atomically when a new model is activated;
/// callers never see a half-loaded model.
final class ModelRunner: @unchecked Sendable {
    struct Loaded {
        let installed: InstalledModel
        let session: InferenceSession
    }

    struct Result {
        let model: InstalledModel
        let scores: [Float]
        let topClass: Int
        let confidence: Float
        let latencyMs: Double
        let labels: [String]
        let input: [Float]
    }

    enum Failure: Error, CustomStringConvertible {
        case noModel
        case badInput(String)
        var description: String {
            switch self {
            case .noModel: return "no model is active yet"
            case .badInput(let why): return why
            }
        }
    }

    private let lock = NSLock()
    private var loaded: Loaded?
    private var shadowLoaded: Loaded?

    struct ShadowResult {
        let model: InstalledModel
        let topClass: Int
        let confidence: Float
        let latencyMs: Double
    }
    let threads: Int

    init(threads: Int) { self.threads = threads }

    /// Loads and self-tests a model file; throws with the reason if it is unusable.
    func prepare(_ installed: InstalledModel, file: URL) throws -> Loaded {
        let session = try InferenceSession(contentsOf: file, threads: threads)
        try SelfTests.verify(session)
        return Loaded(installed: installed, session: session)
    }

    func activate(_ model: Loaded) {
        lock.lock()
        loaded = model
        lock.unlock()
    }

    var current: Loaded? {
        lock.lock()
        defer { lock.unlock() }
        return loaded
    }

    func setShadow(_ model: Loaded?) {
        lock.lock()
        shadowLoaded = model
        lock.unlock()
    }

    var shadow: Loaded? {
        lock.lock()
        defer { lock.unlock() }
        return shadowLoaded
    }

    /// Runs the shadow model on the same input; nil without a compatible shadow model.
    func shadowInfer(_ input: [Float]) -> ShadowResult? {
        guard let shadow, shadow.session.inputElementCount == input.count else { return nil }
        let start = DispatchTime.now().uptimeNanoseconds
        guard let scores = try? shadow.session.run(input) else { return nil }
        let latency = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        let top = scores.indices.max { scores[$0] < scores[$1] } ?? 0
        return ShadowResult(model: shadow.installed, topClass: top, confidence: Self.confidence(scores, top: top), latencyMs: latency)
    }

    /// Decodes `body` (.npy, PGM image, or raw float32) for the active model and runs it.
    func infer(body: Data) throws -> Result {
        guard let loaded = current else { throw Failure.noModel }
        let metadata = loaded.session.model.metadata
        let input: [Float]
        if NumpyArray.isNumpy(body) {
            do { input = try NumpyArray(body).values } catch { throw Failure.badInput("\(error)") }
        } else if PGMImage.isPGM(body) {
            do { input = try ImageInput.tensor(pgm: body, for: metadata) } catch { throw Failure.badInput("\(error)") }
        } else {
            guard body.count % 4 == 0 else { throw Failure.badInput("raw input must be float32 values (\(body.count) bytes)") }
            input = body.withUnsafeBytes { raw in
                (0..<(body.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        }
        guard input.count == loaded.session.inputElementCount else {
            throw Failure.badInput("input has \(input.count) values, the model takes \(loaded.session.inputElementCount) (\(metadata.input.shape) \(metadata.input.layout.rawValue))")
        }
        let start = DispatchTime.now().uptimeNanoseconds
        let scores = try loaded.session.run(input)
        let latency = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        let top = scores.indices.max { scores[$0] < scores[$1] } ?? 0
        return Result(model: loaded.installed, scores: scores, topClass: top, confidence: Self.confidence(scores, top: top),
                      latencyMs: latency, labels: metadata.labels, input: input)
    }

    /// Softmax probability of the top class (scores that already sum to 1 are used as is).
    static func confidence(_ scores: [Float], top: Int) -> Float {
        guard !scores.isEmpty else { return 0 }
        let sum = scores.reduce(0, +)
        if scores.allSatisfy({ $0 >= 0 && $0 <= 1 }) && abs(sum - 1) < 1e-3 { return scores[top] }
        let largest = scores[top]
        let total = scores.reduce(Float(0)) { $0 + Foundation.exp($1 - largest) }
        return 1 / total
    }
}
