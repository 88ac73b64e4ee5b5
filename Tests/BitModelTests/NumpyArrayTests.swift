import Foundation
import Testing
import BitModel

@Suite(".npy files")
struct NumpyArrayTests {
    @Test("round trip and header alignment")
    func roundTrip() throws {
        let array = NumpyArray(shape: [1, 3, 2], values: [1, -2, 3.5, 0, .infinity, -0.25])
        let data = array.data
        #expect((data.count - 6 * 4) % 64 == 0)
        #expect(try NumpyArray(data) == array)
    }

    @Test("bad files are refused with a reason")
    func invalid() {
        func reason(_ data: Data) -> String? {
            let error = #expect(throws: NumpyArray.FormatError.self) { try NumpyArray(data) }
            return error?.description
        }
        #expect(reason(Data("not numpy".utf8)) == "not a .npy file (missing \\x93NUMPY magic)")
        var data = NumpyArray(shape: [4], values: [1, 2, 3, 4]).data
        data.removeLast(3)
        let truncated = reason(data)
        #expect(truncated?.hasPrefix(".npy shape [4] needs 16 data bytes, the file has 13") == true, "\(truncated ?? "nil")")
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }"
        var f64 = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.utf8.count), 0])
        f64.append(contentsOf: Array(header.utf8))
        f64.append(Data(count: 8))
        let dtype = reason(f64)
        #expect(dtype?.hasPrefix(".npy dtype must be little-endian float32 ('<f4')") == true, "\(dtype ?? "nil")")
    }
}
