#include "bitkernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET_AVX2 __attribute__((target("avx2,popcnt")))

// Per-64-bit-lane popcount without VPOPCNTQ: nibble lookup (VPSHUFB) into byte counts,
// accumulated for up to 31 words (31 * 8 = 248 fits a byte), then summed per lane with
// VPSADBW. One group of 8 channels is two ymm vectors.
static inline __attribute__((always_inline)) TARGET_AVX2 void
tile256(const uint64_t *a, size_t lda, const uint64_t *w, size_t k, int32_t *c, size_t ldc,
        const int np) {
    const __m256i lookup = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i total[4][2];
    for (int i = 0; i < np; i++) total[i][0] = total[i][1] = _mm256_setzero_si256();
    size_t kk = 0;
    while (kk < k) {
        size_t end = kk + 31 < k ? kk + 31 : k;
        __m256i bytes[4][2];
        for (int i = 0; i < np; i++) bytes[i][0] = bytes[i][1] = _mm256_setzero_si256();
        for (; kk < end; kk++) {
            __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + kk * 8));
            __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + kk * 8 + 4));
            for (int i = 0; i < np; i++) {
                __m256i av = _mm256_set1_epi64x((long long)a[i * lda + kk]);
                __m256i x0 = _mm256_xor_si256(av, w0);
                __m256i x1 = _mm256_xor_si256(av, w1);
                __m256i c0 = _mm256_add_epi8(
                    _mm256_shuffle_epi8(lookup, _mm256_and_si256(x0, low)),
                    _mm256_shuffle_epi8(lookup, _mm256_and_si256(_mm256_srli_epi16(x0, 4), low)));
                __m256i c1 = _mm256_add_epi8(
                    _mm256_shuffle_epi8(lookup, _mm256_and_si256(x1, low)),
                    _mm256_shuffle_epi8(lookup, _mm256_and_si256(_mm256_srli_epi16(x1, 4), low)));
                bytes[i][0] = _mm256_add_epi8(bytes[i][0], c0);
                bytes[i][1] = _mm256_add_epi8(bytes[i][1], c1);
            }
        }
        for (int i = 0; i < np; i++) {
            total[i][0] = _mm256_add_epi64(total[i][0], _mm256_sad_epu8(bytes[i][0], _mm256_setzero_si256()));
            total[i][1] = _mm256_add_epi64(total[i][1], _mm256_sad_epu8(bytes[i][1], _mm256_setzero_si256()));
        }
    }
    for (int i = 0; i < np; i++) {
        // Gather the low 32 bits of each 64-bit lane: counts are far below 2^31.
        const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        __m256i lo = _mm256_permutevar8x32_epi32(total[i][0], pick);
        __m256i hi = _mm256_permutevar8x32_epi32(total[i][1], pick);
        _mm_storeu_si128((__m128i *)(c + i * ldc), _mm256_castsi256_si128(lo));
        _mm_storeu_si128((__m128i *)(c + i * ldc + 4), _mm256_castsi256_si128(hi));
    }
}

TARGET_AVX2 void bk_xor_popcount_gemm_avx2(const uint64_t *a, size_t lda, size_t p,
                                           const uint64_t *w, size_t k, size_t o,
                                           int32_t *c, size_t ldc) {
    for (size_t o0 = 0; o0 < o; o0 += 8) {
        const uint64_t *wg = w + (o0 / 8) * k * 8;
        size_t p0 = 0;
        for (; p0 + 4 <= p; p0 += 4) tile256(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 4);
        switch (p - p0) {
        case 3: tile256(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 3); break;
        case 2: tile256(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 2); break;
        case 1: tile256(a + p0 * lda, lda, wg, k, c + p0 * ldc + o0, ldc, 1); break;
        default: break;
        }
    }
}
#endif
