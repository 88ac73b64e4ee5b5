/// Kernels in plain Swift SIMD. They are the only kernels on aarch64 (where
/// `SIMD8<UInt64>.nonzeroBitCount` lowers to NEON CNT + pairwise adds) and the fallback on
/// x86-64 CPUs without AVX2. Same layouts as bitkernels.h.
enum PortableKernels {
    static func xorPopcountGemm(_ a: UnsafePointer<UInt64>, lda: Int, rows: Int, weights: UnsafePointer<UInt64>,
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

    static func sgemm(_ a: UnsafePointer<Float>, lda: Int, rows: Int, weights: UnsafePointer<Float>,
                      depth: Int, channels: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let raw = UnsafeRawPointer(weights)
        var panel = 0
        while panel * 16 < channels {
            let base = raw + panel * depth * 64
            var row = 0
            while row + 4 <= rows {
                var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>(), acc2 = SIMD16<Float>(), acc3 = SIMD16<Float>()
                let a0 = a + row * lda
                for k in 0..<depth {
                    let w = base.loadUnaligned(fromByteOffset: k * 64, as: SIMD16<Float>.self)
                    acc0 += w * a0[k]
                    acc1 += w * a0[lda + k]
                    acc2 += w * a0[2 * lda + k]
                    acc3 += w * a0[3 * lda + k]
                }
                let out = UnsafeMutableRawPointer(c + row * ldc + panel * 16)
                out.storeBytes(of: acc0, as: SIMD16<Float>.self)
                (out + ldc * 4).storeBytes(of: acc1, as: SIMD16<Float>.self)
                (out + 2 * ldc * 4).storeBytes(of: acc2, as: SIMD16<Float>.self)
                (out + 3 * ldc * 4).storeBytes(of: acc3, as: SIMD16<Float>.self)
                row += 4
            }
            while row < rows {
                var acc = SIMD16<Float>()
                let a0 = a + row * lda
                for k in 0..<depth {
                    acc += base.loadUnaligned(fromByteOffset: k * 64, as: SIMD16<Float>.self) * a0[k]
                }
                UnsafeMutableRawPointer(c + row * ldc + panel * 16).storeBytes(of: acc, as: SIMD16<Float>.self)
                row += 1
            }
            panel += 1
        }
    }

    static func binarize(_ x: UnsafePointer<Float>, pixels: Int, channels: Int, into out: UnsafeMutablePointer<UInt64>) {
        let words = (channels + 63) / 64
        for p in 0..<pixels {
            let row = x + p * channels
            for w in 0..<words {
                var bits: UInt64 = 0
                let start = w * 64
                let end = min(start + 64, channels)
                for c in start..<end where row[c] >= 0 {
                    bits |= 1 << UInt64(c - start)
                }
                out[p * words + w] = bits
            }
        }
    }
}
