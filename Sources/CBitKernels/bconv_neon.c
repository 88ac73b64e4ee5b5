// aarch64 NEON binary micro-kernels: 4 pixels x 8 channels, 16 accumulator registers.
//
// Each depth step loads word k of the 8 channels of a group (four 128-bit registers, two
// channels each, one LD1) and broadcasts word k of each of the 4 pixels (LD1R), then
// per (pixel, channel pair): EOR, CNT and an accumulate. Two accumulations:
//
//   neon-4x8:          ADD of the CNT bytes into 8-bit accumulators, at most 31 words per
//                      block (31 * 8 = 248 < 256); a block ends with a pairwise reduction
//                      (UADDLP, ADDP; blocks of up to 15 words add byte pairs first) to
//                      eight 16-bit counts per pixel. When the whole receptive field is one
//                      block (up to 31 words), its first word initialises the accumulators
//                      (no zeroing, no add).
//   neon-dotprod-4x8:  UDOT of the CNT bytes with a vector of ones into 32-bit
//                      accumulators (Armv8.2 dotprod, Cortex-A76/Pi 5): no blocks; the
//                      reduction is two ADDP per pixel.
//
// Both keep counts in 16 bits (16-bit tables) up to 511 words per receptive field; their
// "-wide" forms keep 32-bit counts for deeper layers.
// The output transform is fused: packed outputs compare the eight 16-bit counts with the
// pattern's thresholds and gather the 8 mask bits into one byte per pixel; float outputs
// are one FMA per 4 channels.

#include "bk_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

// This spelling works with clang and gcc whatever -march/-mcpu the file is compiled with.
#define TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))

/// What the group loop needs, copied out of the kernel and the tile once per tile: the
/// packed outputs are byte stores, which may alias anything, so fields read through the
/// kernel and tile pointers would be reloaded after every channel group. A tile's pixels
/// are consecutive, so their output and shortcut rows are one pointer plus a stride.
typedef struct {
    const uint64_t *a[4];
    const uint8_t *table[4];   // each pixel's border-pattern row
    uint8_t *out;              // pixel 0's output row; pixel i's is out_stride bytes further
    size_t out_stride;
    const float *residual;     // pixel 0's shortcut row (pixel i's: + i * out_c) or NULL
    const uint64_t *weights;
    const float *scale;
    size_t run, skip, k_words;
    int32_t segments, out_c, bits;
    int32_t consecutive;       // pixel i's words are at a[0] + i (LD4R)
    int32_t shared_table;      // all pixels share one pattern (every interior tile)
} neon_tile;

/// Packs the tile's comparison masks (eight 16-bit lanes per pixel, channels c0..c0+7) into
/// one output byte per pixel.
BK_ALWAYS_INLINE void store_bits(const neon_tile *t, int32_t c0, const uint16x8_t *fires, const int np) {
    static const uint8_t bit_weights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t weights = vld1q_u8(bit_weights);
    uint8_t *out = t->out + ((uint32_t)c0 >> 3);
    if (np == 4) {
        // Masks to bytes (even bytes of the 16-bit lanes), bit weights, then three pairwise
        // adds leave pixel i's byte in lane i.
        uint8x16_t m01 = vandq_u8(vuzp1q_u8(vreinterpretq_u8_u16(fires[0]), vreinterpretq_u8_u16(fires[1])), weights);
        uint8x16_t m23 = vandq_u8(vuzp1q_u8(vreinterpretq_u8_u16(fires[2]), vreinterpretq_u8_u16(fires[3])), weights);
        uint8x16_t r = vpaddq_u8(m01, m23);
        r = vpaddq_u8(r, r);
        r = vpaddq_u8(r, r);
        vst1q_lane_u8(out, r, 0);
        vst1q_lane_u8(out + t->out_stride, r, 1);
        vst1q_lane_u8(out + 2 * t->out_stride, r, 2);
        vst1q_lane_u8(out + 3 * t->out_stride, r, 3);
    } else {
        for (int i = 0; i < np; i++)
            out[(size_t)i * t->out_stride] = vaddv_u8(vand_u8(vmovn_u16(fires[i]), vget_low_u8(weights)));
    }
}

/// y = offset + scale * count (+ shortcut) for channels c0..c0+7 of the tile's pixels, from
/// their counts as floats (low: c0..c0+3, high: c0+4..c0+7).
BK_ALWAYS_INLINE void store_floats(const neon_tile *t, int32_t c0, const float32x4_t *low, const float32x4_t *high,
                                   const int np) {
    const float32x4_t scale0 = vld1q_f32(t->scale + c0), scale1 = vld1q_f32(t->scale + c0 + 4);
    const int32_t valid = BK_MIN(8, t->out_c - c0);
    float32x4_t y0[4], y1[4];
    for (int i = 0; i < np; i++) {
        const float *offset = (const float *)t->table[t->shared_table ? 0 : i] + c0;
        y0[i] = vfmaq_f32(vld1q_f32(offset), scale0, low[i]);
        y1[i] = vfmaq_f32(vld1q_f32(offset + 4), scale1, high[i]);
    }
    float *out = (float *)(t->out) + c0;
    const size_t stride = t->out_stride / sizeof(float);
    if (valid == 8) {
        if (t->residual) {
            const float *shortcut = t->residual + c0;
            for (int i = 0; i < np; i++) {
                vst1q_f32(out + (size_t)i * stride, vaddq_f32(y0[i], vld1q_f32(shortcut + (size_t)i * stride)));
                vst1q_f32(out + (size_t)i * stride + 4, vaddq_f32(y1[i], vld1q_f32(shortcut + (size_t)i * stride + 4)));
            }
        } else {
            for (int i = 0; i < np; i++) {
                vst1q_f32(out + (size_t)i * stride, y0[i]);
                vst1q_f32(out + (size_t)i * stride + 4, y1[i]);
            }
        }
        return;
    }
    for (int i = 0; i < np; i++) {
        float lanes[8];
        vst1q_f32(lanes, y0[i]);
        vst1q_f32(lanes + 4, y1[i]);
        const float *shortcut = t->residual ? t->residual + c0 + (size_t)i * stride : NULL;
        for (int32_t j = 0; j < valid; j++) out[(size_t)i * stride + (size_t)j] = lanes[j] + (shortcut ? shortcut[j] : 0.0f);
    }
}

/// Output transform from eight 16-bit counts per pixel (16-bit threshold tables).
BK_ALWAYS_INLINE void store_counts16(const neon_tile *t, int32_t c0, const uint16x8_t *counts, const int np) {
    if (t->bits) {
        uint16x8_t fires[4];
        const int16x8_t shared = vld1q_s16((const int16_t *)t->table[0] + c0);
        for (int i = 0; i < np; i++)
            fires[i] = vcleq_s16(vreinterpretq_s16_u16(counts[i]),
                                 t->shared_table ? shared : vld1q_s16((const int16_t *)t->table[i] + c0));
        store_bits(t, c0, fires, np);
        return;
    }
    float32x4_t low[4], high[4];
    for (int i = 0; i < np; i++) {
        low[i] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(counts[i])));
        high[i] = vcvtq_f32_u32(vmovl_high_u16(counts[i]));
    }
    store_floats(t, c0, low, high, np);
}

/// Output transform from 2 x 4 32-bit counts per pixel (32-bit threshold tables).
BK_ALWAYS_INLINE void store_counts32(const neon_tile *t, int32_t c0, const uint32x4_t *low,
                                     const uint32x4_t *high, const int np) {
    if (t->bits) {
        uint16x8_t fires[4];
        for (int i = 0; i < np; i++) {
            const int32_t *limit = (const int32_t *)t->table[t->shared_table ? 0 : i] + c0;
            const uint32x4_t f0 = vcleq_s32(vreinterpretq_s32_u32(low[i]), vld1q_s32(limit));
            const uint32x4_t f1 = vcleq_s32(vreinterpretq_s32_u32(high[i]), vld1q_s32(limit + 4));
            fires[i] = vuzp1q_u16(vreinterpretq_u16_u32(f0), vreinterpretq_u16_u32(f1));
        }
        store_bits(t, c0, fires, np);
        return;
    }
    float32x4_t lowf[4], highf[4];
    for (int i = 0; i < np; i++) {
        lowf[i] = vcvtq_f32_u32(low[i]);
        highf[i] = vcvtq_f32_u32(high[i]);
    }
    store_floats(t, c0, lowf, highf, np);
}

// MARK: neon-4x8: 8-bit accumulation in blocks of up to 15 words

enum { BLOCK_WORDS = 31, NARROW_MAX_WORDS = 511 };

// One depth step for np pixels: word k of the group's 8 channels (one LD1 of four
// registers, post-incremented) against word k of each pixel (LD1R, post-incremented).
// The intrinsics form serves partial tiles (and gcc); full tiles use the assembly below.
#define BK_STEP(OP)                                                                        \
    do {                                                                                   \
        const uint64x2x4_t wv = vld1q_u64_x4(w);                                           \
        w += 8;                                                                            \
        for (int i = 0; i < np; i++) {                                                     \
            const uint8x16_t x = vreinterpretq_u8_u64(vld1q_dup_u64(p[i]));                \
            p[i]++;                                                                        \
            for (int j = 0; j < 4; j++) OP(acc[i][j], vcntq_u8(veorq_u8(x, vreinterpretq_u8_u64(wv.val[j])))); \
        }                                                                                  \
    } while (0)
#define BK_SET(acc, value) ((acc) = (value))
#define BK_ADD(acc, value) ((acc) = vaddq_u8((acc), (value)))

// MARK: full 4-pixel tiles in inline assembly (clang; gcc counts read-write operands twice
// and allows 30, so it compiles the intrinsics form instead)
//
// From intrinsics, LLVM's loop strength reduction turns the four post-incremented pixel
// pointers into one index plus four address adds per step, and the loops over kernel rows
// cost a dozen instructions each around them, so a whole receptive field is one assembly
// block: v24-v27 hold word k of the group's 8 channels (LD1, post-incremented), v28-v31 the
// 4 pixels' words (four LD1R, or one LD4R when the pixels' words are consecutive in memory:
// 64-channel rows read in place at stride 1), v22/v23 the XOR/CNT temporaries, and the 16
// accumulators are operands in v0-v21. After a kernel row the pixel pointers have moved
// `run` words and skip `skip` words to the next.

#if defined(__clang__)
#define BK_NEON_ASM 1
#else
#define BK_NEON_ASM 0
#endif

#define BK_ASM_ACCUMULATORS(C)                                                            \
    [a00] C(acc[0][0]), [a01] C(acc[0][1]), [a02] C(acc[0][2]), [a03] C(acc[0][3]),      \
    [a10] C(acc[1][0]), [a11] C(acc[1][1]), [a12] C(acc[1][2]), [a13] C(acc[1][3]),      \
    [a20] C(acc[2][0]), [a21] C(acc[2][1]), [a22] C(acc[2][2]), [a23] C(acc[2][3]),      \
    [a30] C(acc[3][0]), [a31] C(acc[3][1]), [a32] C(acc[3][2]), [a33] C(acc[3][3])
#define BK_ASM_POINTERS [p0] "+r"(p[0]), [p1] "+r"(p[1]), [p2] "+r"(p[2]), [p3] "+r"(p[3]), [w] "+r"(w)
// No "memory" clobber: the loops only read the input and the weights, which nothing in
// these functions writes; without it the compiler keeps the tile's pointers and the output
// transform's operands in registers.
#define BK_ASM_CLOBBERS "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30", "v31", "cc"

// acc[i][j] (OP)= cnt(x ^ w_j) for the four channel pairs of the pixel in register X; OP
// gets the accumulator and the XOR in a temporary and does the CNT itself.
#define BK_PIXEL(OP, X, A0, A1, A2, A3)       \
    "eor v22.16b, v24.16b, " X ".16b\n\t"    \
    "eor v23.16b, v25.16b, " X ".16b\n\t"    \
    OP(A0, "v22") OP(A1, "v23")               \
    "eor v22.16b, v26.16b, " X ".16b\n\t"    \
    "eor v23.16b, v27.16b, " X ".16b\n\t"    \
    OP(A2, "v22") OP(A3, "v23")
#define BK_ASM_ADD(A, T) "cnt " T ".16b, " T ".16b\n\t" "add %[" A "].16b, %[" A "].16b, " T ".16b\n\t"
#define BK_ASM_SET(A, T) "cnt %[" A "].16b, " T ".16b\n\t"
#define BK_ASM_UDOT(A, T) "cnt " T ".16b, " T ".16b\n\t" "udot %[" A "].4s, " T ".16b, %[ones].16b\n\t"

#define BK_LOAD_1R                                  \
    "ld1r {v28.2d}, [%[p0]], #8\n\t"                \
    "ld1r {v29.2d}, [%[p1]], #8\n\t"                \
    "ld1r {v30.2d}, [%[p2]], #8\n\t"                \
    "ld1r {v31.2d}, [%[p3]], #8\n\t"
#define BK_LOAD_4R "ld4r {v28.2d, v29.2d, v30.2d, v31.2d}, [%[p0]], %[eight]\n\t"
#define BK_SKIP_1R                                  \
    "add %[p0], %[p0], %[skip]\n\t"                 \
    "add %[p1], %[p1], %[skip]\n\t"                 \
    "add %[p2], %[p2], %[skip]\n\t"                 \
    "add %[p3], %[p3], %[skip]\n\t"
#define BK_SKIP_4R "add %[p0], %[p0], %[skip]\n\t"

#define BK_ASM_STEP(LOAD, OP)                                         \
    "ld1 {v24.2d, v25.2d, v26.2d, v27.2d}, [%[w]], #64\n\t"           \
    LOAD                                                               \
    BK_PIXEL(OP, "v28", "a00", "a01", "a02", "a03")                   \
    BK_PIXEL(OP, "v29", "a10", "a11", "a12", "a13")                   \
    BK_PIXEL(OP, "v30", "a20", "a21", "a22", "a23")                   \
    BK_PIXEL(OP, "v31", "a30", "a31", "a32", "a33")

/// A whole receptive field as one 8-bit block: the first step sets the accumulators.
#define BK_ASM_SINGLE_BLOCK(LOAD, SKIP, NAME)                                                \
    __asm__ volatile(BK_ASM_STEP(LOAD, BK_ASM_SET)                                           \
                     "subs %[n], %[run], #1\n\t"                                             \
                     "b.eq 2f\n\t"                                                           \
                     "1:\n\t" BK_ASM_STEP(LOAD, BK_ASM_ADD)                                  \
                     "subs %[n], %[n], #1\n\t"                                               \
                     "b.ne 1b\n\t"                                                           \
                     "2:\n\t"                                                                \
                     "subs %[rows], %[rows], #1\n\t"                                         \
                     "b.eq 4f\n\t"                                                           \
                     SKIP                                                                    \
                     "mov %[n], %[run]\n\t"                                                  \
                     "// LLVM-MCA-BEGIN " NAME "\n\t"                                        \
                     "3:\n\t" BK_ASM_STEP(LOAD, BK_ASM_ADD)                                  \
                     "subs %[n], %[n], #1\n\t"                                               \
                     "b.ne 3b\n\t"                                                           \
                     "// LLVM-MCA-END " NAME "\n\t"                                          \
                     "b 2b\n\t"                                                              \
                     "4:\n\t"                                                                \
                     : BK_ASM_ACCUMULATORS("=&w"), BK_ASM_POINTERS, [n] "=&r"(steps), [rows] "+r"(rows) \
                     : [run] "r"(run), [skip] "r"(skip_bytes), [eight] "r"((size_t)8)        \
                     : BK_ASM_CLOBBERS)

/// A 3x3 receptive field of one word per tap (64 input channels or fewer), straight-line:
/// the first step sets, eight add, two row skips; no loop overhead at all.
#define BK_ASM_FIELD_3X3(LOAD, SKIP)                                                         \
    __asm__ volatile(BK_ASM_STEP(LOAD, BK_ASM_SET)                                           \
                     BK_ASM_STEP(LOAD, BK_ASM_ADD) BK_ASM_STEP(LOAD, BK_ASM_ADD) SKIP         \
                     BK_ASM_STEP(LOAD, BK_ASM_ADD) BK_ASM_STEP(LOAD, BK_ASM_ADD)              \
                     BK_ASM_STEP(LOAD, BK_ASM_ADD) SKIP                                       \
                     BK_ASM_STEP(LOAD, BK_ASM_ADD) BK_ASM_STEP(LOAD, BK_ASM_ADD)              \
                     BK_ASM_STEP(LOAD, BK_ASM_ADD)                                            \
                     : BK_ASM_ACCUMULATORS("=&w"), BK_ASM_POINTERS                           \
                     : [skip] "r"(skip_bytes), [eight] "r"((size_t)8)                        \
                     : BK_ASM_CLOBBERS)

/// `count` (>= 1) steps of one kernel row adding to the accumulators.
#define BK_ASM_ADD_STEPS(LOAD, count)                                                        \
    do {                                                                                     \
        size_t steps_ = (count);                                                             \
        __asm__ volatile("1:\n\t" BK_ASM_STEP(LOAD, BK_ASM_ADD) "subs %[n], %[n], #1\n\t"    \
                         "b.ne 1b\n\t"                                                       \
                         : BK_ASM_ACCUMULATORS("+w"), BK_ASM_POINTERS, [n] "+r"(steps_)      \
                         : [eight] "r"((size_t)8)                                            \
                         : BK_ASM_CLOBBERS);                                                 \
    } while (0)

/// The whole receptive field with UDOT into 32-bit accumulators (zeroed by the caller).
#define BK_ASM_UDOT_FIELD(LOAD, SKIP, NAME)                                                  \
    __asm__ volatile(".arch_extension dotprod\n\t"                                           \
                     "1:\n\t"                                                                \
                     "mov %[n], %[run]\n\t"                                                  \
                     "// LLVM-MCA-BEGIN " NAME "\n\t"                                        \
                     "2:\n\t" BK_ASM_STEP(LOAD, BK_ASM_UDOT)                                 \
                     "subs %[n], %[n], #1\n\t"                                               \
                     "b.ne 2b\n\t"                                                           \
                     "// LLVM-MCA-END " NAME "\n\t"                                                           \
                     "subs %[rows], %[rows], #1\n\t"                                         \
                     "b.eq 3f\n\t"                                                           \
                     SKIP                                                                    \
                     "b 1b\n\t"                                                              \
                     "3:\n\t"                                                                \
                     : BK_ASM_ACCUMULATORS("+w"), BK_ASM_POINTERS, [n] "=&r"(steps), [rows] "+r"(rows) \
                     : [run] "r"(run), [skip] "r"(skip_bytes), [eight] "r"((size_t)8), [ones] "w"(ones) \
                     : BK_ASM_CLOBBERS)

#if !BK_NEON_ASM
#undef BK_ASM_SINGLE_BLOCK
#undef BK_ASM_FIELD_3X3
#undef BK_ASM_ADD_STEPS
#undef BK_ASM_UDOT_FIELD
#define BK_ASM_SINGLE_BLOCK(LOAD, SKIP, NAME) ((void)0)
#define BK_ASM_FIELD_3X3(LOAD, SKIP) ((void)0)
#define BK_ASM_ADD_STEPS(LOAD, count) ((void)(count))
#define BK_ASM_UDOT_FIELD(LOAD, SKIP, NAME) ((void)0)
#endif

/// Pairwise reduction of a block's byte counters to eight 16-bit counts per pixel, added
/// to the running totals. Blocks of up to 15 words add byte pairs first (at most 240);
/// longer ones widen first.
#define BK_REDUCE_BLOCK(FIRST, SHORT)                                                            \
    do {                                                                                         \
        for (int i = 0; i < np; i++) {                                                           \
            /* acc[i][j] holds channel 2j in bytes 0-7 and 2j+1 in bytes 8-15. */                \
            uint16x8_t low, high;                                                                \
            if (SHORT) {                                                                         \
                low = vpaddlq_u8(vpaddq_u8(acc[i][0], acc[i][1]));   /* c0c0 c1c1 c2c2 c3c3 */   \
                high = vpaddlq_u8(vpaddq_u8(acc[i][2], acc[i][3]));  /* c4 ... c7 */             \
            } else {                                                                             \
                low = vpaddq_u16(vpaddlq_u8(acc[i][0]), vpaddlq_u8(acc[i][1]));                  \
                high = vpaddq_u16(vpaddlq_u8(acc[i][2]), vpaddlq_u8(acc[i][3]));                 \
            }                                                                                    \
            const uint16x8_t sums = vpaddq_u16(low, high);  /* c0 ... c7 */                      \
            if (wide) {                                                                          \
                total_low[i] = vaddw_u16(total_low[i], vget_low_u16(sums));                      \
                total_high[i] = vaddw_high_u16(total_high[i], sums);                             \
            } else {                                                                             \
                total[i] = (FIRST) ? sums : vaddq_u16(total[i], sums);                           \
            }                                                                                    \
        }                                                                                        \
    } while (0)

enum { MODE_WIDE = 1, MODE_SINGLE = 2, MODE_SHORT = 4, MODE_3X3 = 8 };

/// `mode` (constant at each call): MODE_WIDE keeps totals in 32 bits (any depth, 32-bit
/// tables) instead of 16 (up to 511 words); MODE_SINGLE: the receptive field is one block;
/// MODE_SHORT: at most 15 words; MODE_3X3: a 3x3 kernel of one word per tap. `w` points at the channel group's weights.
BK_ALWAYS_INLINE void tile_u8(const neon_tile *t, const uint64_t *w, int32_t c0, const int np, const int mode) {
    const int wide = mode & MODE_WIDE;
    const size_t run = t->run, skip = t->skip;
    uint16x8_t total[4];
    uint32x4_t total_low[4], total_high[4];
    if (wide)
        for (int i = 0; i < np; i++) total_low[i] = total_high[i] = vdupq_n_u32(0);
    uint8x16_t acc[4][4];
    const uint64_t *p[4];
    for (int i = 0; i < np; i++) p[i] = t->a[i];
    if (mode & MODE_SINGLE) {
        // The whole receptive field is one block (3x3 layers up to 192 channels): the first
        // step sets the accumulators, no zeroing, one reduction.
        if (BK_NEON_ASM && np == 4) {
            size_t steps, rows = (size_t)t->segments;
            const size_t skip_bytes = skip * 8;
            (void)steps, (void)rows, (void)skip_bytes;
            if (mode & MODE_3X3) {
                if (t->consecutive) BK_ASM_FIELD_3X3(BK_LOAD_4R, BK_SKIP_4R);
                else BK_ASM_FIELD_3X3(BK_LOAD_1R, BK_SKIP_1R);
            } else if (t->consecutive) {
                BK_ASM_SINGLE_BLOCK(BK_LOAD_4R, BK_SKIP_4R, "neon_4x8_ld4r");
            } else {
                BK_ASM_SINGLE_BLOCK(BK_LOAD_1R, BK_SKIP_1R, "neon_4x8_ld1r");
            }
        } else {
            BK_STEP(BK_SET);
            for (size_t j = 1; j < run; j++) BK_STEP(BK_ADD);
            for (int32_t segment = 1; segment < t->segments; segment++) {
                for (int i = 0; i < np; i++) p[i] += skip;
                for (size_t j = 0; j < run; j++) BK_STEP(BK_ADD);
            }
        }
        BK_REDUCE_BLOCK(1, mode & MODE_SHORT);
    } else {
        for (int i = 0; i < np; i++)
            for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_u8(0);
        size_t in_block = 0;
        int first_block = 1;
        for (int32_t segment = 0; segment < t->segments; segment++) {
            if (segment)
                for (int i = 0; i < np; i++) p[i] += skip;
            size_t left = run;
            while (left) {
                const size_t n = left < BLOCK_WORDS - in_block ? left : BLOCK_WORDS - in_block;
                if (BK_NEON_ASM && np == 4) {
                    if (t->consecutive) BK_ASM_ADD_STEPS(BK_LOAD_4R, n);
                    else BK_ASM_ADD_STEPS(BK_LOAD_1R, n);
                } else {
                    for (size_t j = 0; j < n; j++) BK_STEP(BK_ADD);
                }
                left -= n;
                in_block += n;
                if (in_block == BLOCK_WORDS) {
                    BK_REDUCE_BLOCK(first_block, 0);
                    first_block = 0;
                    in_block = 0;
                    for (int i = 0; i < np; i++)
                        for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_u8(0);
                }
            }
        }
        if (in_block) BK_REDUCE_BLOCK(first_block, 0);
    }
    if (wide) store_counts32(t, c0, total_low, total_high, np);
    else store_counts16(t, c0, total, np);
}

/// The tile's invariants in a local (see neon_tile).
BK_ALWAYS_INLINE neon_tile neon_tile_of(const bk_bconv *k, const bk_btile *b) {
    neon_tile t;
    for (int i = 0; i < 4; i++) {
        const int valid = i < b->pixels;
        t.a[i] = valid ? b->a[i] : NULL;
        t.table[i] = valid ? (const uint8_t *)b->table[i] : NULL;
    }
    t.out = (uint8_t *)b->out[0];
    t.out_stride = k->desc.output == BK_OUTPUT_BITS ? (size_t)k->out_words * 8 : (size_t)k->desc.out_c * sizeof(float);
    t.residual = b->residual[0];
    t.weights = k->weights;
    t.scale = k->scale;
    t.run = (size_t)k->segment_words;
    t.skip = b->segment_stride - t.run;
    t.k_words = (size_t)k->k_words;
    t.segments = k->segments;
    t.out_c = k->desc.out_c;
    t.bits = k->desc.output == BK_OUTPUT_BITS;
    t.consecutive = b->pixels == 4 && b->a[1] == b->a[0] + 1 && b->a[2] == b->a[0] + 2 && b->a[3] == b->a[0] + 3;
    t.shared_table = b->pixels == 4 && b->table[1] == b->table[0] && b->table[2] == b->table[0] && b->table[3] == b->table[0];
    return t;
}

#define BK_NEON_GROUPS(FN, NP, MODE)                                                      \
    do {                                                                                  \
        const size_t group_words = t.k_words * 8;                                         \
        const uint64_t *w = t.weights + (size_t)((uint32_t)c_begin >> 3) * group_words;   \
        for (int32_t c = c_begin; c < c_end_padded; c += 8, w += group_words) FN(&t, w, c, NP, MODE); \
    } while (0)
#define BK_NEON_TILES(FN, WIDE)                                                       \
    do {                                                                              \
        const int32_t c_end_padded = BK_MIN(BK_ROUND_UP(c_end, 8), k->padded_channels); \
        const neon_tile t = neon_tile_of(k, b);                                       \
        switch (b->pixels) {                                                          \
        case 4: BK_NEON_GROUPS(FN, 4, WIDE); break;                                   \
        case 3: BK_NEON_GROUPS(FN, 3, WIDE); break;                                   \
        case 2: BK_NEON_GROUPS(FN, 2, WIDE); break;                                   \
        case 1: BK_NEON_GROUPS(FN, 1, WIDE); break;                                   \
        default: break;                                                               \
        }                                                                             \
    } while (0)

#define BK_NEON_BATCH(FN, MODE)                                  \
    for (int32_t index = 0; index < count; index++) {            \
        const bk_btile *b = &tiles[index];                       \
        BK_NEON_TILES(FN, MODE);                                 \
    }

// The kernel's shape picks the form once per batch.
static void tile_neon(const bk_bconv *k, const bk_btile *tiles, int32_t count, int32_t c_begin, int32_t c_end) {
    if (k->segments == 3 && k->segment_words == 3) BK_NEON_BATCH(tile_u8, MODE_SINGLE | MODE_SHORT | MODE_3X3)
    else if (k->k_words <= 15) BK_NEON_BATCH(tile_u8, MODE_SINGLE | MODE_SHORT)
    else if (k->k_words <= BLOCK_WORDS) BK_NEON_BATCH(tile_u8, MODE_SINGLE)
    else BK_NEON_BATCH(tile_u8, 0)
}
static void tile_neon_wide(const bk_bconv *k, const bk_btile *tiles, int32_t count, int32_t c_begin, int32_t c_end) {
    BK_NEON_BATCH(tile_u8, MODE_WIDE)
}

const bk_bconv_variant bk_bconv_neon_4x8 = {
    .name = "neon-4x8",
    .isa = BK_ISA_NEON,
    .tile_pixels = 4,
    .channel_group = 8,
    .bits_quantum = 8,
    .float_quantum = 8,
    .table_kind = BK_TABLE_I16,
    .max_k_words = NARROW_MAX_WORDS,
    .min_k_words = 0,
    .tiles = tile_neon,
};

const bk_bconv_variant bk_bconv_neon_4x8_wide = {
    .name = "neon-4x8-wide",
    .isa = BK_ISA_NEON,
    .tile_pixels = 4,
    .channel_group = 8,
    .bits_quantum = 8,
    .float_quantum = 8,
    .table_kind = BK_TABLE_I32,
    .max_k_words = 0,
    .min_k_words = 0,
    .tiles = tile_neon_wide,
};

// MARK: neon-dotprod-4x8: UDOT into 32-bit accumulators

BK_ALWAYS_INLINE TARGET_DOTPROD void tile_udot(const neon_tile *t, const uint64_t *w, int32_t c0, const int np, const int mode) {
    const int wide = mode & MODE_WIDE;
    const size_t run = t->run, skip = t->skip;
    const uint8x16_t ones = vdupq_n_u8(1);
    uint32x4_t acc[4][4];
    for (int i = 0; i < np; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_u32(0);
    const uint64_t *p[4];
    for (int i = 0; i < np; i++) p[i] = t->a[i];
    if (BK_NEON_ASM && np == 4) {
        size_t steps, rows = (size_t)t->segments;
        const size_t skip_bytes = skip * 8;
        (void)steps, (void)rows, (void)skip_bytes;
        if (t->consecutive) BK_ASM_UDOT_FIELD(BK_LOAD_4R, BK_SKIP_4R, "neon_udot_4x8_ld4r");
        else BK_ASM_UDOT_FIELD(BK_LOAD_1R, BK_SKIP_1R, "neon_udot_4x8_ld1r");
    } else {
#define BK_UDOT(acc, value) ((acc) = vdotq_u32((acc), (value), ones))
        for (int32_t segment = 0; segment < t->segments; segment++) {
            if (segment)
                for (int i = 0; i < np; i++) p[i] += skip;
            for (size_t j = 0; j < run; j++) BK_STEP(BK_UDOT);
        }
#undef BK_UDOT
    }
    // acc[i][j] lanes: c2j, c2j, c2j+1, c2j+1 (two 32-bit halves per channel).
    uint32x4_t low[4], high[4];
    uint16x8_t total[4];
    for (int i = 0; i < np; i++) {
        low[i] = vpaddq_u32(acc[i][0], acc[i][1]);   // c0 c1 c2 c3
        high[i] = vpaddq_u32(acc[i][2], acc[i][3]);  // c4 c5 c6 c7
        if (!wide) total[i] = vuzp1q_u16(vreinterpretq_u16_u32(low[i]), vreinterpretq_u16_u32(high[i]));
    }
    if (wide) store_counts32(t, c0, low, high, np);
    else store_counts16(t, c0, total, np);
}

static TARGET_DOTPROD void tile_neon_dotprod(const bk_bconv *k, const bk_btile *tiles, int32_t count, int32_t c_begin,
                                             int32_t c_end) {
    BK_NEON_BATCH(tile_udot, 0)
}
static TARGET_DOTPROD void tile_neon_dotprod_wide(const bk_bconv *k, const bk_btile *tiles, int32_t count,
                                                  int32_t c_begin, int32_t c_end) {
    BK_NEON_BATCH(tile_udot, MODE_WIDE)
}

const bk_bconv_variant bk_bconv_neon_dotprod_4x8 = {
    .name = "neon-dotprod-4x8",
    .isa = BK_ISA_NEON_DOTPROD,
    .tile_pixels = 4,
    .channel_group = 8,
    .bits_quantum = 8,
    .float_quantum = 8,
    .table_kind = BK_TABLE_I16,
    .max_k_words = NARROW_MAX_WORDS,
    // Up to one block of the 8-bit kernel, its unzeroed start wins; beyond, the blocks'
    // zeroing and reductions cost more than UDOT's.
    .min_k_words = BLOCK_WORDS + 1,
    .tiles = tile_neon_dotprod,
};

const bk_bconv_variant bk_bconv_neon_dotprod_4x8_wide = {
    .name = "neon-dotprod-4x8-wide",
    .isa = BK_ISA_NEON_DOTPROD,
    .tile_pixels = 4,
    .channel_group = 8,
    .bits_quantum = 8,
    .float_quantum = 8,
    .table_kind = BK_TABLE_I32,
    .max_k_words = 0,
    .min_k_words = NARROW_MAX_WORDS + 1,
    .tiles = tile_neon_dotprod_wide,
};
#endif
