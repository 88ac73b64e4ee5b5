import CBitKernels

/// The instruction-set family an engine uses for its hot loops. Within a family, each layer
/// gets the micro-kernel that suits its shape (CBitKernels chooses, packs and reports it).
/// Selected once from the CPU's features (or `BITFLEET_KERNELS`), so one binary runs fast
/// on AVX-512/AVX2 machines and on NEON with or without dotprod, and correctly anywhere.
public enum KernelSet: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Plain C, any CPU: the fallback and the scalar model of the vector kernels.
    case portable
    /// x86-64 AVX2 + FMA (VPSHUFB popcount).
    case avx2
    /// x86-64 AVX-512 with VPOPCNTDQ.
    case avx512
    /// aarch64 Advanced SIMD (every 64-bit Raspberry Pi).
    case neon
    /// aarch64 with the Armv8.2 dot-product instructions (UDOT; Cortex-A76, Pi 5).
    case neonDotprod = "neon-dotprod"

    public var description: String { rawValue }

    var isa: bk_isa {
        switch self {
        case .portable: return BK_ISA_PORTABLE
        case .avx2: return BK_ISA_AVX2
        case .avx512: return BK_ISA_AVX512
        case .neon: return BK_ISA_NEON
        case .neonDotprod: return BK_ISA_NEON_DOTPROD
        }
    }

    public struct UnavailableError: Error, CustomStringConvertible {
        public var requested: String
        public var available: [KernelSet]
        public var description: String {
            "kernel set '\(requested)' is not available on this machine; available here: \(available.map(\.rawValue).joined(separator: ", "))"
        }
    }

    /// Kernel sets this build and CPU can run, slowest first.
    public static var available: [KernelSet] { allCases.filter { bk_isa_supported($0.isa) != 0 } }

    /// Kernel sets this machine cannot run (another architecture's, or features this CPU
    /// lacks): what a test run here does not exercise natively.
    public static var unavailable: [KernelSet] { allCases.filter { bk_isa_supported($0.isa) == 0 } }

    /// The fastest available set, unless `BITFLEET_KERNELS` names one.
    public static func preferred(environment: [String: String]) throws -> KernelSet {
        if let name = environment["BITFLEET_KERNELS"], !name.isEmpty, name != "auto" {
            guard let requested = KernelSet(rawValue: name), requested.isAvailable else {
                throw UnavailableError(requested: name, available: available)
            }
            return requested
        }
        return available.last ?? .portable
    }

    public var isAvailable: Bool { bk_isa_supported(isa) != 0 }

    /// Throws if this CPU cannot run the set.
    func checkAvailable() throws {
        guard isAvailable else { throw UnavailableError(requested: rawValue, available: KernelSet.available) }
    }
}
