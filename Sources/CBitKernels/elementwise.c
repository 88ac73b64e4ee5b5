// Element-wise kernels and data movement: binarization, pooling, global average pooling
// and layout transposes. The portable versions are plain loops over the contiguous channel
// axis that compilers vectorize for the baseline ISA; binarize and transpose have explicit
// AVX2/NEON versions (binarize_*.c, transpose_*.c) because their data movement defeats the
// vectorizer.

#include "bk_internal.h"

void bk_binarize_portable(const float *x, size_t pixels, size_t channels, uint64_t *out) {
    const size_t words = (channels + 63) / 64;
    for (size_t p = 0; p < pixels; p++) {
        const float *row = x + p * channels;
        for (size_t w = 0; w < words; w++) {
            uint64_t bits = 0;
            const size_t start = w * 64, end = BK_MIN(start + 64, channels);
            for (size_t c = start; c < end; c++) bits |= (uint64_t)(row[c] >= 0.0f) << (c - start);
            out[p * words + w] = bits;
        }
    }
}

void bk_binarize(bk_isa isa, const float *x, size_t pixels, size_t channels, uint64_t *out) {
#if defined(__x86_64__)
    if (isa == BK_ISA_AVX2 || isa == BK_ISA_AVX512) { bk_binarize_avx2(x, pixels, channels, out); return; }
#endif
#if defined(__aarch64__)
    if (isa == BK_ISA_NEON || isa == BK_ISA_NEON_DOTPROD) { bk_binarize_neon(x, pixels, channels, out); return; }
#endif
    (void)isa;
    bk_binarize_portable(x, pixels, channels, out);
}

void bk_transpose_portable(const float *source, size_t rows, size_t columns, float *destination) {
    enum { B = 8 };
    for (size_t r0 = 0; r0 < rows; r0 += B)
        for (size_t c0 = 0; c0 < columns; c0 += B)
            for (size_t r = r0; r < BK_MIN(r0 + B, rows); r++)
                for (size_t c = c0; c < BK_MIN(c0 + B, columns); c++) destination[c * rows + r] = source[r * columns + c];
}

void bk_transpose(bk_isa isa, const float *source, size_t rows, size_t columns, float *destination) {
#if defined(__x86_64__)
    if (isa == BK_ISA_AVX2 || isa == BK_ISA_AVX512) { bk_transpose_avx2(source, rows, columns, destination); return; }
#endif
#if defined(__aarch64__)
    if (isa == BK_ISA_NEON || isa == BK_ISA_NEON_DOTPROD) { bk_transpose_neon(source, rows, columns, destination); return; }
#endif
    (void)isa;
    bk_transpose_portable(source, rows, columns, destination);
}

// Max keeps the first operand unless the second is >= it, as the reference does (a NaN
// already in the running maximum stays; a NaN input is skipped).
void bk_max_pool(bk_isa isa, const bk_pool_desc *d, const float *input, float *output, int32_t pixel_begin,
                 int32_t pixel_end) {
#if defined(__aarch64__)
    if (isa == BK_ISA_NEON || isa == BK_ISA_NEON_DOTPROD) { bk_max_pool_neon(d, input, output, pixel_begin, pixel_end); return; }
#endif
    (void)isa;
    const size_t C = (size_t)d->channels;
    for (int32_t pixel = pixel_begin; pixel < pixel_end; pixel++) {
        const int32_t oy = pixel / d->out_w, ox = pixel % d->out_w;
        const int32_t y0 = oy * d->stride_h - d->pad_top, x0 = ox * d->stride_w - d->pad_left;
        float *out = output + (size_t)pixel * C;
        for (size_t c = 0; c < C; c++) out[c] = -__builtin_inff();
        for (int32_t ky = 0; ky < d->kernel_h; ky++) {
            const int32_t iy = y0 + ky;
            if (iy < 0 || iy >= d->in_h) continue;
            for (int32_t kx = 0; kx < d->kernel_w; kx++) {
                const int32_t ix = x0 + kx;
                if (ix < 0 || ix >= d->in_w) continue;
                const float *source = input + ((size_t)iy * (size_t)d->in_w + (size_t)ix) * C;
                for (size_t c = 0; c < C; c++) out[c] = source[c] >= out[c] ? source[c] : out[c];
            }
        }
    }
}

void bk_average_pool(bk_isa isa, const bk_pool_desc *d, const float *input, float *output, int32_t pixel_begin,
                     int32_t pixel_end) {
    (void)isa;
    const size_t C = (size_t)d->channels;
    for (int32_t pixel = pixel_begin; pixel < pixel_end; pixel++) {
        const int32_t oy = pixel / d->out_w, ox = pixel % d->out_w;
        const int32_t y0 = oy * d->stride_h - d->pad_top, x0 = ox * d->stride_w - d->pad_left;
        float *out = output + (size_t)pixel * C;
        for (size_t c = 0; c < C; c++) out[c] = 0.0f;
        int32_t valid = 0;
        for (int32_t ky = 0; ky < d->kernel_h; ky++) {
            const int32_t iy = y0 + ky;
            if (iy < 0 || iy >= d->in_h) continue;
            for (int32_t kx = 0; kx < d->kernel_w; kx++) {
                const int32_t ix = x0 + kx;
                if (ix < 0 || ix >= d->in_w) continue;
                valid++;
                const float *source = input + ((size_t)iy * (size_t)d->in_w + (size_t)ix) * C;
                for (size_t c = 0; c < C; c++) out[c] += source[c];
            }
        }
        const float divisor = (float)(d->count_includes_padding ? d->kernel_h * d->kernel_w : BK_MAX(valid, 1));
        for (size_t c = 0; c < C; c++) out[c] /= divisor;
    }
}

void bk_global_average_pool(bk_isa isa, const float *input, size_t pixels, size_t channels, float *output,
                            size_t channel_begin, size_t channel_end) {
    (void)isa;
    for (size_t c = channel_begin; c < channel_end; c++) output[c] = 0.0f;
    for (size_t p = 0; p < pixels; p++) {
        const float *source = input + p * channels;
        for (size_t c = channel_begin; c < channel_end; c++) output[c] += source[c];
    }
    const float scale = (float)pixels;
    for (size_t c = channel_begin; c < channel_end; c++) output[c] /= scale;
}
