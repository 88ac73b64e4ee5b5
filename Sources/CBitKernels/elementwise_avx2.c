// AVX2 binarization and transposes.

#include "bk_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TARGET_AVX2 __attribute__((target("avx2,fma")))

TARGET_AVX2 void bk_binarize_avx2(const float *x, size_t pixels, size_t channels, uint64_t *out) {
    const size_t words = (channels + 63) / 64;
    const __m256 zero = _mm256_setzero_ps();
    for (size_t p = 0; p < pixels; p++) {
        const float *row = x + p * channels;
        uint64_t *destination = out + p * words;
        size_t c = 0;
        for (size_t wi = 0; wi < words; wi++) {
            uint64_t bits = 0;
            if (c + 64 <= channels) {
                for (int j = 0; j < 8; j++) {
                    // GE_OQ: -0.0 >= 0 is true (sign(-0) = +1), NaN gives 0 (-1).
                    uint64_t m = (uint64_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(row + c + j * 8), zero, _CMP_GE_OQ));
                    bits |= m << (j * 8);
                }
                c += 64;
            } else {
                for (int j = 0; c < channels; c++, j++)
                    if (row[c] >= 0.0f) bits |= (uint64_t)1 << j;
            }
            destination[wi] = bits;
        }
    }
}

/// 8x8 blocks through registers (unpack/shuffle/permute), the edges element by element.
TARGET_AVX2 void bk_transpose_avx2(const float *source, size_t rows, size_t columns, float *destination) {
    size_t r0 = 0;
    for (; r0 + 8 <= rows; r0 += 8) {
        size_t c0 = 0;
        for (; c0 + 8 <= columns; c0 += 8) {
            __m256 v[8];
            for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_ps(source + (r0 + (size_t)i) * columns + c0);
            __m256 t[8];
            for (int i = 0; i < 4; i++) {
                t[2 * i] = _mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]);
                t[2 * i + 1] = _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]);
            }
            __m256 u[8];
            for (int i = 0; i < 2; i++) {
                u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
                u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
                u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
                u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
            }
            for (int i = 0; i < 4; i++) {
                _mm256_storeu_ps(destination + (c0 + (size_t)i) * rows + r0, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
                _mm256_storeu_ps(destination + (c0 + (size_t)i + 4) * rows + r0, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
            }
        }
        for (; c0 < columns; c0++)
            for (size_t r = r0; r < r0 + 8; r++) destination[c0 * rows + r] = source[r * columns + c0];
    }
    for (; r0 < rows; r0++)
        for (size_t c = 0; c < columns; c++) destination[c * rows + r0] = source[r0 * columns + c];
}
#endif
