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

#if defined(__clang__)
// Full 8-pixel tiles, 4 depth steps per iteration, as inline assembly: compiled from
// intrinsics, the 8 row pointers become one pointer plus a chain of 7 address adds per
// iteration. v16-v23: 4 values of each pixel's row (LDR, post-incremented); v24-v31: the
// 8 channels' weights of 4 depth steps (two LD1 of four registers); accumulators in v0-v15.
#define BK_FMLA_STEP(W0, W1, LANE)                                                     \
    "fmla %[c00].4s, " W0 ".4s, v16.s[" LANE "]\n\t" "fmla %[c01].4s, " W1 ".4s, v16.s[" LANE "]\n\t" \
    "fmla %[c10].4s, " W0 ".4s, v17.s[" LANE "]\n\t" "fmla %[c11].4s, " W1 ".4s, v17.s[" LANE "]\n\t" \
    "fmla %[c20].4s, " W0 ".4s, v18.s[" LANE "]\n\t" "fmla %[c21].4s, " W1 ".4s, v18.s[" LANE "]\n\t" \
    "fmla %[c30].4s, " W0 ".4s, v19.s[" LANE "]\n\t" "fmla %[c31].4s, " W1 ".4s, v19.s[" LANE "]\n\t" \
    "fmla %[c40].4s, " W0 ".4s, v20.s[" LANE "]\n\t" "fmla %[c41].4s, " W1 ".4s, v20.s[" LANE "]\n\t" \
    "fmla %[c50].4s, " W0 ".4s, v21.s[" LANE "]\n\t" "fmla %[c51].4s, " W1 ".4s, v21.s[" LANE "]\n\t" \
    "fmla %[c60].4s, " W0 ".4s, v22.s[" LANE "]\n\t" "fmla %[c61].4s, " W1 ".4s, v22.s[" LANE "]\n\t" \
    "fmla %[c70].4s, " W0 ".4s, v23.s[" LANE "]\n\t" "fmla %[c71].4s, " W1 ".4s, v23.s[" LANE "]\n\t"

BK_ALWAYS_INLINE void full_tile_steps(float32x4_t acc[T][2], const float *a, size_t lda, const float **w, size_t groups) {
    const float *r0 = a, *r1 = a + lda, *r2 = a + 2 * lda, *r3 = a + 3 * lda;
    const float *r4 = a + 4 * lda, *r5 = a + 5 * lda, *r6 = a + 6 * lda, *r7 = a + 7 * lda;
    const float *wp = *w;
    __asm__ volatile(
        "// LLVM-MCA-BEGIN neon_sgemm_8x8\n\t"
        "1:\n\t"
        "ldr q16, [%[r0]], #16\n\t" "ldr q17, [%[r1]], #16\n\t" "ldr q18, [%[r2]], #16\n\t" "ldr q19, [%[r3]], #16\n\t"
        "ldr q20, [%[r4]], #16\n\t" "ldr q21, [%[r5]], #16\n\t" "ldr q22, [%[r6]], #16\n\t" "ldr q23, [%[r7]], #16\n\t"
        "ld1 {v24.4s, v25.4s, v26.4s, v27.4s}, [%[w]], #64\n\t"
        BK_FMLA_STEP("v24", "v25", "0")
        BK_FMLA_STEP("v26", "v27", "1")
        "ld1 {v28.4s, v29.4s, v30.4s, v31.4s}, [%[w]], #64\n\t"
        BK_FMLA_STEP("v28", "v29", "2")
        BK_FMLA_STEP("v30", "v31", "3")
        "subs %[n], %[n], #1\n\t"
        "b.ne 1b\n\t"
        "// LLVM-MCA-END neon_sgemm_8x8\n\t"
        : [c00] "+w"(acc[0][0]), [c01] "+w"(acc[0][1]), [c10] "+w"(acc[1][0]), [c11] "+w"(acc[1][1]),
          [c20] "+w"(acc[2][0]), [c21] "+w"(acc[2][1]), [c30] "+w"(acc[3][0]), [c31] "+w"(acc[3][1]),
          [c40] "+w"(acc[4][0]), [c41] "+w"(acc[4][1]), [c50] "+w"(acc[5][0]), [c51] "+w"(acc[5][1]),
          [c60] "+w"(acc[6][0]), [c61] "+w"(acc[6][1]), [c70] "+w"(acc[7][0]), [c71] "+w"(acc[7][1]),
          [r0] "+r"(r0), [r1] "+r"(r1), [r2] "+r"(r2), [r3] "+r"(r3), [r4] "+r"(r4), [r5] "+r"(r5),
          [r6] "+r"(r6), [r7] "+r"(r7), [w] "+r"(wp), [n] "+r"(groups)
        :
        : "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29",
          "v30", "v31", "cc");
    *w = wp;
}
#define BK_SGEMM_ASM 1
#else
#define BK_SGEMM_ASM 0
BK_ALWAYS_INLINE void full_tile_steps(float32x4_t acc[T][2], const float *a, size_t lda, const float **w, size_t groups) {
    (void)acc, (void)a, (void)lda, (void)w, (void)groups;
}
#endif

BK_ALWAYS_INLINE void tile(const bk_fconv *k, const float *a, size_t lda, const float *w, float *out, size_t ldo,
                           int32_t o0, int32_t valid, const int np) {
    float32x4_t acc[T][2];
    for (int i = 0; i < np; i++) acc[i][0] = acc[i][1] = vdupq_n_f32(0);
    const size_t depth = (size_t)k->k;
    size_t kk = 0;
    if (BK_SGEMM_ASM && np == T && depth >= 4) {
        const float *wp = w;
        full_tile_steps(acc, a, lda, &wp, depth / 4);
        kk = depth / 4 * 4;
    }
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
    .gemm = gemm_neon,
};
#endif
