// AVX-512 float GEMM: 12 pixels x 32 channels, 24 zmm accumulators; each depth step loads
// two weight vectors and broadcasts one input value per pixel into an FMA.

#include "bk_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))

enum { G = 32, T = 12 };

BK_ALWAYS_INLINE TARGET_AVX512 void tile(const bk_fconv *k, const float *a, size_t lda, const float *w, float *out,
                                         size_t ldo, int32_t o0, int32_t valid, const int np) {
    __m512 acc[T][2];
    for (int i = 0; i < np; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    const size_t depth = (size_t)k->k;
    for (size_t kk = 0; kk < depth; kk++) {
        const __m512 w0 = _mm512_load_ps(w + kk * G), w1 = _mm512_load_ps(w + kk * G + 16);
        for (int i = 0; i < np; i++) {
            const __m512 x = _mm512_set1_ps(a[(size_t)i * lda + kk]);
            acc[i][0] = _mm512_fmadd_ps(x, w0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(x, w1, acc[i][1]);
        }
    }
    const __m512 b0 = _mm512_load_ps(k->bias + o0), b1 = _mm512_load_ps(k->bias + o0 + 16);
    const __mmask16 m0 = valid >= 16 ? 0xffff : (__mmask16)((1u << valid) - 1);
    const __mmask16 m1 = valid >= 32 ? 0xffff : valid <= 16 ? 0 : (__mmask16)((1u << (valid - 16)) - 1);
    for (int i = 0; i < np; i++) {
        float *row = out + (size_t)i * ldo + o0;
        _mm512_mask_storeu_ps(row, m0, _mm512_add_ps(acc[i][0], b0));
        _mm512_mask_storeu_ps(row + 16, m1, _mm512_add_ps(acc[i][1], b1));
    }
}

#define BK_TILE_CASE(N) case N: tile(k, ap, lda, panel, op, ldo, o0, valid, N); break

static TARGET_AVX512 void gemm_avx512(const bk_fconv *k, const float *a, size_t lda, int32_t pixels, float *out,
                                      size_t ldo, int32_t c_begin, int32_t c_end) {
    const int32_t end = BK_MIN(c_end, k->desc.out_c);
    for (int32_t o0 = c_begin; o0 < end; o0 += G) {
        const float *panel = k->weights + (size_t)(o0 / G) * (size_t)k->k * G;
        const int32_t valid = BK_MIN(G, end - o0);
        int32_t p = 0;
        for (; p + T <= pixels; p += T) tile(k, a + (size_t)p * lda, lda, panel, out + (size_t)p * ldo, ldo, o0, valid, T);
        const float *ap = a + (size_t)p * lda;
        float *op = out + (size_t)p * ldo;
        switch (pixels - p) {
        BK_TILE_CASE(11); BK_TILE_CASE(10); BK_TILE_CASE(9); BK_TILE_CASE(8); BK_TILE_CASE(7); BK_TILE_CASE(6);
        BK_TILE_CASE(5); BK_TILE_CASE(4); BK_TILE_CASE(3); BK_TILE_CASE(2); BK_TILE_CASE(1);
        default: break;
        }
    }
}

const bk_fconv_variant bk_fconv_avx512 = {
    .name = "avx512-sgemm-12x32",
    .isa = BK_ISA_AVX512,
    .tile_pixels = T,
    .channel_group = G,
    .gemm = gemm_avx512,
};
#endif
