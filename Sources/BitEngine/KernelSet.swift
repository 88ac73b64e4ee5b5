import CBitKernels

/// The family of kernels an engine uses for its hot loops. Selected once from the CPU's
/// features (or `BITFLEET_KERNELS`), so one binary runs fast on AVX-512/AVX2 machines and
/// correctly on anything else, including aarch64, where the portable Swift kernels compile
/// to NEON.
public enum KernelSet: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Swift SIMD and `nonzeroBitCount`; every architecture.
    case portable
    /// x86-64 AVX2 + FMA (VPSHUFB popcount).
    case avx2
    /// x86-64 AVX-512 with VPOPCNTDQ for the binary GEMM, AVX2 + FMA elsewhere.
    case avx512

    public var description: String { rawValue }

    public struct UnavailableError: Error, CustomStringConvertible {
        public var requested: KernelSet
        public var available: [KernelSet]
        public var description: String {
            "kernel set '\(requested)' needs CPU features this machine lacks; available here: \(available.map(\.rawValue).joined(separator: ", "))"
        }
    }

    /// Kernel sets this CPU can run, slowest first.
    public static var available: [KernelSet] {
        let features = bk_cpu_features()
        var sets: [KernelSet] = [.portable]
        let hasAVX2 = features & UInt32(BK_FEATURE_AVX2) != 0 && features & UInt32(BK_FEATURE_FMA) != 0
        if hasAVX2 { sets.append(.avx2) }
        if hasAVX2 && features & UInt32(BK_FEATURE_AVX512_VPOPCNTDQ) != 0 { sets.append(.avx512) }
        return sets
    }

    /// The fastest available set, unless `BITFLEET_KERNELS` names one.
    public static func preferred(environment: [String: String]) throws -> KernelSet {
        if let name = environment["BITFLEET_KERNELS"], !name.isEmpty, name != "auto" {
            guard let requested = KernelSet(rawValue: name) else {
                throw UnavailableError(requested: .portable, available: available)
            }
            guard available.contains(requested) else {
                throw UnavailableError(requested: requested, available: available)
            }
            return requested
        }
        return available.last!
    }

    /// Throws if this CPU cannot run the set.
    func checkAvailable() throws {
        guard KernelSet.available.contains(self) else {
            throw UnavailableError(requested: self, available: KernelSet.available)
        }
    }

    /// counts[p*ldc + o] = sum over k of popcount(a[p][k] ^ w_o[k]); see bitkernels.h.
    @inline(__always)
    func xorPopcountGemm(_ a: UnsafePointer<UInt64>, lda: Int, rows: Int, weights: UnsafePointer<UInt64>,
                         depth: Int, channels: Int, counts: UnsafeMutablePointer<Int32>, ldc: Int) {
        #if arch(x86_64)
        switch self {
        case .avx512:
            bk_xor_popcount_gemm_avx512(a, lda, rows, weights, depth, channels, counts, ldc)
            return
        case .avx2:
            bk_xor_popcount_gemm_avx2(a, lda, rows, weights, depth, channels, counts, ldc)
            return
        case .portable:
            break
        }
        #endif
        PortableKernels.xorPopcountGemm(a, lda: lda, rows: rows, weights: weights, depth: depth,
                                        channels: channels, counts: counts, ldc: ldc)
    }

    /// c[p*ldc + o] = sum over k of a[p][k] * w_o[k]; see bitkernels.h.
    @inline(__always)
    func sgemm(_ a: UnsafePointer<Float>, lda: Int, rows: Int, weights: UnsafePointer<Float>,
               depth: Int, channels: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        #if arch(x86_64)
        if self != .portable {
            bk_sgemm_avx2(a, lda, rows, weights, depth, channels, c, ldc)
            return
        }
        #endif
        PortableKernels.sgemm(a, lda: lda, rows: rows, weights: weights, depth: depth,
                              channels: channels, c: c, ldc: ldc)
    }

    @inline(__always)
    func binarize(_ x: UnsafePointer<Float>, pixels: Int, channels: Int, into out: UnsafeMutablePointer<UInt64>) {
        #if arch(x86_64)
        if self != .portable {
            bk_binarize_avx2(x, pixels, channels, out)
            return
        }
        #endif
        PortableKernels.binarize(x, pixels: pixels, channels: channels, into: out)
    }
}
