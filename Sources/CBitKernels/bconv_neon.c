// aarch64 NEON binary micro-kernels: 4 pixels x 8 channels, 16 accumulator registers.
//
// Each depth step loads word k of the 8 channels of a group (four 128-bit registers, two
// channels each, one LD1) and broadcasts word k of each of the 4 pixels (LD1R), then
// per (pixel, channel pair): EOR, CNT and an accumulate. Two accumulations:
//
//   neon-4x8:          ADD of the CNT bytes into 8-bit accumulators, at most 15 words per
//                      block (15 * 8 = 120, and one pairwise step doubles it: 240 < 256);
//                      a block ends with a pairwise reduction (ADDP, UADDLP, ADDP) to eight
//                      16-bit counts per pixel. The first word of a block initialises the
//                      accumulators (no zeroing, no add).
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

/// Packs the tile's comparison masks (eight 16-bit lanes per pixel, channels c0..c0+7) into
/// one output byte per pixel.
BK_ALWAYS_INLINE void store_bits(const bk_btile *t, int32_t c0, const uint16x8_t *fires, const int np) {
    static const uint8_t bit_weights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t weights = vld1q_u8(bit_weights);
    if (np == 4) {
        // Masks to bytes (even bytes of the 16-bit lanes), bit weights, then three pairwise
        // adds leave pixel i's byte in lane i.
        uint8x16_t m01 = vandq_u8(vuzp1q_u8(vreinterpretq_u8_u16(fires[0]), vreinterpretq_u8_u16(fires[1])), weights);
        uint8x16_t m23 = vandq_u8(vuzp1q_u8(vreinterpretq_u8_u16(fires[2]), vreinterpretq_u8_u16(fires[3])), weights);
        uint8x16_t r = vpaddq_u8(m01, m23);
        r = vpaddq_u8(r, r);
        r = vpaddq_u8(r, r);
        vst1q_lane_u8((uint8_t *)t->out[0] + c0 / 8, r, 0);
        vst1q_lane_u8((uint8_t *)t->out[1] + c0 / 8, r, 1);
        vst1q_lane_u8((uint8_t *)t->out[2] + c0 / 8, r, 2);
        vst1q_lane_u8((uint8_t *)t->out[3] + c0 / 8, r, 3);
    } else {
        for (int i = 0; i < np; i++)
            ((uint8_t *)t->out[i])[c0 / 8] = vaddv_u8(vand_u8(vmovn_u16(fires[i]), vget_low_u8(weights)));
    }
}

/// y = offset + scale * count (+ shortcut) for channels c0..c0+7 of pixel i.
BK_ALWAYS_INLINE void store_floats(const bk_bconv *k, const bk_btile *t, int32_t c0, int i, float32x4_t low, float32x4_t high) {
    const int32_t valid = BK_MIN(8, k->desc.out_c - c0);
    const float *offset = (const float *)t->table[i] + c0;
    float32x4_t y0 = vfmaq_f32(vld1q_f32(offset), vld1q_f32(k->scale + c0), low);
    float32x4_t y1 = vfmaq_f32(vld1q_f32(offset + 4), vld1q_f32(k->scale + c0 + 4), high);
    float *out = (float *)t->out[i] + c0;
    const float *shortcut = t->residual[i] ? t->residual[i] + c0 : NULL;
    if (valid == 8) {
        if (shortcut) {
            y0 = vaddq_f32(y0, vld1q_f32(shortcut));
            y1 = vaddq_f32(y1, vld1q_f32(shortcut + 4));
        }
        vst1q_f32(out, y0);
        vst1q_f32(out + 4, y1);
    } else {
        float lanes[8];
        vst1q_f32(lanes, y0);
        vst1q_f32(lanes + 4, y1);
        for (int32_t j = 0; j < valid; j++) out[j] = lanes[j] + (shortcut ? shortcut[j] : 0.0f);
    }
}

/// Output transform from eight 16-bit counts per pixel (16-bit threshold tables).
BK_ALWAYS_INLINE void store_counts16(const bk_bconv *k, const bk_btile *t, int32_t c0, const uint16x8_t *counts, const int np) {
    if (k->desc.output == BK_OUTPUT_BITS) {
        uint16x8_t fires[4];
        for (int i = 0; i < np; i++)
            fires[i] = vcleq_s16(vreinterpretq_s16_u16(counts[i]), vld1q_s16((const int16_t *)t->table[i] + c0));
        store_bits(t, c0, fires, np);
        return;
    }
    for (int i = 0; i < np; i++)
        store_floats(k, t, c0, i, vcvtq_f32_u32(vmovl_u16(vget_low_u16(counts[i]))), vcvtq_f32_u32(vmovl_high_u16(counts[i])));
}

/// Output transform from 2 x 4 32-bit counts per pixel (32-bit threshold tables).
BK_ALWAYS_INLINE void store_counts32(const bk_bconv *k, const bk_btile *t, int32_t c0, const uint32x4_t *low,
                                     const uint32x4_t *high, const int np) {
    if (k->desc.output == BK_OUTPUT_BITS) {
        uint16x8_t fires[4];
        for (int i = 0; i < np; i++) {
            const int32_t *limit = (const int32_t *)t->table[i] + c0;
            const uint32x4_t f0 = vcleq_s32(vreinterpretq_s32_u32(low[i]), vld1q_s32(limit));
            const uint32x4_t f1 = vcleq_s32(vreinterpretq_s32_u32(high[i]), vld1q_s32(limit + 4));
            fires[i] = vuzp1q_u16(vreinterpretq_u16_u32(f0), vreinterpretq_u16_u32(f1));
        }
        store_bits(t, c0, fires, np);
        return;
    }
    for (int i = 0; i < np; i++) store_floats(k, t, c0, i, vcvtq_f32_u32(low[i]), vcvtq_f32_u32(high[i]));
}

// MARK: neon-4x8: 8-bit accumulation in blocks of up to 15 words

enum { BLOCK_WORDS = 15, NARROW_MAX_WORDS = 511 };

/// `wide`: totals in 32 bits (any depth, 32-bit tables) instead of 16 (up to 511 words).
BK_ALWAYS_INLINE void tile_u8(const bk_bconv *k, const bk_btile *t, int32_t c0, const int np, const int wide) {
    const size_t depth = (size_t)k->k_words, lda = t->lda;
    const uint64_t *w = k->weights + (size_t)(c0 / 8) * depth * 8;
    const uint64_t *a[4];
    for (int i = 0; i < np; i++) a[i] = t->a + (size_t)i * lda;
    uint16x8_t total[4];
    uint32x4_t total_low[4], total_high[4];
    if (wide)
        for (int i = 0; i < np; i++) total_low[i] = total_high[i] = vdupq_n_u32(0);
    size_t kk = 0;
    int first_block = 1;
    do {  // depth >= 1
        const size_t end = kk + BLOCK_WORDS < depth ? kk + BLOCK_WORDS : depth;
        uint8x16_t acc[4][4];
        {
            const uint8x16_t w0 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8));
            const uint8x16_t w1 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8 + 2));
            const uint8x16_t w2 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8 + 4));
            const uint8x16_t w3 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8 + 6));
            for (int i = 0; i < np; i++) {
                const uint8x16_t x = vreinterpretq_u8_u64(vld1q_dup_u64(a[i] + kk));
                acc[i][0] = vcntq_u8(veorq_u8(x, w0));
                acc[i][1] = vcntq_u8(veorq_u8(x, w1));
                acc[i][2] = vcntq_u8(veorq_u8(x, w2));
                acc[i][3] = vcntq_u8(veorq_u8(x, w3));
            }
        }
        for (kk++; kk < end; kk++) {
            const uint8x16_t w0 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8));
            const uint8x16_t w1 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8 + 2));
            const uint8x16_t w2 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8 + 4));
            const uint8x16_t w3 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8 + 6));
            for (int i = 0; i < np; i++) {
                const uint8x16_t x = vreinterpretq_u8_u64(vld1q_dup_u64(a[i] + kk));
                acc[i][0] = vaddq_u8(acc[i][0], vcntq_u8(veorq_u8(x, w0)));
                acc[i][1] = vaddq_u8(acc[i][1], vcntq_u8(veorq_u8(x, w1)));
                acc[i][2] = vaddq_u8(acc[i][2], vcntq_u8(veorq_u8(x, w2)));
                acc[i][3] = vaddq_u8(acc[i][3], vcntq_u8(veorq_u8(x, w3)));
            }
        }
        // acc[i][j] holds channel 2j in bytes 0-7 and 2j+1 in bytes 8-15.
        for (int i = 0; i < np; i++) {
            const uint16x8_t low = vpaddlq_u8(vpaddq_u8(acc[i][0], acc[i][1]));   // c0 c0 c1 c1 c2 c2 c3 c3
            const uint16x8_t high = vpaddlq_u8(vpaddq_u8(acc[i][2], acc[i][3]));  // c4 ... c7
            const uint16x8_t sums = vpaddq_u16(low, high);                        // c0 ... c7
            if (wide) {
                total_low[i] = vaddw_u16(total_low[i], vget_low_u16(sums));
                total_high[i] = vaddw_high_u16(total_high[i], sums);
            } else {
                total[i] = first_block ? sums : vaddq_u16(total[i], sums);
            }
        }
        first_block = 0;
    } while (kk < depth);
    if (wide) store_counts32(k, t, c0, total_low, total_high, np);
    else store_counts16(k, t, c0, total, np);
}

#define BK_NEON_TILES(FN, WIDE)                                                       \
    do {                                                                              \
        const int32_t c_end_padded = BK_MIN(BK_ROUND_UP(c_end, 8), k->padded_channels); \
        for (int32_t c = c_begin; c < c_end_padded; c += 8) {                         \
            switch (t->pixels) {                                                      \
            case 4: FN(k, t, c, 4, WIDE); break;                                      \
            case 3: FN(k, t, c, 3, WIDE); break;                                      \
            case 2: FN(k, t, c, 2, WIDE); break;                                      \
            case 1: FN(k, t, c, 1, WIDE); break;                                      \
            default: break;                                                           \
            }                                                                         \
        }                                                                             \
    } while (0)

static void tile_neon(const bk_bconv *k, const bk_btile *t, int32_t c_begin, int32_t c_end) { BK_NEON_TILES(tile_u8, 0); }
static void tile_neon_wide(const bk_bconv *k, const bk_btile *t, int32_t c_begin, int32_t c_end) { BK_NEON_TILES(tile_u8, 1); }

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
    .tile = tile_neon,
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
    .tile = tile_neon_wide,
};

// MARK: neon-dotprod-4x8: UDOT into 32-bit accumulators

BK_ALWAYS_INLINE TARGET_DOTPROD void tile_udot(const bk_bconv *k, const bk_btile *t, int32_t c0, const int np, const int wide) {
    const size_t depth = (size_t)k->k_words, lda = t->lda;
    const uint64_t *w = k->weights + (size_t)(c0 / 8) * depth * 8;
    const uint64_t *a[4];
    for (int i = 0; i < np; i++) a[i] = t->a + (size_t)i * lda;
    const uint8x16_t ones = vdupq_n_u8(1);
    uint32x4_t acc[4][4];
    for (int i = 0; i < np; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = vdupq_n_u32(0);
    for (size_t kk = 0; kk < depth; kk++) {
        const uint8x16_t w0 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8));
        const uint8x16_t w1 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8 + 2));
        const uint8x16_t w2 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8 + 4));
        const uint8x16_t w3 = vreinterpretq_u8_u64(vld1q_u64(w + kk * 8 + 6));
        for (int i = 0; i < np; i++) {
            const uint8x16_t x = vreinterpretq_u8_u64(vld1q_dup_u64(a[i] + kk));
            acc[i][0] = vdotq_u32(acc[i][0], vcntq_u8(veorq_u8(x, w0)), ones);
            acc[i][1] = vdotq_u32(acc[i][1], vcntq_u8(veorq_u8(x, w1)), ones);
            acc[i][2] = vdotq_u32(acc[i][2], vcntq_u8(veorq_u8(x, w2)), ones);
            acc[i][3] = vdotq_u32(acc[i][3], vcntq_u8(veorq_u8(x, w3)), ones);
        }
    }
    // acc[i][j] lanes: c2j, c2j, c2j+1, c2j+1 (two 32-bit halves per channel).
    uint32x4_t low[4], high[4];
    uint16x8_t total[4];
    for (int i = 0; i < np; i++) {
        low[i] = vpaddq_u32(acc[i][0], acc[i][1]);   // c0 c1 c2 c3
        high[i] = vpaddq_u32(acc[i][2], acc[i][3]);  // c4 c5 c6 c7
        if (!wide) total[i] = vuzp1q_u16(vreinterpretq_u16_u32(low[i]), vreinterpretq_u16_u32(high[i]));
    }
    if (wide) store_counts32(k, t, c0, low, high, np);
    else store_counts16(k, t, c0, total, np);
}

static TARGET_DOTPROD void tile_neon_dotprod(const bk_bconv *k, const bk_btile *t, int32_t c_begin, int32_t c_end) {
    BK_NEON_TILES(tile_udot, 0);
}
static TARGET_DOTPROD void tile_neon_dotprod_wide(const bk_bconv *k, const bk_btile *t, int32_t c_begin, int32_t c_end) {
    BK_NEON_TILES(tile_udot, 1);
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
    // Below a block of the 8-bit kernel, its cheaper start and reduction win.
    .min_k_words = BLOCK_WORDS + 1,
    .tile = tile_neon_dotprod,
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
    .tile = tile_neon_dotprod_wide,
};
#endif
