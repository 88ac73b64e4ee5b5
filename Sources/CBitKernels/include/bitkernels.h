#ifndef BITKERNELS_H
#define BITKERNELS_H

// x86-64 kernels that need instructions above the baseline ISA (AVX2, FMA, AVX-512
// VPOPCNTDQ). Each is compiled with a per-function target attribute and only called after
// bk_cpu_features() reports the features, so the package still builds and runs on any
// x86-64 CPU (and these are absent on other architectures, which use the portable Swift
// kernels).
//
// Binary GEMM layout (shared with the portable Swift kernel):
//   A: P rows of K 64-bit words, row stride lda (words).
//   W: output channels in groups of 8; word k of channel 8g+j is W[(g*K + k)*8 + j].
//      O (the padded channel count) is a multiple of 8.
//   C: counts[p*ldc + o] = sum_k popcount(A[p][k] ^ Wchannel_o[k]) for o < O.
//
// Float GEMM layout:
//   A: P rows of K floats, stride lda.  W: panels of 16 output channels; element k of
//   channel 16q+j is W[(q*K + k)*16 + j]; O is a multiple of 16.
//   C: C[p*ldc + o] = sum_k A[p][k] * W_o[k] for o < O.

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    BK_FEATURE_POPCNT = 1u << 0,
    BK_FEATURE_AVX2 = 1u << 1,
    BK_FEATURE_FMA = 1u << 2,
    BK_FEATURE_AVX512_VPOPCNTDQ = 1u << 3,  // with AVX512F
};

/// Features of the running CPU (0 on non-x86 builds).
uint32_t bk_cpu_features(void);

#if defined(__x86_64__)
void bk_xor_popcount_gemm_avx2(const uint64_t *a, size_t lda, size_t p, const uint64_t *w,
                               size_t k, size_t o, int32_t *c, size_t ldc);
void bk_xor_popcount_gemm_avx512(const uint64_t *a, size_t lda, size_t p, const uint64_t *w,
                                 size_t k, size_t o, int32_t *c, size_t ldc);
void bk_sgemm_avx2(const float *a, size_t lda, size_t p, const float *w, size_t k, size_t o,
                   float *c, size_t ldc);
/// sign bits of `pixels` rows of `channels` floats (x >= 0 -> 1), rows of ceil(channels/64)
/// words with zero padding bits.
void bk_binarize_avx2(const float *x, size_t pixels, size_t channels, uint64_t *out);
#endif

#ifdef __cplusplus
}
#endif

#endif
