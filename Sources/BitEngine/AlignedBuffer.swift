#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed-size, 64-byte aligned, zero-initialised buffer of trivial values (weights laid
/// out for the kernels, the activation arena). Aligned to a cache line so SIMD loads never
/// straddle lines and threads writing neighbouring buffers do not share one.
final class AlignedBuffer<Element>: @unchecked Sendable {
    let count: Int
    let pointer: UnsafeMutablePointer<Element>

    init(count: Int) {
        self.count = count
        let bytes = max(count * MemoryLayout<Element>.stride, 64)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        memset(raw, 0, bytes)
        pointer = raw.bindMemory(to: Element.self, capacity: max(count, 1))
    }

    convenience init(_ values: [Element]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { free(pointer) }

    var buffer: UnsafeMutableBufferPointer<Element> { UnsafeMutableBufferPointer(start: pointer, count: count) }

    subscript(index: Int) -> Element {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }
}
