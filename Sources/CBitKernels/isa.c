#include "bk_internal.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

// The OS must also save the wider registers: __builtin_cpu_supports checks XCR0 for AVX
// and AVX-512 state, so a kernel with AVX disabled reports no AVX2.
int bk_isa_supported(bk_isa isa) {
    switch (isa) {
    case BK_ISA_PORTABLE:
        return 1;
#if defined(__x86_64__)
    case BK_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt");
    case BK_ISA_AVX512:
        __builtin_cpu_init();
        return bk_isa_supported(BK_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vpopcntdq");
#endif
#if defined(__aarch64__)
    // Advanced SIMD is part of the Armv8-A Linux ABI; AT_HWCAP says whether UDOT exists.
    case BK_ISA_NEON:
        return 1;
    case BK_ISA_NEON_DOTPROD:
#if defined(__linux__)
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
        return 0;
#endif
#endif
    default:
        return 0;
    }
}

const char *bk_isa_name(bk_isa isa) {
    switch (isa) {
    case BK_ISA_PORTABLE: return "portable";
    case BK_ISA_AVX2: return "avx2";
    case BK_ISA_AVX512: return "avx512";
    case BK_ISA_NEON: return "neon";
    case BK_ISA_NEON_DOTPROD: return "neon-dotprod";
    default: return "unknown";
    }
}
