// AVX2 + FMA float GEMM: 6 pixels x 16 channels, 12 ymm accumulators, two weight vectors
// and one broadcast per depth step: the classic register-blocked FMA micro-kernel.

#include "bk_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET_FMA __attribute__((target("avx2,fma")))

enum { G = 16, T = 6 };

BK_ALWAYS_INLINE TARGET_FMA void tile(const bk_fconv *k, const float *a, size_t lda, const float *w, float *out,
                                      size_t ldo, int32_t o0, int32_t valid, const int np) {
    __m256 acc[T][2];
    for (int i = 0; i < np; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    const size_t depth = (size_t)k->k;
    for (size_t kk = 0; kk < depth; kk++) {
        const __m256 w0 = _mm256_load_ps(w + kk * G), w1 = _mm256_load_ps(w + kk * G + 8);
        for (int i = 0; i < np; i++) {
            const __m256 x = _mm256_broadcast_ss(a + (size_t)i * lda + kk);
            acc[i][0] = _mm256_fmadd_ps(x, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(x, w1, acc[i][1]);
        }
    }
    const __m256 b0 = _mm256_load_ps(k->bias + o0), b1 = _mm256_load_ps(k->bias + o0 + 8);
    for (int i = 0; i < np; i++) {
        float *row = out + (size_t)i * ldo + o0;
        const __m256 y0 = _mm256_add_ps(acc[i][0], b0), y1 = _mm256_add_ps(acc[i][1], b1);
        if (valid == G) {
            _mm256_storeu_ps(row, y0);
            _mm256_storeu_ps(row + 8, y1);
        } else {
            float lanes[G];
            _mm256_storeu_ps(lanes, y0);
            _mm256_storeu_ps(lanes + 8, y1);
            memcpy(row, lanes, sizeof(float) * (size_t)valid);
        }
    }
}

static TARGET_FMA void gemm_avx2(const bk_fconv *k, const float *a, size_t lda, int32_t pixels, float *out, size_t ldo,
                                 int32_t c_begin, int32_t c_end) {
    const int32_t end = BK_MIN(c_end, k->desc.out_c);
    for (int32_t o0 = c_begin; o0 < end; o0 += G) {
        const float *panel = k->weights + (size_t)(o0 / G) * (size_t)k->k * G;
        const int32_t valid = BK_MIN(G, end - o0);
        int32_t p = 0;
        for (; p + T <= pixels; p += T) tile(k, a + (size_t)p * lda, lda, panel, out + (size_t)p * ldo, ldo, o0, valid, T);
        const float *ap = a + (size_t)p * lda;
        float *op = out + (size_t)p * ldo;
        switch (pixels - p) {
        case 5: tile(k, ap, lda, panel, op, ldo, o0, valid, 5); break;
        case 4: tile(k, ap, lda, panel, op, ldo, o0, valid, 4); break;
        case 3: tile(k, ap, lda, panel, op, ldo, o0, valid, 3); break;
        case 2: tile(k, ap, lda, panel, op, ldo, o0, valid, 2); break;
        case 1: tile(k, ap, lda, panel, op, ldo, o0, valid, 1); break;
        default: break;
        }
    }
}

const bk_fconv_variant bk_fconv_avx2 = {
    .name = "avx2-sgemm-6x16",
    .isa = BK_ISA_AVX2,
    .tile_pixels = T,
    .channel_group = G,
    .gemm = gemm_avx2,
};
#endif
