// AVX2 binary micro-kernel: 4 pixels x 8 channels. Popcount without VPOPCNTQ is a nibble
// lookup (VPSHUFB) into byte counts, accumulated for up to 31 words (31 * 8 = 248 fits a
// byte) and then summed per 64-bit lane with VPSADBW. Output transform fused into the store.

#include "bk_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET_AVX2 __attribute__((target("avx2,fma,popcnt")))

BK_ALWAYS_INLINE TARGET_AVX2 void tile256(const bk_bconv *k, const bk_btile *t, int32_t c0, const int np) {
    const __m256i lookup = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                            0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const size_t depth = (size_t)k->k_words, run = (size_t)k->segment_words;
    const uint64_t *w = k->weights + (size_t)(c0 / 8) * depth * 8;
    __m256i total[4][2];
    for (int i = 0; i < np; i++) total[i][0] = total[i][1] = _mm256_setzero_si256();
    // Depth position kk runs over the segments; byte counters are summed every 31 words.
    size_t kk = 0, in_run = 0;
    int32_t segment = 0;
    const uint64_t *a[4];
    for (int i = 0; i < np; i++) a[i] = t->a[i];
    while (kk < depth) {
        const size_t end = kk + 31 < depth ? kk + 31 : depth;
        __m256i bytes[4][2];
        for (int i = 0; i < np; i++) bytes[i][0] = bytes[i][1] = _mm256_setzero_si256();
        for (; kk < end; kk++) {
            if (in_run == run) {
                in_run = 0;
                segment++;
                for (int i = 0; i < np; i++) a[i] = t->a[i] + (size_t)segment * t->segment_stride;
            }
            const size_t j = in_run++;
            const __m256i w0 = _mm256_load_si256((const __m256i *)(w + kk * 8));
            const __m256i w1 = _mm256_load_si256((const __m256i *)(w + kk * 8 + 4));
            for (int i = 0; i < np; i++) {
                const __m256i av = _mm256_set1_epi64x((long long)a[i][j]);
                const __m256i x0 = _mm256_xor_si256(av, w0), x1 = _mm256_xor_si256(av, w1);
                const __m256i c0v = _mm256_add_epi8(_mm256_shuffle_epi8(lookup, _mm256_and_si256(x0, low)),
                                                    _mm256_shuffle_epi8(lookup, _mm256_and_si256(_mm256_srli_epi16(x0, 4), low)));
                const __m256i c1v = _mm256_add_epi8(_mm256_shuffle_epi8(lookup, _mm256_and_si256(x1, low)),
                                                    _mm256_shuffle_epi8(lookup, _mm256_and_si256(_mm256_srli_epi16(x1, 4), low)));
                bytes[i][0] = _mm256_add_epi8(bytes[i][0], c0v);
                bytes[i][1] = _mm256_add_epi8(bytes[i][1], c1v);
            }
        }
        for (int i = 0; i < np; i++) {
            total[i][0] = _mm256_add_epi64(total[i][0], _mm256_sad_epu8(bytes[i][0], _mm256_setzero_si256()));
            total[i][1] = _mm256_add_epi64(total[i][1], _mm256_sad_epu8(bytes[i][1], _mm256_setzero_si256()));
        }
    }
    // Counts are far below 2^31: gather the low 32 bits of each 64-bit lane.
    const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    if (k->desc.output == BK_OUTPUT_BITS) {
        for (int i = 0; i < np; i++) {
            const __m128i limit = _mm_load_si128((const __m128i *)((const int32_t *)t->table[i] + c0));
            const __m128i limit_high = _mm_load_si128((const __m128i *)((const int32_t *)t->table[i] + c0 + 4));
            // count <= limit  <=>  !(count > limit)
            const int above0 = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(total[i][0], _mm256_cvtepi32_epi64(limit))));
            const int above1 = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(total[i][1], _mm256_cvtepi32_epi64(limit_high))));
            ((uint8_t *)t->out[i])[c0 / 8] = (uint8_t)~(above0 | (above1 << 4));
        }
        return;
    }
    const int32_t valid = BK_MIN(8, k->desc.out_c - c0);
    const __m256 scale = _mm256_load_ps(k->scale + c0);
    for (int i = 0; i < np; i++) {
        const __m128i lo = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(total[i][0], pick));
        const __m128i hi = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(total[i][1], pick));
        const __m256 counts = _mm256_cvtepi32_ps(_mm256_set_m128i(hi, lo));
        __m256 y = _mm256_fmadd_ps(scale, counts, _mm256_load_ps((const float *)t->table[i] + c0));
        float *out = (float *)t->out[i] + c0;
        if (valid == 8) {
            if (t->residual[i]) y = _mm256_add_ps(y, _mm256_loadu_ps(t->residual[i] + c0));
            _mm256_storeu_ps(out, y);
        } else {
            float lanes[8];
            _mm256_storeu_ps(lanes, y);
            for (int32_t j = 0; j < valid; j++) out[j] = lanes[j] + (t->residual[i] ? t->residual[i][c0 + j] : 0.0f);
        }
    }
}

BK_ALWAYS_INLINE TARGET_AVX2 void tile_avx2_one(const bk_bconv *k, const bk_btile *t, int32_t c_begin, int32_t c_end) {
    const int32_t c_end_padded = BK_MIN(BK_ROUND_UP(c_end, 8), k->padded_channels);
    for (int32_t c = c_begin; c < c_end_padded; c += 8) {
        switch (t->pixels) {
        case 4: tile256(k, t, c, 4); break;
        case 3: tile256(k, t, c, 3); break;
        case 2: tile256(k, t, c, 2); break;
        case 1: tile256(k, t, c, 1); break;
        default: break;
        }
    }
}
BK_TILE_BATCH(tile_avx2, tile_avx2_one, TARGET_AVX2)

const bk_bconv_variant bk_bconv_avx2_4x8 = {
    .name = "avx2-4x8",
    .isa = BK_ISA_AVX2,
    .tile_pixels = 4,
    .channel_group = 8,
    .bits_quantum = 8,
    .float_quantum = 8,
    .table_kind = BK_TABLE_I32,
    .max_k_words = 0,
    .min_k_words = 0,
    .tiles = tile_avx2,
};
#endif
