#include "bitkernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET_AVX512 __attribute__((target("avx512f,avx512vpopcntdq,avx2,popcnt")))

// A tile of NP pixels x NG groups of 8 channels. NP and NG are constants at each call site,
// so the accumulators live in zmm registers (up to 8x2 = 16 of the 32).
static inline __attribute__((always_inline)) TARGET_AVX512 void
tile512(const uint64_t *a, size_t lda, const uint64_t *w, size_t k, int32_t *c, size_t ldc,
        const int np, const int ng) {
    __m512i acc[8][2];
    for (int i = 0; i < np; i++)
        for (int g = 0; g < ng; g++) acc[i][g] = _mm512_setzero_si512();
    const uint64_t *w0 = w;
    const uint64_t *w1 = w + k * 8;
    for (size_t kk = 0; kk < k; kk++) {
        __m512i wv[2];
        wv[0] = _mm512_loadu_si512((const void *)(w0 + kk * 8));
        if (ng > 1) wv[1] = _mm512_loadu_si512((const void *)(w1 + kk * 8));
        for (int i = 0; i < np; i++) {
            __m512i av = _mm512_set1_epi64((long long)a[i * lda + kk]);
            for (int g = 0; g < ng; g++)
                acc[i][g] = _mm512_add_epi64(acc[i][g], _mm512_popcnt_epi64(_mm512_xor_si512(av, wv[g])));
        }
    }
    for (int i = 0; i < np; i++)
        for (int g = 0; g < ng; g++)
            _mm256_storeu_si256((__m256i *)(c + i * ldc + g * 8), _mm512_cvtepi64_epi32(acc[i][g]));
}

#define TILE_ROWS(NG)                                                                 \
    do {                                                                              \
        size_t p0 = 0;                                                                \
        for (; p0 + 8 <= p; p0 += 8) tile512(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 8, NG); \
        switch (p - p0) {                                                             \
        case 7: tile512(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 7, NG); break; \
        case 6: tile512(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 6, NG); break; \
        case 5: tile512(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 5, NG); break; \
        case 4: tile512(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 4, NG); break; \
        case 3: tile512(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 3, NG); break; \
        case 2: tile512(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 2, NG); break; \
        case 1: tile512(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 1, NG); break; \
        default: break;                                                               \
        }                                                                             \
    } while (0)

TARGET_AVX512 void bk_xor_popcount_gemm_avx512(const uint64_t *a, size_t lda, size_t p,
                                               const uint64_t *w, size_t k, size_t o,
                                               int32_t *c, size_t ldc) {
    size_t o0 = 0;
    for (; o0 + 16 <= o; o0 += 16) {
        const uint64_t *wg = w + (o0 / 8) * k * 8;
        TILE_ROWS(2);
    }
    if (o0 < o) {
        const uint64_t *wg = w + (o0 / 8) * k * 8;
        TILE_ROWS(1);
    }
}
#endif
