import Foundation
import Testing
import BitModel

/// Inputs that crashed the .bnn reader under the fuzz-bnn fuzz target (docs/FUZZING.md),
/// kept in Tests/Fixtures/fuzz-regressions/bnn (and in Fuzz/Corpus/bnn). Each must now be
/// refused with a ModelFormatError naming the problem, never a trap.
@Suite("Fuzz regressions: .bnn reader")
struct FuzzRegressionTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz-regressions/bnn")

    /// File -> the error it must produce.
    static let expected: [String: ModelFormatError.Code] = [
        // A 100-byte file whose header declares 4 sections: the 128-byte table does not fit,
        // and `file.count - tableBytes` went negative (UInt64 conversion trap).
        "section-table-past-end.bnn": .sectionOutOfRange,
        // Input shape [1, 2^24, 2^24, 2^24]: each dimension is in range but their product
        // overflowed Int in shape inference.
        "input-elements-overflow.bnn": .tooLarge,
        // A tensor at offset Int.max: the error message computed offset + bytes and overflowed.
        "tensor-offset-overflow.bnn": .sectionOutOfRange,
    ]

    @Test("each input is refused with a ModelFormatError", arguments: expected.keys.sorted())
    func refused(_ name: String) throws {
        let data = try Data(contentsOf: Self.directory.appendingPathComponent(name))
        do {
            _ = try ModelReader.read(data)
            Issue.record("\(name) was accepted")
        } catch let error as ModelFormatError {
            #expect(error.code == Self.expected[name], "\(name): \(error)")
        }
    }

    @Test("every committed regression input has an expectation")
    func complete() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path).filter { !$0.hasPrefix(".") }
        #expect(Set(files) == Set(Self.expected.keys))
    }
}
