// Portable float GEMM: 4 pixels x 16 channels of plain C that compilers vectorize for the
// baseline ISA (SSE2 on x86-64, NEON on aarch64). Weights in 16-channel panels.

#include "bk_internal.h"

enum { G = 16, T = 4 };

BK_ALWAYS_INLINE void tile(const bk_fconv *k, const float *a, size_t lda, const float *panel, float *out, size_t ldo,
                           int32_t o0, int32_t valid, const int np) {
    float acc[T][G] = {{0}};
    const size_t depth = (size_t)k->k;
    for (size_t kk = 0; kk < depth; kk++) {
        const float *w = panel + kk * G;
        for (int i = 0; i < np; i++) {
            const float x = a[(size_t)i * lda + kk];
            for (int j = 0; j < G; j++) acc[i][j] += x * w[j];
        }
    }
    for (int i = 0; i < np; i++)
        for (int32_t j = 0; j < valid; j++) out[(size_t)i * ldo + (size_t)(o0 + j)] = acc[i][j] + k->bias[o0 + j];
}

static void gemm_portable(const bk_fconv *k, const float *a, size_t lda, int32_t pixels, float *out, size_t ldo,
                          int32_t c_begin, int32_t c_end) {
    const int32_t end = BK_MIN(c_end, k->desc.out_c);
    for (int32_t o0 = c_begin; o0 < end; o0 += G) {
        const float *panel = k->weights + (size_t)(o0 / G) * (size_t)k->k * G;
        const int32_t valid = BK_MIN(G, end - o0);
        int32_t p = 0;
        for (; p + T <= pixels; p += T) tile(k, a + (size_t)p * lda, lda, panel, out + (size_t)p * ldo, ldo, o0, valid, T);
        switch (pixels - p) {
        case 3: tile(k, a + (size_t)p * lda, lda, panel, out + (size_t)p * ldo, ldo, o0, valid, 3); break;
        case 2: tile(k, a + (size_t)p * lda, lda, panel, out + (size_t)p * ldo, ldo, o0, valid, 2); break;
        case 1: tile(k, a + (size_t)p * lda, lda, panel, out + (size_t)p * ldo, ldo, o0, valid, 1); break;
        default: break;
        }
    }
}

const bk_fconv_variant bk_fconv_portable = {
    .name = "portable-sgemm-4x16",
    .isa = BK_ISA_PORTABLE,
    .tile_pixels = T,
    .channel_group = G,
    .gemm = gemm_portable,
};
