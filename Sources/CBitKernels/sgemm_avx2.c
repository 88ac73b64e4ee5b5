#include "bitkernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET_FMA __attribute__((target("avx2,fma")))

// NP pixels x 16 channels: 2*NP ymm accumulators (12 at NP = 6), two weight vectors and
// one broadcast, the classic register-blocked FMA micro-kernel.
static inline __attribute__((always_inline)) TARGET_FMA void
sgemm_tile(const float *a, size_t lda, const float *w, size_t k, float *c, size_t ldc, const int np) {
    __m256 acc[6][2];
    for (int i = 0; i < np; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (size_t kk = 0; kk < k; kk++) {
        __m256 w0 = _mm256_loadu_ps(w + kk * 16);
        __m256 w1 = _mm256_loadu_ps(w + kk * 16 + 8);
        for (int i = 0; i < np; i++) {
            __m256 av = _mm256_broadcast_ss(a + i * lda + kk);
            acc[i][0] = _mm256_fmadd_ps(av, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, w1, acc[i][1]);
        }
    }
    for (int i = 0; i < np; i++) {
        _mm256_storeu_ps(c + i * ldc, acc[i][0]);
        _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
    }
}

TARGET_FMA void bk_sgemm_avx2(const float *a, size_t lda, size_t p, const float *w, size_t k,
                              size_t o, float *c, size_t ldc) {
    for (size_t o0 = 0; o0 < o; o0 += 16) {
        const float *panel = w + (o0 / 16) * k * 16;
        size_t p0 = 0;
        for (; p0 + 6 <= p; p0 += 6) sgemm_tile(a + p0 * lda, lda, panel, k, c + p0 * ldc + o0, ldc, 6);
        switch (p - p0) {
        case 5: sgemm_tile(a + p0 * lda, lda, panel, k, c + p0 * ldc + o0, ldc, 5); break;
        case 4: sgemm_tile(a + p0 * lda, lda, panel, k, c + p0 * ldc + o0, ldc, 4); break;
        case 3: sgemm_tile(a + p0 * lda, lda, panel, k, c + p0 * ldc + o0, ldc, 3); break;
        case 2: sgemm_tile(a + p0 * lda, lda, panel, k, c + p0 * ldc + o0, ldc, 2); break;
        case 1: sgemm_tile(a + p0 * lda, lda, panel, k, c + p0 * ldc + o0, ldc, 1); break;
        default: break;
        }
    }
}

TARGET_FMA void bk_binarize_avx2(const float *x, size_t pixels, size_t channels, uint64_t *out) {
    const size_t words = (channels + 63) / 64;
    const __m256 zero = _mm256_setzero_ps();
    for (size_t p = 0; p < pixels; p++) {
        const float *row = x + p * channels;
        uint64_t *dst = out + p * words;
        size_t c = 0;
        for (size_t wi = 0; wi < words; wi++) {
            uint64_t bits = 0;
            if (c + 64 <= channels) {
                for (int j = 0; j < 8; j++) {
                    // GE_OQ: -0.0 >= 0 is true (sign(-0) = +1), NaN gives 0 (-1).
                    uint64_t m = (uint64_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(row + c + j * 8), zero, _CMP_GE_OQ));
                    bits |= m << (j * 8);
                }
                c += 64;
            } else {
                for (int j = 0; c < channels; c++, j++)
                    if (row[c] >= 0.0f) bits |= (uint64_t)1 << j;
            }
            dst[wi] = bits;
        }
    }
}
#endif
