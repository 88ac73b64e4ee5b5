// aarch64 NEON float GEMM: 8 pixels x 8 channels, 16 accumulator registers.
//
// The operand rows stay row-major (im2col rows or the input itself): every 4 depth steps
// load 4 consecutive values of each pixel's row (one LD1 per pixel) and the 8 channels'
// weights of each step (two LD1), then 16 FMLA by lane per step. That is 64 FMLA per
// 16 loads, the same ratio as a k-major packed panel, without a packing pass.

#include "bk_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

enum { G = 8, T = 8 };

#define BK_STEP(LANE)                                                                 \
    do {                                                                              \
        const float32x4_t w0 = vld1q_f32(w + (kk + LANE) * G);                        \
        const float32x4_t w1 = vld1q_f32(w + (kk + LANE) * G + 4);                    \
        for (int i = 0; i < np; i++) {                                                \
            acc[i][0] = vfmaq_laneq_f32(acc[i][0], w0, x[i], LANE);                   \
            acc[i][1] = vfmaq_laneq_f32(acc[i][1], w1, x[i], LANE);                   \
        }                                                                             \
    } while (0)

BK_ALWAYS_INLINE void tile(const bk_fconv *k, const float *a, size_t lda, const float *w, float *out, size_t ldo,
                           int32_t o0, int32_t valid, const int np) {
    float32x4_t acc[T][2];
    for (int i = 0; i < np; i++) acc[i][0] = acc[i][1] = vdupq_n_f32(0);
    const size_t depth = (size_t)k->k;
    size_t kk = 0;
    for (; kk + 4 <= depth; kk += 4) {
        float32x4_t x[T];
        for (int i = 0; i < np; i++) x[i] = vld1q_f32(a + (size_t)i * lda + kk);
        BK_STEP(0);
        BK_STEP(1);
        BK_STEP(2);
        BK_STEP(3);
    }
    // The last depth steps one at a time, so no load reads past a row.
    for (; kk < depth; kk++) {
        const float32x4_t w0 = vld1q_f32(w + kk * G), w1 = vld1q_f32(w + kk * G + 4);
        for (int i = 0; i < np; i++) {
            const float32x4_t x = vld1q_dup_f32(a + (size_t)i * lda + kk);
            acc[i][0] = vfmaq_f32(acc[i][0], w0, x);
            acc[i][1] = vfmaq_f32(acc[i][1], w1, x);
        }
    }
    const float32x4_t b0 = vld1q_f32(k->bias + o0), b1 = vld1q_f32(k->bias + o0 + 4);
    for (int i = 0; i < np; i++) {
        float *row = out + (size_t)i * ldo + o0;
        const float32x4_t y0 = vaddq_f32(acc[i][0], b0), y1 = vaddq_f32(acc[i][1], b1);
        if (valid == G) {
            vst1q_f32(row, y0);
            vst1q_f32(row + 4, y1);
        } else {
            float lanes[G];
            vst1q_f32(lanes, y0);
            vst1q_f32(lanes + 4, y1);
            memcpy(row, lanes, sizeof(float) * (size_t)valid);
        }
    }
}

#define BK_TILE_CASE(N) case N: tile(k, ap, lda, panel, op, ldo, o0, valid, N); break

static void gemm_neon(const bk_fconv *k, const float *a, size_t lda, int32_t pixels, float *out, size_t ldo,
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
        BK_TILE_CASE(7); BK_TILE_CASE(6); BK_TILE_CASE(5); BK_TILE_CASE(4); BK_TILE_CASE(3); BK_TILE_CASE(2); BK_TILE_CASE(1);
        default: break;
        }
    }
}

const bk_fconv_variant bk_fconv_neon = {
    .name = "neon-sgemm-8x8",
    .isa = BK_ISA_NEON,
    .tile_pixels = T,
    .channel_group = G,
    .operand = BK_OPERAND_ROWS,
    .gemm = gemm_neon,
};
#endif
