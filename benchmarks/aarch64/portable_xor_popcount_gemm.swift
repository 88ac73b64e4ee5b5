// A standalone copy of PortableKernels.xorPopcountGemm and its store helper, for llvm-mca
// through Embedded Swift (the toolchain here has no aarch64 Linux stdlib, but
//   swiftc -target aarch64-none-none-elf -enable-experimental-feature Embedded -O -S
// compiles this file). It is the Swift kernel aarch64 ran before the engine's kernels moved
// to C (Sources/BitEngine/PortableKernels.swift up to commit f24c6b8), kept as the baseline
// the NEON kernels are measured against; only `public` is added, so that the compiler
// keeps the function.
//
// The measured loop is the two-pixel K loop: per iteration one 512-bit weight load
// (8 channels x 64 bits) against 2 pixels, so 8 x 2 x 64 = 1024 binary MACs.
public enum PortableKernels {
    public static func xorPopcountGemm(_ a: UnsafePointer<UInt64>, lda: Int, rows: Int, weights: UnsafePointer<UInt64>,
                                depth: Int, channels: Int, counts: UnsafeMutablePointer<Int32>, ldc: Int) {
        let raw = UnsafeRawPointer(weights)
        var group = 0
        while group * 8 < channels {
            let base = raw + group * depth * 64
            var row = 0
            // Two pixels share each weight load.
            while row + 2 <= rows {
                var acc0 = SIMD8<UInt64>(), acc1 = SIMD8<UInt64>()
                let a0 = a + row * lda, a1 = a0 + lda
                for k in 0..<depth {
                    let w = base.loadUnaligned(fromByteOffset: k * 64, as: SIMD8<UInt64>.self)
                    acc0 &+= (w ^ SIMD8(repeating: a0[k])).nonzeroBitCount
                    acc1 &+= (w ^ SIMD8(repeating: a1[k])).nonzeroBitCount
                }
                store(acc0, to: counts + row * ldc + group * 8)
                store(acc1, to: counts + (row + 1) * ldc + group * 8)
                row += 2
            }
            if row < rows {
                var acc = SIMD8<UInt64>()
                let a0 = a + row * lda
                for k in 0..<depth {
                    let w = base.loadUnaligned(fromByteOffset: k * 64, as: SIMD8<UInt64>.self)
                    acc &+= (w ^ SIMD8(repeating: a0[k])).nonzeroBitCount
                }
                store(acc, to: counts + row * ldc + group * 8)
            }
            group += 1
        }
    }

    @inline(__always)
    private static func store(_ acc: SIMD8<UInt64>, to destination: UnsafeMutablePointer<Int32>) {
        for j in 0..<8 { destination[j] = Int32(truncatingIfNeeded: acc[j]) }
    }
}
