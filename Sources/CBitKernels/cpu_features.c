#include "bitkernels.h"

uint32_t bk_cpu_features(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    uint32_t features = 0;
    if (__builtin_cpu_supports("popcnt")) features |= BK_FEATURE_POPCNT;
    if (__builtin_cpu_supports("avx2")) features |= BK_FEATURE_AVX2;
    if (__builtin_cpu_supports("fma")) features |= BK_FEATURE_FMA;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq"))
        features |= BK_FEATURE_AVX512_VPOPCNTDQ;
    return features;
#else
    return 0;
#endif
}
