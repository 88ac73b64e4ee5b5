/// Everything that can be wrong with a `.bnn` file or an in-memory model.
///
/// Every error names *what* is wrong (`code`, `detail`) and *where* (`location`: a byte
/// offset, a section, a layer or a tensor), so an operator can tell a truncated download
/// from a converter bug without a debugger.
public struct ModelFormatError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case truncated
        case badMagic
        case unsupportedVersion
        case badHeader
        case sectionOutOfRange
        case checksumMismatch
        case missingSection
        case malformedSection
        case invalidTensor
        case invalidGraph
        case invalidMetadata
        case invalidSelfTest
        case tooLarge
    }

    public var code: Code
    public var location: String
    public var detail: String

    public init(_ code: Code, at location: String, _ detail: String) {
        self.code = code
        self.location = location
        self.detail = detail
    }

    public var description: String { "\(location): \(detail) [\(code.rawValue)]" }
}
