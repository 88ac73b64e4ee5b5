import BitModel
import Foundation
import FuzzSupport
import ModelImport

// Fuzzes the ONNX importer (ONNXConverter.convert(data:)): the input is the bytes of an
// ONNX protobuf, as `fleetctl model convert` reads them and as the controller receives an
// ONNX upload. Any ImportError is fine; a crash, trap, hang, an allocation of gigabytes
// (libFuzzer's -rss_limit_mb / -malloc_limit_mb) or an ASan report is a bug. A model the
// converter accepts must be valid and must survive the .bnn write/read round trip, as the
// controller stores it as a .bnn file.
//
// Seeds (Fuzz/Corpus/onnx) are the small committed ONNX fixtures plus tiny models made by
// Fuzz/onnx_seeds.py; regenerate with Fuzz/make-seeds.sh.

/// One input (libFuzzer calls this through Fuzz.main in main.swift).
func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let input = Fuzz.data(start, count)
    let result: ConversionResult
    do {
        result = try ONNXConverter.convert(data: input, options: ConversionOptions(name: "fuzz"))
    } catch is ImportError {
        return 0
    } catch {
        Fuzz.fail("ONNXConverter threw \(type(of: error)), not ImportError: \(error)")
    }
    do {
        try result.model.validate()
        let file = try ModelWriter.data(for: result.model)
        _ = try ModelReader.read(file)
    } catch {
        Fuzz.fail("a converted model does not validate or round-trip: \(error)")
    }
    return 0
}
