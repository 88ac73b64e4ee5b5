// Float convolution layers (the full-precision stem, 1x1 down-sampling convolutions, the
// classifier): validation, weight packing, im2col and the blocking loop. The GEMM
// micro-kernels are per architecture (sgemm_*.c).

#include "bk_internal.h"
#include "bk_layout_group.h"

enum { BK_MAX_DIMENSION = 1 << 16, BK_MAX_CHANNELS = 1 << 24, BK_MAX_KERNEL = 64 };

const bk_fconv_variant *bk_fconv_variant_for(bk_isa isa) {
    switch (isa) {
    case BK_ISA_PORTABLE: return &bk_fconv_portable;
#if defined(__x86_64__)
    case BK_ISA_AVX2: return &bk_fconv_avx2;
    case BK_ISA_AVX512: return &bk_fconv_avx512;
#endif
#if defined(__aarch64__)
    case BK_ISA_NEON:
    case BK_ISA_NEON_DOTPROD: return &bk_fconv_neon;
#endif
    default: return NULL;
    }
}

int bk_fconv_create(const bk_fconv_desc *d, const float *weights, const float *bias, bk_isa isa, bk_fconv **result,
                    char *error, size_t error_size) {
    *result = NULL;
    if (!bk_isa_supported(isa))
        return bk_fail(error, error_size, "float conv: instruction set %s is not available on this CPU", bk_isa_name(isa));
    const int32_t dims[] = {d->in_h, d->in_w, d->out_h, d->out_w}, channels[] = {d->in_c, d->out_c};
    for (int i = 0; i < 4; i++)
        if (dims[i] < 1 || dims[i] > BK_MAX_DIMENSION)
            return bk_fail(error, error_size, "float conv: height or width %d is outside 1...%d", dims[i], BK_MAX_DIMENSION);
    for (int i = 0; i < 2; i++)
        if (channels[i] < 1 || channels[i] > BK_MAX_CHANNELS)
            return bk_fail(error, error_size, "float conv: channel count %d is outside 1...%d", channels[i], BK_MAX_CHANNELS);
    if (d->kernel_h < 1 || d->kernel_w < 1 || d->kernel_h > BK_MAX_KERNEL || d->kernel_w > BK_MAX_KERNEL ||
        d->stride_h < 1 || d->stride_w < 1 || d->stride_h > BK_MAX_KERNEL || d->stride_w > BK_MAX_KERNEL ||
        d->pad_top < 0 || d->pad_left < 0 || d->pad_top > BK_MAX_KERNEL || d->pad_left > BK_MAX_KERNEL)
        return bk_fail(error, error_size, "float conv: window %dx%d stride %dx%d padding %d,%d is out of range",
                       d->kernel_h, d->kernel_w, d->stride_h, d->stride_w, d->pad_top, d->pad_left);
    const int64_t depth = (int64_t)d->kernel_h * d->kernel_w * d->in_c;
    if (depth > (1 << 24)) return bk_fail(error, error_size, "float conv: receptive field of %lld values is too large", (long long)depth);
    if (!weights) return bk_fail(error, error_size, "float conv: missing weights");
    const bk_fconv_variant *variant = bk_fconv_variant_for(isa);
    if (!variant) return bk_fail(error, error_size, "float conv: no %s kernel", bk_isa_name(isa));

    bk_fconv *k = calloc(1, sizeof *k);
    if (!k) return bk_fail(error, error_size, "float conv: out of memory");
    k->desc = *d;
    k->variant = variant;
    k->k = (int32_t)depth;
    const int32_t G = variant->channel_group;
    k->padded_channels = BK_ROUND_UP(d->out_c, G);
    k->weights = bk_alloc(sizeof(float) * (size_t)k->padded_channels * (size_t)k->k);
    k->bias = bk_alloc(sizeof(float) * (size_t)k->padded_channels);
    if (!k->weights || !k->bias) { bk_fconv_destroy(k); return bk_fail(error, error_size, "float conv: out of memory"); }
    for (int32_t o = 0; o < d->out_c; o++) {
        for (int32_t kk = 0; kk < k->k; kk++)
            k->weights[bk_group_index((size_t)o, (size_t)kk, (size_t)k->k, (size_t)G)] = weights[(size_t)o * (size_t)k->k + (size_t)kk];
        k->bias[o] = bias ? bias[o] : 0.0f;
    }
    k->direct = d->kernel_h == 1 && d->kernel_w == 1 && d->stride_h == 1 && d->stride_w == 1 && d->pad_top == 0 &&
                d->pad_left == 0 && d->in_h == d->out_h && d->in_w == d->out_w;
    const int32_t tile = variant->tile_pixels;
    int32_t block = (int32_t)(32768 / ((size_t)k->k * 4));
    block = BK_MAX(tile, BK_MIN(240, block)) / tile * tile;
    k->block_pixels = block;
    k->scratch_bytes = k->direct ? 64 : BK_ROUND_UP((size_t)block * (size_t)k->k * 4, 64);
    *result = k;
    return 0;
}

void bk_fconv_info(const bk_fconv *k, bk_kernel_info *info) {
    info->channel_quantum = k->variant->channel_group;
    info->tile_pixels = k->variant->tile_pixels;
    info->block_pixels = k->block_pixels;
    info->scratch_bytes = k->scratch_bytes;
    info->packed_bytes = sizeof(float) * (size_t)k->padded_channels * ((size_t)k->k + 1);
    info->kernel_name = k->variant->name;
}

void bk_fconv_copy_parameters(const bk_fconv *k, float *weights, float *bias) {
    const size_t G = (size_t)k->variant->channel_group;
    for (int32_t o = 0; o < k->desc.out_c; o++) {
        for (int32_t kk = 0; kk < k->k; kk++)
            weights[(size_t)o * (size_t)k->k + (size_t)kk] = k->weights[bk_group_index((size_t)o, (size_t)kk, (size_t)k->k, G)];
        bias[o] = k->bias[o];
    }
}

void bk_fconv_destroy(bk_fconv *k) {
    if (!k) return;
    bk_free(k->weights);
    bk_free(k->bias);
    free(k);
}

/// Receptive fields of output pixels [first, first + count) as rows of k floats in
/// (ky, kx, channel) order; padded positions are 0.
static void im2col(const bk_fconv *k, const float *input, int32_t first, int32_t count, float *rows) {
    const bk_fconv_desc *d = &k->desc;
    const int32_t C = d->in_c, kw = d->kernel_w;
    const size_t segment = (size_t)kw * (size_t)C;
    int32_t oy = first / d->out_w, ox = first % d->out_w;
    float *destination = rows;
    for (int32_t n = 0; n < count; n++) {
        const int32_t iy0 = oy * d->stride_h - d->pad_top, ix0 = ox * d->stride_w - d->pad_left;
        const int columns_inside = ix0 >= 0 && ix0 + kw <= d->in_w;
        float *out = destination;
        for (int32_t ky = 0; ky < d->kernel_h; ky++, out += segment) {
            const int32_t iy = iy0 + ky;
            if (iy < 0 || iy >= d->in_h) {
                memset(out, 0, segment * sizeof(float));
                continue;
            }
            const float *row = input + (size_t)iy * (size_t)d->in_w * (size_t)C;
            if (columns_inside) {
                memcpy(out, row + (size_t)ix0 * (size_t)C, segment * sizeof(float));
            } else {
                for (int32_t kx = 0; kx < kw; kx++) {
                    const int32_t ix = ix0 + kx;
                    if (ix < 0 || ix >= d->in_w) memset(out + (size_t)kx * (size_t)C, 0, (size_t)C * sizeof(float));
                    else memcpy(out + (size_t)kx * (size_t)C, row + (size_t)ix * (size_t)C, (size_t)C * sizeof(float));
                }
            }
        }
        destination += k->k;
        if (++ox == d->out_w) { ox = 0; oy++; }
    }
}

void bk_fconv_run(const bk_fconv *k, const float *input, float *output, int32_t pixel_begin, int32_t pixel_end,
                  int32_t channel_begin, int32_t channel_end, void *scratch) {
    const bk_fconv_desc *d = &k->desc;
    for (int32_t block = pixel_begin; block < pixel_end; block += k->block_pixels) {
        const int32_t count = BK_MIN(k->block_pixels, pixel_end - block);
        const float *rows;
        size_t lda;
        if (k->direct) {
            rows = input + (size_t)block * (size_t)d->in_c;
            lda = (size_t)d->in_c;
        } else {
            im2col(k, input, block, count, (float *)scratch);
            rows = (const float *)scratch;
            lda = (size_t)k->k;
        }
        k->variant->gemm(k, rows, lda, count, output + (size_t)block * (size_t)d->out_c, (size_t)d->out_c,
                         channel_begin, channel_end);
    }
}
