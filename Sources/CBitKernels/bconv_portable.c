// The portable binary micro-kernel: plain C over the group-of-8 layout, any CPU. It is
// the fallback where no vector kernel accepts a layer and the scalar model of the vector
// kernels' arithmetic (same packing, same tables, same output transform).

#include "bk_internal.h"

BK_ALWAYS_INLINE void store_outputs(const bk_bconv *k, const bk_btile *t, int32_t c0, uint32_t counts[4][8]) {
    const int32_t out_c = k->desc.out_c;
    if (k->desc.output == BK_OUTPUT_BITS) {
        for (int32_t i = 0; i < t->pixels; i++) {
            const void *row = t->table[i];
            uint32_t byte = 0;
            for (int32_t j = 0; j < 8; j++) {
                int32_t limit = k->variant->table_kind == BK_TABLE_I16 ? ((const int16_t *)row)[c0 + j] : ((const int32_t *)row)[c0 + j];
                byte |= (uint32_t)((int64_t)counts[i][j] <= limit) << j;
            }
            ((uint8_t *)t->out[i])[c0 / 8] = (uint8_t)byte;
        }
        return;
    }
    const int32_t n = BK_MIN(8, out_c - c0);
    for (int32_t i = 0; i < t->pixels; i++) {
        const float *offset = (const float *)t->table[i] + c0;
        float *out = (float *)t->out[i] + c0;
        const float *scale = k->scale + c0;
        if (t->residual[i]) {
            const float *shortcut = t->residual[i] + c0;
            for (int32_t j = 0; j < n; j++) out[j] = offset[j] + scale[j] * (float)counts[i][j] + shortcut[j];
        } else {
            for (int32_t j = 0; j < n; j++) out[j] = offset[j] + scale[j] * (float)counts[i][j];
        }
    }
}

BK_ALWAYS_INLINE void tile_portable_one(const bk_bconv *k, const bk_btile *t, int32_t c_begin, int32_t c_end) {
    const size_t depth = (size_t)k->k_words, run = (size_t)k->segment_words;
    for (int32_t c0 = c_begin; c0 < c_end; c0 += 8) {
        const uint64_t *group = k->weights + (size_t)(c0 / 8) * depth * 8;
        uint32_t counts[4][8] = {{0}};
        for (int32_t i = 0; i < t->pixels; i++) {
            const uint64_t *w = group;
            for (int32_t segment = 0; segment < k->segments; segment++) {
                const uint64_t *a = t->a[i] + (size_t)segment * t->segment_stride;
                for (size_t kk = 0; kk < run; kk++, w += 8) {
                    const uint64_t x = a[kk];
                    for (int32_t j = 0; j < 8; j++) counts[i][j] += (uint32_t)__builtin_popcountll(x ^ w[j]);
                }
            }
        }
        store_outputs(k, t, c0, counts);
    }
}
BK_TILE_BATCH(tile_portable, tile_portable_one)

const bk_bconv_variant bk_bconv_portable_4x8 = {
    .name = "portable-4x8",
    .isa = BK_ISA_PORTABLE,
    .tile_pixels = 4,
    .channel_group = 8,
    .bits_quantum = 8,
    .float_quantum = 8,
    .table_kind = BK_TABLE_I32,
    .max_k_words = 0,
    .min_k_words = 0,
    .tiles = tile_portable,
};
