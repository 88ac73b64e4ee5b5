// AVX-512 VPOPCNTDQ binary micro-kernel: 8 pixels x 16 channels of 64-bit popcount
// accumulators (16 of the 32 zmm registers), the pixel word broadcast against 8 channels'
// words per vector. The output transform is fused into the store: packed outputs are one
// 64-bit compare per 8 channels straight into a mask register, floats one FMA.

#include "bk_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,avx2,fma,popcnt")))

BK_ALWAYS_INLINE TARGET_AVX512 void tile512(const bk_bconv *k, const bk_btile *t, int32_t c0, const int np, const int ng) {
    const size_t depth = (size_t)k->k_words, run = (size_t)k->segment_words;
    const uint64_t *w0 = k->weights + (size_t)(c0 / 8) * depth * 8;
    const uint64_t *w1 = w0 + depth * 8;
    __m512i acc[8][2];
    for (int i = 0; i < np; i++)
        for (int g = 0; g < ng; g++) acc[i][g] = _mm512_setzero_si512();
    size_t kk = 0;
    for (int32_t segment = 0; segment < k->segments; segment++) {
        const uint64_t *a[8];
        for (int i = 0; i < np; i++) a[i] = t->a[i] + (size_t)segment * t->segment_stride;
        for (size_t j = 0; j < run; j++, kk++) {
            __m512i wv[2];
            wv[0] = _mm512_load_si512((const void *)(w0 + kk * 8));
            if (ng > 1) wv[1] = _mm512_load_si512((const void *)(w1 + kk * 8));
            for (int i = 0; i < np; i++) {
                __m512i av = _mm512_set1_epi64((long long)a[i][j]);
                for (int g = 0; g < ng; g++)
                    acc[i][g] = _mm512_add_epi64(acc[i][g], _mm512_popcnt_epi64(_mm512_xor_si512(av, wv[g])));
            }
        }
    }
    if (k->desc.output == BK_OUTPUT_BITS) {
        for (int i = 0; i < np; i++) {
            const int32_t *limit = (const int32_t *)t->table[i] + c0;
            uint32_t bits = 0;
            for (int g = 0; g < ng; g++) {
                __m512i l = _mm512_cvtepi32_epi64(_mm256_load_si256((const __m256i *)(limit + g * 8)));
                bits |= (uint32_t)_mm512_cmple_epi64_mask(acc[i][g], l) << (8 * g);
            }
            uint8_t *out = (uint8_t *)t->out[i] + c0 / 8;
            if (ng > 1) memcpy(out, &bits, 2);
            else *out = (uint8_t)bits;
        }
        return;
    }
    const int32_t valid = k->desc.out_c - c0;
    for (int i = 0; i < np; i++) {
        const float *offset = (const float *)t->table[i] + c0;
        float *out = (float *)t->out[i] + c0;
        for (int g = 0; g < ng; g++) {
            const int32_t n = valid - 8 * g;
            if (n <= 0) break;
            const __mmask8 store = n >= 8 ? 0xff : (__mmask8)((1u << n) - 1);
            __m256 y = _mm256_fmadd_ps(_mm256_load_ps(k->scale + c0 + 8 * g), _mm512_cvtepi64_ps(acc[i][g]),
                                       _mm256_load_ps(offset + 8 * g));
            if (t->residual[i]) y = _mm256_add_ps(y, _mm256_maskz_loadu_ps(store, t->residual[i] + c0 + 8 * g));
            _mm256_mask_storeu_ps(out + 8 * g, store, y);
        }
    }
}

#define TILE_CHANNELS(NP)                                                        \
    do {                                                                         \
        int32_t c = c_begin;                                                     \
        for (; c + 16 <= c_end_padded; c += 16) tile512(k, t, c, NP, 2);         \
        if (c < c_end_padded) tile512(k, t, c, NP, 1);                           \
    } while (0)

BK_ALWAYS_INLINE TARGET_AVX512 void tile_avx512_one(const bk_bconv *k, const bk_btile *t, int32_t c_begin, int32_t c_end) {
    const int32_t c_end_padded = BK_MIN(BK_ROUND_UP(c_end, 8), k->padded_channels);
    switch (t->pixels) {
    case 8: TILE_CHANNELS(8); break;
    case 7: TILE_CHANNELS(7); break;
    case 6: TILE_CHANNELS(6); break;
    case 5: TILE_CHANNELS(5); break;
    case 4: TILE_CHANNELS(4); break;
    case 3: TILE_CHANNELS(3); break;
    case 2: TILE_CHANNELS(2); break;
    case 1: TILE_CHANNELS(1); break;
    default: break;
    }
}
BK_TILE_BATCH(tile_avx512, tile_avx512_one, TARGET_AVX512)

const bk_bconv_variant bk_bconv_avx512_8x16 = {
    .name = "avx512-8x16",
    .isa = BK_ISA_AVX512,
    .tile_pixels = 8,
    .channel_group = 8,
    .bits_quantum = 8,
    .float_quantum = 8,
    .table_kind = BK_TABLE_I32,
    .max_k_words = 0,
    .min_k_words = 0,
    .tiles = tile_avx512,
};
#endif
