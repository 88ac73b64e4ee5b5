// Binary convolution layers: validation, kernel selection, weight packing, the per-pattern
// output tables, im2col and the tiling loop. Architecture-independent; the micro-kernels
// (bconv_*.c) do the arithmetic.

#include "bk_internal.h"
#include "bk_layout_group.h"

#include <math.h>

enum { BK_MAX_DIMENSION = 1 << 16, BK_MAX_CHANNELS = 1 << 24, BK_MAX_KERNEL = 64 };

static uint64_t last_word_mask(int32_t channels) {
    int32_t used = channels % 64;
    return used == 0 ? ~(uint64_t)0 : (((uint64_t)1 << used) - 1);
}

static int validate(const bk_bconv_desc *d, char *error, size_t error_size) {
    const int32_t dims[] = {d->in_h, d->in_w, d->out_h, d->out_w}, channels[] = {d->in_c, d->out_c};
    for (int i = 0; i < 4; i++)
        if (dims[i] < 1 || dims[i] > BK_MAX_DIMENSION)
            return bk_fail(error, error_size, "binary conv: height or width %d is outside 1...%d", dims[i], BK_MAX_DIMENSION);
    for (int i = 0; i < 2; i++)
        if (channels[i] < 1 || channels[i] > BK_MAX_CHANNELS)
            return bk_fail(error, error_size, "binary conv: channel count %d is outside 1...%d", channels[i], BK_MAX_CHANNELS);
    if (d->kernel_h < 1 || d->kernel_w < 1 || d->kernel_h > BK_MAX_KERNEL || d->kernel_w > BK_MAX_KERNEL)
        return bk_fail(error, error_size, "binary conv: kernel %dx%d is outside 1...%d", d->kernel_h, d->kernel_w, BK_MAX_KERNEL);
    if (d->stride_h < 1 || d->stride_w < 1 || d->stride_h > BK_MAX_KERNEL || d->stride_w > BK_MAX_KERNEL)
        return bk_fail(error, error_size, "binary conv: stride %dx%d is outside 1...%d", d->stride_h, d->stride_w, BK_MAX_KERNEL);
    if (d->pad_top < 0 || d->pad_left < 0 || d->pad_top > BK_MAX_KERNEL || d->pad_left > BK_MAX_KERNEL)
        return bk_fail(error, error_size, "binary conv: padding %d,%d is outside 0...%d", d->pad_top, d->pad_left, BK_MAX_KERNEL);
    if (d->pad_value < BK_PAD_ZERO || d->pad_value > BK_PAD_MINUS_ONE)
        return bk_fail(error, error_size, "binary conv: unknown pad value %d", d->pad_value);
    if (d->output != BK_OUTPUT_FLOAT && d->output != BK_OUTPUT_BITS)
        return bk_fail(error, error_size, "binary conv: unknown output kind %d", d->output);
    if (d->residual && d->output != BK_OUTPUT_FLOAT)
        return bk_fail(error, error_size, "binary conv: a residual needs float output");
    int64_t k_words = (int64_t)d->kernel_h * d->kernel_w * ((d->in_c + 63) / 64);
    if (k_words > (1 << 24))
        return bk_fail(error, error_size, "binary conv: receptive field of %lld words is too large", (long long)k_words);
    return 0;
}

const bk_bconv_variant *const *bk_bconv_variants(bk_isa isa, int32_t *count) {
    static const bk_bconv_variant *const portable[] = {&bk_bconv_portable_4x8};
#if defined(__x86_64__)
    static const bk_bconv_variant *const avx2[] = {&bk_bconv_avx2_4x8};
    static const bk_bconv_variant *const avx512[] = {&bk_bconv_avx512_8x16};
#endif
#if defined(__aarch64__)
    static const bk_bconv_variant *const neon[] = {&bk_bconv_neon_4x8, &bk_bconv_neon_4x8_wide};
    static const bk_bconv_variant *const dotprod[] = {&bk_bconv_neon_dotprod_4x8, &bk_bconv_neon_dotprod_4x8_wide,
                                                     &bk_bconv_neon_4x8};
#endif
#define BK_LIST(list) (*count = (int32_t)(sizeof(list) / sizeof((list)[0])), (list))
    switch (isa) {
    case BK_ISA_PORTABLE: return BK_LIST(portable);
#if defined(__x86_64__)
    case BK_ISA_AVX2: return BK_LIST(avx2);
    case BK_ISA_AVX512: return BK_LIST(avx512);
#endif
#if defined(__aarch64__)
    case BK_ISA_NEON: return BK_LIST(neon);
    case BK_ISA_NEON_DOTPROD: return BK_LIST(dotprod);
#endif
    default: *count = 0; return NULL;
    }
#undef BK_LIST
}

static const bk_bconv_variant *select_variant(bk_isa isa, int32_t k_words) {
    int32_t count = 0;
    const bk_bconv_variant *const *list = bk_bconv_variants(isa, &count);
    for (int32_t i = 0; i < count; i++) {
        const bk_bconv_variant *v = list[i];
        if (v->max_k_words && k_words > v->max_k_words) continue;
        if (k_words < v->min_k_words) continue;
        return v;
    }
    return NULL;
}

/// Bit ky of the result is set when kernel row ky of output row `o` reads inside the input.
static uint64_t tap_mask(int32_t o, int32_t stride, int32_t pad, int32_t kernel, int32_t input) {
    uint64_t mask = 0;
    for (int32_t k = 0; k < kernel; k++) {
        int64_t i = (int64_t)o * stride - pad + k;
        if (i >= 0 && i < input) mask |= (uint64_t)1 << k;
    }
    return mask;
}

/// Groups outputs along one axis by their tap mask; returns the number of classes.
static int32_t classify(int32_t outputs, int32_t stride, int32_t pad, int32_t kernel, int32_t input,
                        int32_t *class_of, uint64_t *class_mask) {
    int32_t classes = 0;
    for (int32_t o = 0; o < outputs; o++) {
        uint64_t mask = tap_mask(o, stride, pad, kernel, input);
        int32_t c = 0;
        while (c < classes && class_mask[c] != mask) c++;
        if (c == classes) class_mask[classes++] = mask;
        class_of[o] = c;
    }
    return classes;
}

static int64_t floor_half(int64_t x) { return x >= 0 ? x / 2 : -((-x + 1) / 2); }

static int build_tables(bk_bconv *k, const bk_bconv_params *params, char *error, size_t error_size) {
    const bk_bconv_desc *d = &k->desc;
    const int32_t kh = d->kernel_h, kw = d->kernel_w;
    // At most one class per output row/column; in practice the borders plus the interior.
    uint64_t *row_masks = bk_alloc(sizeof(uint64_t) * (size_t)d->out_h);
    uint64_t *column_masks = bk_alloc(sizeof(uint64_t) * (size_t)d->out_w);
    k->row_class = bk_alloc(sizeof(int32_t) * (size_t)d->out_h);
    k->column_class = bk_alloc(sizeof(int32_t) * (size_t)d->out_w);
    int32_t *tap_popcounts = malloc(sizeof(int32_t) * (size_t)k->taps);
    int status = -1;
    if (!row_masks || !column_masks || !k->row_class || !k->column_class || !tap_popcounts) {
        bk_fail(error, error_size, "binary conv: out of memory");
        goto done;
    }

    // Only zero padding needs a correction; +1/-1 padding words take part in the XOR like
    // any input word, so every pixel then shares one pattern.
    int32_t row_classes = 1, column_classes = 1;
    row_masks[0] = kh == 64 ? ~(uint64_t)0 : (((uint64_t)1 << kh) - 1);
    column_masks[0] = kw == 64 ? ~(uint64_t)0 : (((uint64_t)1 << kw) - 1);
    if (d->pad_value == BK_PAD_ZERO) {
        row_classes = classify(d->out_h, d->stride_h, d->pad_top, kh, d->in_h, k->row_class, row_masks);
        column_classes = classify(d->out_w, d->stride_w, d->pad_left, kw, d->in_w, k->column_class, column_masks);
    }
    k->patterns = row_classes * column_classes;
    k->column_classes = column_classes;

    const int32_t O = k->padded_channels, W = k->in_words;
    const int bits = d->output == BK_OUTPUT_BITS;
    const int int16_table = bits && k->variant->table_kind == BK_TABLE_I16;
    const size_t element = int16_table ? sizeof(int16_t) : sizeof(int32_t);  // float is 4 bytes too
    k->table_stride_bytes = BK_ROUND_UP((size_t)O * element, 64);
    k->table = bk_alloc(k->table_stride_bytes * (size_t)k->patterns);
    k->scale = bits ? NULL : bk_alloc(sizeof(float) * (size_t)O);
    if (!k->table || (!bits && !k->scale)) {
        bk_fail(error, error_size, "binary conv: out of memory");
        goto done;
    }
    const int64_t k_bits = (int64_t)k->k_words * 64;
    for (int32_t o = 0; o < O; o++) {
        if (o < d->out_c) {
            for (int32_t t = 0; t < k->taps; t++) {
                int32_t count = 0;
                for (int32_t w = 0; w < W; w++)
                    count += __builtin_popcountll(k->weights[bk_group_index((size_t)o, (size_t)(t * W + w), (size_t)k->k_words, (size_t)k->variant->channel_group)]);
                tap_popcounts[t] = count;
            }
        }
        if (!bits) k->scale[o] = o < d->out_c ? -2.0f * params->multiplier[o] : 0.0f;
        for (int32_t rc = 0; rc < row_classes; rc++) {
            for (int32_t cc = 0; cc < column_classes; cc++) {
                const int32_t q = rc * column_classes + cc;
                uint8_t *row = (uint8_t *)k->table + (size_t)q * k->table_stride_bytes;
                int64_t valid_taps = (int64_t)__builtin_popcountll(row_masks[rc]) * __builtin_popcountll(column_masks[cc]);
                int64_t dot_base = valid_taps * d->in_c;  // D = valid bits + 2 * popcount(w at padded taps)
                if (o < d->out_c && d->pad_value == BK_PAD_ZERO) {
                    for (int32_t ky = 0; ky < kh; ky++)
                        for (int32_t kx = 0; kx < kw; kx++)
                            if (!((row_masks[rc] >> ky) & 1) || !((column_masks[cc] >> kx) & 1))
                                dot_base += 2 * tap_popcounts[ky * kw + kx];
                }
                if (bits) {
                    int64_t limit = -1;  // padded channels never fire
                    if (o < d->out_c) {
                        limit = floor_half(dot_base - (int64_t)params->threshold[o]);
                        if (limit < -1) limit = -1;
                        if (limit > k_bits) limit = k_bits;
                    }
                    if (int16_table) ((int16_t *)row)[o] = (int16_t)BK_MIN(limit, 32767);
                    else ((int32_t *)row)[o] = (int32_t)limit;
                } else {
                    ((float *)row)[o] = o < d->out_c ? (float)((double)params->multiplier[o] * (double)dot_base + (double)params->bias[o]) : 0.0f;
                }
            }
        }
    }
    status = 0;
done:
    free(tap_popcounts);
    bk_free(row_masks);
    bk_free(column_masks);
    return status;
}

const char *bk_bconv_kernel_name(bk_isa isa, int32_t index) {
    int32_t count = 0;
    const bk_bconv_variant *const *list = bk_bconv_variants(isa, &count);
    return index >= 0 && index < count ? list[index]->name : NULL;
}

int32_t bk_bconv_kernel_max_depth(const char *kernel_name) {
    for (int isa = 0; isa < BK_ISA_COUNT; isa++) {
        int32_t count = 0;
        const bk_bconv_variant *const *list = bk_bconv_variants((bk_isa)isa, &count);
        for (int32_t i = 0; i < count; i++)
            if (!strcmp(list[i]->name, kernel_name)) return list[i]->max_k_words;
    }
    return -1;
}

static int create(const bk_bconv_desc *desc, const bk_bconv_params *params, bk_isa isa, const char *kernel_name,
                  bk_bconv **result, char *error, size_t error_size) {
    *result = NULL;
    if (!bk_isa_supported(isa))
        return bk_fail(error, error_size, "binary conv: instruction set %s is not available on this CPU", bk_isa_name(isa));
    if (validate(desc, error, error_size)) return -1;
    if (!params->weights || (desc->output == BK_OUTPUT_FLOAT && (!params->multiplier || !params->bias)) ||
        (desc->output == BK_OUTPUT_BITS && (!params->direction || !params->threshold)))
        return bk_fail(error, error_size, "binary conv: missing parameters for the output kind");
    bk_bconv *k = calloc(1, sizeof *k);
    if (!k) return bk_fail(error, error_size, "binary conv: out of memory");
    k->desc = *desc;
    k->in_words = (desc->in_c + 63) / 64;
    k->out_words = (desc->out_c + 63) / 64;
    k->taps = desc->kernel_h * desc->kernel_w;
    k->k_words = k->taps * k->in_words;
    if (kernel_name) {
        int32_t count = 0;
        const bk_bconv_variant *const *list = bk_bconv_variants(isa, &count);
        for (int32_t i = 0; i < count && !k->variant; i++)
            if (!strcmp(list[i]->name, kernel_name) && (!list[i]->max_k_words || k->k_words <= list[i]->max_k_words))
                k->variant = list[i];
    } else {
        k->variant = select_variant(isa, k->k_words);
    }
    if (!k->variant) {
        free(k);
        return bk_fail(error, error_size, "binary conv: no %s kernel%s%s accepts %d words per pixel", bk_isa_name(isa),
                       kernel_name ? " named " : "", kernel_name ? kernel_name : "", k->k_words);
    }
    const int32_t G = k->variant->channel_group;
    k->padded_channels = BK_ROUND_UP(desc->out_c, G);
    k->segments = desc->kernel_h;
    k->segment_words = desc->kernel_w * k->in_words;
    k->row_inside = bk_alloc((size_t)desc->out_h);
    k->column_inside = bk_alloc((size_t)desc->out_w);
    if (!k->row_inside || !k->column_inside) { bk_bconv_destroy(k); return bk_fail(error, error_size, "binary conv: out of memory"); }
    for (int32_t oy = 0; oy < desc->out_h; oy++) {
        const int64_t iy = (int64_t)oy * desc->stride_h - desc->pad_top;
        k->row_inside[oy] = iy >= 0 && iy + desc->kernel_h <= desc->in_h;
    }
    k->inside_x0 = desc->out_w;
    k->inside_x1 = 0;
    for (int32_t ox = 0; ox < desc->out_w; ox++) {
        const int64_t ix = (int64_t)ox * desc->stride_w - desc->pad_left;
        k->column_inside[ox] = ix >= 0 && ix + desc->kernel_w <= desc->in_w;
        if (k->column_inside[ox]) {
            k->inside_x0 = BK_MIN(k->inside_x0, ox);
            k->inside_x1 = ox + 1;
        }
    }

    // Weights, with every channel whose threshold compares downwards inverted: -dot(x, w) =
    // dot(x, ~w), so "direction * dot >= t" becomes "dot(x, ~w) >= t" (bits of ~w past in_c
    // stay 0).
    const size_t packed_words = (size_t)k->padded_channels * (size_t)k->k_words;
    k->weights = bk_alloc(packed_words * sizeof(uint64_t));
    k->padding_word = bk_alloc((size_t)k->in_words * sizeof(uint64_t));
    if (!k->weights || !k->padding_word) { bk_bconv_destroy(k); return bk_fail(error, error_size, "binary conv: out of memory"); }
    const uint64_t tail_mask = last_word_mask(desc->in_c);
    for (int32_t o = 0; o < desc->out_c; o++) {
        const int invert = desc->output == BK_OUTPUT_BITS && params->direction[o] < 0;
        for (int32_t kk = 0; kk < k->k_words; kk++) {
            uint64_t word = params->weights[(size_t)o * (size_t)k->k_words + (size_t)kk];
            uint64_t mask = (kk % k->in_words == k->in_words - 1) ? tail_mask : ~(uint64_t)0;
            word &= mask;
            if (invert) word = ~word & mask;
            k->weights[bk_group_index((size_t)o, (size_t)kk, (size_t)k->k_words, (size_t)G)] = word;
        }
    }
    if (desc->pad_value == BK_PAD_PLUS_ONE) {
        for (int32_t w = 0; w < k->in_words; w++) k->padding_word[w] = ~(uint64_t)0;
        k->padding_word[k->in_words - 1] = tail_mask;
    }
    if (build_tables(k, params, error, error_size)) { bk_bconv_destroy(k); return -1; }

    // Tasks of up to 256 pixels, a whole number of tiles; the scratch holds the im2col rows
    // of one border tile.
    const int32_t tile = k->variant->tile_pixels;
    k->block_pixels = BK_MAX(tile, 256 / tile * tile);
    k->scratch_bytes = BK_ROUND_UP((size_t)tile * (size_t)k->k_words * 8, 64);
    *result = k;
    return 0;
}

int bk_bconv_create(const bk_bconv_desc *desc, const bk_bconv_params *params, bk_isa isa, bk_bconv **result,
                    char *error, size_t error_size) {
    return create(desc, params, isa, NULL, result, error, error_size);
}

int bk_bconv_create_with_kernel(const bk_bconv_desc *desc, const bk_bconv_params *params, const char *kernel_name,
                                bk_bconv **result, char *error, size_t error_size) {
    // The family is the first that lists the name; the variant's own ISA must be runnable.
    for (int isa = 0; isa < BK_ISA_COUNT; isa++) {
        for (int32_t i = 0; bk_bconv_kernel_name((bk_isa)isa, i); i++)
            if (!strcmp(bk_bconv_kernel_name((bk_isa)isa, i), kernel_name))
                return create(desc, params, (bk_isa)isa, kernel_name, result, error, error_size);
    }
    *result = NULL;
    return bk_fail(error, error_size, "binary conv: no micro-kernel named %s in this build", kernel_name);
}

void bk_bconv_info(const bk_bconv *k, bk_kernel_info *info) {
    info->channel_quantum = k->desc.output == BK_OUTPUT_BITS ? k->variant->bits_quantum : k->variant->float_quantum;
    info->tile_pixels = k->variant->tile_pixels;
    info->block_pixels = k->block_pixels;
    info->scratch_bytes = k->scratch_bytes;
    info->packed_bytes = (size_t)k->padded_channels * (size_t)k->k_words * 8 + k->table_stride_bytes * (size_t)k->patterns;
    info->kernel_name = k->variant->name;
}

void bk_bconv_destroy(bk_bconv *k) {
    if (!k) return;
    bk_free(k->weights);
    bk_free(k->padding_word);
    bk_free(k->row_inside);
    bk_free(k->column_inside);
    bk_free(k->row_class);
    bk_free(k->column_class);
    bk_free(k->table);
    bk_free(k->scale);
    free(k);
}

/// Copies `words` words; small rows (the common 3-9 words) as two overlapping 16-byte moves.
BK_ALWAYS_INLINE void copy_words(uint64_t *destination, const uint64_t *source, size_t words) {
    if (words >= 2 && words <= 4) {
        memcpy(destination, source, 16);
        memcpy(destination + words - 2, source + words - 2, 16);
    } else {
        memcpy(destination, source, words * 8);
    }
}

/// The receptive field of output pixel (oy, ox) as one row of k_words words in (ky, kx,
/// word) order, padded taps filled with the padding word.
static void im2col_pixel(const bk_bconv *k, const uint64_t *input, int32_t oy, int32_t ox, uint64_t *out) {
    const bk_bconv_desc *d = &k->desc;
    const int32_t W = k->in_words, kw = d->kernel_w;
    const int32_t iy0 = oy * d->stride_h - d->pad_top, ix0 = ox * d->stride_w - d->pad_left;
    const int columns_inside = ix0 >= 0 && ix0 + kw <= d->in_w;
    for (int32_t ky = 0; ky < d->kernel_h; ky++) {
        const int32_t iy = iy0 + ky;
        if (iy < 0 || iy >= d->in_h) {
            for (int32_t kx = 0; kx < kw; kx++, out += W) copy_words(out, k->padding_word, (size_t)W);
            continue;
        }
        const uint64_t *row = input + (size_t)iy * (size_t)d->in_w * (size_t)W;
        if (columns_inside) {
            copy_words(out, row + (size_t)ix0 * (size_t)W, (size_t)k->segment_words);
            out += k->segment_words;
        } else {
            for (int32_t kx = 0; kx < kw; kx++, out += W) {
                const int32_t ix = ix0 + kx;
                copy_words(out, (ix < 0 || ix >= d->in_w) ? k->padding_word : row + (size_t)ix * (size_t)W, (size_t)W);
            }
        }
    }
}

void bk_bconv_run(const bk_bconv *k, const uint64_t *input, const float *residual, void *output,
                  int32_t pixel_begin, int32_t pixel_end, int32_t channel_begin, int32_t channel_end, void *scratch) {
    const bk_bconv_desc *d = &k->desc;
    const int bits = d->output == BK_OUTPUT_BITS;
    const int32_t tile_pixels = k->variant->tile_pixels;
    const size_t W = (size_t)k->in_words;
    const size_t out_row = bits ? (size_t)k->out_words * 8 : (size_t)d->out_c * sizeof(float);
    // Bytes of a packed output row past the last channel group: this task clears them when
    // it owns the last channel, so padding bits stay 0 whatever the arena held.
    const size_t written_bytes = (size_t)k->padded_channels / 8;
    const int clear_tail = bits && channel_end == d->out_c && written_bytes < out_row;
    uint64_t *rows = (uint64_t *)scratch;
    // (oy, ox) of the tile's first pixel, advanced without divisions.
    int32_t oy = pixel_begin / d->out_w, ox = pixel_begin % d->out_w;
    const size_t row_stride = (size_t)d->in_w * W;
    // Interior tiles are collected into batches; a border tile (its im2col rows are in the
    // scratch) is computed on its own, after the batch before it.
    bk_btile batch[BK_TILE_BATCH_MAX];
    int32_t batched = 0;
#define BK_FLUSH()                                                                               \
    do {                                                                                         \
        if (batched) k->variant->tiles(k, batch, batched, channel_begin, channel_end);           \
        if (clear_tail)                                                                          \
            for (int32_t t_ = 0; t_ < batched; t_++)                                             \
                for (int32_t i_ = 0; i_ < batch[t_].pixels; i_++)                                \
                    memset((uint8_t *)batch[t_].out[i_] + written_bytes, 0, out_row - written_bytes); \
        batched = 0;                                                                             \
    } while (0)
    for (int32_t first = pixel_begin; first < pixel_end; first += tile_pixels) {
        bk_btile *tile = &batch[batched];
        const int32_t n = BK_MIN(tile_pixels, pixel_end - first);
        tile->pixels = n;
        uint8_t *out = (uint8_t *)output + (size_t)first * out_row;
        const float *shortcut = residual ? residual + (size_t)first * (size_t)d->out_c : NULL;
#pragma clang loop vectorize(disable)
        for (int32_t i = 0; i < n; i++) {
            tile->out[i] = out + (size_t)i * out_row;
            tile->residual[i] = shortcut ? shortcut + (size_t)i * (size_t)d->out_c : NULL;
        }
        if (k->row_inside[oy] && ox >= k->inside_x0 && ox + n <= k->inside_x1) {
            // One output row, every window inside the input: read it there, one kernel row
            // at a time, and every pixel has the interior pattern.
            tile->segment_stride = row_stride;
            const uint64_t *a = input + (size_t)(oy * d->stride_h - d->pad_top) * row_stride +
                                (size_t)(ox * d->stride_w - d->pad_left) * W;
            const size_t step = (size_t)d->stride_w * W;
            const int32_t q = k->row_class[oy] * k->column_classes + k->column_class[ox];
            const uint8_t *table = (const uint8_t *)k->table + (size_t)q * k->table_stride_bytes;
#pragma clang loop vectorize(disable)
            for (int32_t i = 0; i < n; i++) {
                tile->a[i] = a + (size_t)i * step;
                tile->table[i] = table;
            }
            ox += n;
            if (ox == d->out_w) { ox = 0; oy++; }
            if (++batched == BK_TILE_BATCH_MAX) BK_FLUSH();
        } else {
            // A border tile (or one crossing rows): im2col rows, a pattern per pixel.
            bk_btile border = *tile;
            BK_FLUSH();
            border.segment_stride = (size_t)k->segment_words;
#pragma clang loop vectorize(disable)
            for (int32_t i = 0; i < n; i++) {
                uint64_t *row = rows + (size_t)i * (size_t)k->k_words;
                im2col_pixel(k, input, oy, ox, row);
                border.a[i] = row;
                const int32_t q = k->row_class[oy] * k->column_classes + k->column_class[ox];
                border.table[i] = (const uint8_t *)k->table + (size_t)q * k->table_stride_bytes;
                if (++ox == d->out_w) { ox = 0; oy++; }
            }
            batch[0] = border;
            batched = 1;
            BK_FLUSH();
        }
    }
    BK_FLUSH();
#undef BK_FLUSH
}
