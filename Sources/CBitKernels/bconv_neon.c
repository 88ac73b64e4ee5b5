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
// Both need counts below 2^15 (16-bit tables): at most 511 words per receptive field.
// The output transform is fused: packed outputs compare the eight 16-bit counts with the
// pattern's thresholds and gather the 8 mask bits into one byte per pixel; float outputs
// are one FMA per 4 channels.

#include "bk_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

// This spelling works with clang and gcc whatever -march/-mcpu the file is compiled with.
#define TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))

/// Stores the tile's outputs for channels c0..c0+7 from eight 16-bit counts per pixel.
BK_ALWAYS_INLINE void store_tile(const bk_bconv *k, const bk_btile *t, int32_t c0, const uint16x8_t *counts, const int np) {
    if (k->desc.output == BK_OUTPUT_BITS) {
        static const uint8_t bit_weights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const uint8x16_t weights = vld1q_u8(bit_weights);
        uint16x8_t fires[4];
        for (int i = 0; i < np; i++)
            fires[i] = vcleq_s16(vreinterpretq_s16_u16(counts[i]), vld1q_s16((const int16_t *)t->table[i] + c0));
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
            for (int i = 0; i < np; i++) {
                uint8x8_t m = vand_u8(vmovn_u16(fires[i]), vget_low_u8(weights));
                ((uint8_t *)t->out[i])[c0 / 8] = vaddv_u8(m);
            }
        }
        return;
    }
    const int32_t valid = BK_MIN(8, k->desc.out_c - c0);
    const float32x4_t scale0 = vld1q_f32(k->scale + c0), scale1 = vld1q_f32(k->scale + c0 + 4);
    for (int i = 0; i < np; i++) {
        const float *offset = (const float *)t->table[i] + c0;
        float32x4_t y0 = vfmaq_f32(vld1q_f32(offset), scale0, vcvtq_f32_u32(vmovl_u16(vget_low_u16(counts[i]))));
        float32x4_t y1 = vfmaq_f32(vld1q_f32(offset + 4), scale1, vcvtq_f32_u32(vmovl_high_u16(counts[i])));
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
}

// MARK: neon-4x8: 8-bit accumulation in blocks of up to 15 words

enum { BLOCK_WORDS = 15 };

BK_ALWAYS_INLINE void tile_u8(const bk_bconv *k, const bk_btile *t, int32_t c0, const int np) {
    const size_t depth = (size_t)k->k_words, lda = t->lda;
    const uint64_t *w = k->weights + (size_t)(c0 / 8) * depth * 8;
    const uint64_t *a[4];
    for (int i = 0; i < np; i++) a[i] = t->a + (size_t)i * lda;
    uint16x8_t total[4];
    size_t kk = 0;
    int first_block = 1;
    while (kk < depth) {
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
            total[i] = first_block ? sums : vaddq_u16(total[i], sums);
        }
        first_block = 0;
    }
    store_tile(k, t, c0, total, np);
}

static void tile_neon(const bk_bconv *k, const bk_btile *t, int32_t c_begin, int32_t c_end) {
    const int32_t c_end_padded = BK_MIN(BK_ROUND_UP(c_end, 8), k->padded_channels);
    for (int32_t c = c_begin; c < c_end_padded; c += 8) {
        switch (t->pixels) {
        case 4: tile_u8(k, t, c, 4); break;
        case 3: tile_u8(k, t, c, 3); break;
        case 2: tile_u8(k, t, c, 2); break;
        case 1: tile_u8(k, t, c, 1); break;
        default: break;
        }
    }
}

const bk_bconv_variant bk_bconv_neon_4x8 = {
    .name = "neon-4x8",
    .isa = BK_ISA_NEON,
    .tile_pixels = 4,
    .channel_group = 8,
    .bits_quantum = 8,
    .float_quantum = 8,
    .table_kind = BK_TABLE_I16,
    .max_k_words = 511,
    .min_k_words = 0,
    .tile = tile_neon,
};

// MARK: neon-dotprod-4x8: UDOT into 32-bit accumulators

BK_ALWAYS_INLINE TARGET_DOTPROD void tile_udot(const bk_bconv *k, const bk_btile *t, int32_t c0, const int np) {
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
    uint16x8_t total[4];
    for (int i = 0; i < np; i++) {
        const uint32x4_t low = vpaddq_u32(acc[i][0], acc[i][1]);   // c0 c1 c2 c3
        const uint32x4_t high = vpaddq_u32(acc[i][2], acc[i][3]);  // c4 c5 c6 c7
        total[i] = vuzp1q_u16(vreinterpretq_u16_u32(low), vreinterpretq_u16_u32(high));
    }
    store_tile(k, t, c0, total, np);
}

static TARGET_DOTPROD void tile_neon_dotprod(const bk_bconv *k, const bk_btile *t, int32_t c_begin, int32_t c_end) {
    const int32_t c_end_padded = BK_MIN(BK_ROUND_UP(c_end, 8), k->padded_channels);
    for (int32_t c = c_begin; c < c_end_padded; c += 8) {
        switch (t->pixels) {
        case 4: tile_udot(k, t, c, 4); break;
        case 3: tile_udot(k, t, c, 3); break;
        case 2: tile_udot(k, t, c, 2); break;
        case 1: tile_udot(k, t, c, 1); break;
        default: break;
        }
    }
}

const bk_bconv_variant bk_bconv_neon_dotprod_4x8 = {
    .name = "neon-dotprod-4x8",
    .isa = BK_ISA_NEON_DOTPROD,
    .tile_pixels = 4,
    .channel_group = 8,
    .bits_quantum = 8,
    .float_quantum = 8,
    .table_kind = BK_TABLE_I16,
    .max_k_words = 511,
    // Below a block of the 8-bit kernel, its cheaper start and reduction win.
    .min_k_words = BLOCK_WORDS + 1,
    .tile = tile_neon_dotprod,
};
#endif
