#ifndef BK_INTERNAL_H
#define BK_INTERNAL_H

// What the layer drivers (bconv.c, fconv.c) and the per-architecture micro-kernels share.
// Not part of the public interface.

#include "bitkernels.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BK_ALWAYS_INLINE static inline __attribute__((always_inline))
#define BK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define BK_MAX(a, b) ((a) > (b) ? (a) : (b))
#define BK_ROUND_UP(x, m) (((x) + (m) - 1) / (m) * (m))

/// 64-byte aligned, zero-filled; NULL when out of memory.
void *bk_alloc(size_t bytes);
void bk_free(void *pointer);
int bk_fail(char *error, size_t error_size, const char *format, ...) __attribute__((format(printf, 3, 4)));

// MARK: - Binary convolution

enum { BK_TILE_MAX_PIXELS = 8 };

/// Up to BK_TILE_MAX_PIXELS output pixels whose receptive fields are ready to read. A
/// receptive field is `segments` runs of `segment_words` words (one run per kernel row,
/// kernel_w * in_words words in (kx, word) order), the runs `segment_stride` words apart:
/// straight from the input for pixels whose window lies inside it (stride = one input row),
/// or from im2col rows for pixels at a border (stride = segment_words). `table` points at
/// each pixel's border-pattern row of the output transform (see bk_bconv below), `out` at
/// its output row, `residual` at its shortcut row.
typedef struct {
    const uint64_t *a[BK_TILE_MAX_PIXELS];
    size_t segment_stride;
    int32_t pixels;
    const void *table[BK_TILE_MAX_PIXELS];
    void *out[BK_TILE_MAX_PIXELS];
    const float *residual[BK_TILE_MAX_PIXELS];
} bk_btile;

struct bk_bconv;
/// Computes the outputs of `count` tiles for channels [c_begin, c_end) (group-aligned).
/// Tiles come in batches so that a micro-kernel's set-up is paid once per batch.
typedef void (*bk_btiles_fn)(const struct bk_bconv *kernel, const bk_btile *tiles, int32_t count, int32_t c_begin,
                             int32_t c_end);

/// Defines the batch entry point NAME over a per-tile function ONE (inlined into the loop).
#define BK_TILE_BATCH(NAME, ONE, ...)                                                               \
    static __VA_ARGS__ void NAME(const struct bk_bconv *k, const bk_btile *tiles, int32_t count, int32_t c_begin, \
                                 int32_t c_end) {                                                    \
        for (int32_t i = 0; i < count; i++) ONE(k, &tiles[i], c_begin, c_end);                      \
    }

enum { BK_TILE_BATCH_MAX = 16 };

/// The kind of per-pattern output table a micro-kernel reads.
typedef enum {
    BK_TABLE_I32 = 0,  // bits: int32 count thresholds; float: float offsets
    BK_TABLE_I16 = 1,  // bits: int16 count thresholds; float: float offsets
} bk_table_kind;

/// One micro-kernel and the layer shapes it accepts.
typedef struct {
    const char *name;
    bk_isa isa;
    int32_t tile_pixels;      // pixels per tile (<= BK_TILE_MAX_PIXELS)
    int32_t channel_group;    // output channels per weight group (layout: bk_layout_group.h)
    int32_t bits_quantum;     // channel split granularity with packed output
    int32_t float_quantum;    // ... with float output
    bk_table_kind table_kind;
    int32_t max_k_words;      // 0: any depth
    int32_t min_k_words;      // the variant is chosen only from this depth on
    bk_btiles_fn tiles;
} bk_bconv_variant;

/// The variants compiled in for `isa`, in order of preference (first accepted wins).
const bk_bconv_variant *const *bk_bconv_variants(bk_isa isa, int32_t *count);

/// A binary convolution layer, ready to run.
///
/// Output transform: the micro-kernel produces cnt = sum popcount(a ^ w) over the K words of
/// a pixel's receptive field, padded taps included (zero words, or all-ones words for +1
/// padding). With zero padding the padded taps must count as 0, so the exact dot product is
///   dot = D[q][o] - 2 * cnt,   D[q][o] = valid_bits(q) + 2 * popcount(w_o at q's padded taps)
/// where q is the pixel's border pattern (which taps fall outside the input). Every pattern
/// gets its own table row, so interior pixels (one pattern) pay nothing for the borders:
///   float:  y = offset[q][o] + scale[o] * cnt   (offset = m*D + b, scale = -2m)
///   bits:   bit = cnt <= threshold[q][o]        (channels with direction -1 have their
///           weights inverted at packing time, so one comparison serves every channel)
struct bk_bconv {
    bk_bconv_desc desc;
    const bk_bconv_variant *variant;
    int32_t in_words, out_words;
    int32_t taps, k_words;
    int32_t segments, segment_words;  // kernel_h runs of kernel_w * in_words words
    int32_t padded_channels;    // out_c rounded up to the variant's channel group
    uint64_t *weights;          // bk_layout_group.h layout
    uint64_t *padding_word;     // in_words words: the value of a padded tap
    uint8_t *row_inside;        // out_h: 1 when every kernel row of output row oy is inside the input
    uint8_t *column_inside;     // out_w: the same for columns
    int32_t inside_x0, inside_x1;  // the inside columns are [inside_x0, inside_x1) (one interval)
    // Border patterns: pattern(pixel) = row_class[oy] * column_classes + column_class[ox].
    int32_t patterns, column_classes;
    int32_t *row_class;
    int32_t *column_class;
    void *table;                // patterns x padded_channels (int32, int16 or float)
    size_t table_stride_bytes;  // bytes per pattern row
    float *scale;               // padded_channels (float output)
    int32_t block_pixels;
    size_t scratch_bytes;
};

// MARK: - Float convolution

enum { BK_FTILE_MAX_PIXELS = 16 };

struct bk_fconv;
/// Rows of the GEMM for a block of output pixels: c[p][o] = sum_k a[p][k] * w[o][k] + bias.
/// `a` holds row-major rows of k floats, `lda` apart (im2col rows or the input itself).
typedef void (*bk_fgemm_fn)(const struct bk_fconv *kernel, const float *a, size_t lda, int32_t pixels,
                            float *out, size_t ldo, int32_t c_begin, int32_t c_end);

typedef struct {
    const char *name;
    bk_isa isa;
    int32_t tile_pixels;
    int32_t channel_group;   // weights packed in panels of this many output channels
    bk_fgemm_fn gemm;
} bk_fconv_variant;

const bk_fconv_variant *bk_fconv_variant_for(bk_isa isa);

struct bk_fconv {
    bk_fconv_desc desc;
    const bk_fconv_variant *variant;
    int32_t k;                 // kernel_h * kernel_w * in_c
    int32_t padded_channels;
    float *weights;            // panels: w[(o / G) * k * G + kk * G + o % G]
    float *bias;               // padded_channels
    int32_t direct;
    int32_t block_pixels;
    size_t scratch_bytes;
};

// MARK: - Per-ISA entry points (defined only where compiled in)

void bk_binarize_portable(const float *x, size_t pixels, size_t channels, uint64_t *out);
void bk_binarize_avx2(const float *x, size_t pixels, size_t channels, uint64_t *out);
void bk_binarize_neon(const float *x, size_t pixels, size_t channels, uint64_t *out);
void bk_max_pool_neon(const bk_pool_desc *d, const float *input, float *output, int32_t pixel_begin, int32_t pixel_end);
void bk_transpose_portable(const float *source, size_t rows, size_t columns, float *destination);
void bk_transpose_neon(const float *source, size_t rows, size_t columns, float *destination);
void bk_transpose_avx2(const float *source, size_t rows, size_t columns, float *destination);

extern const bk_bconv_variant bk_bconv_portable_4x8;
extern const bk_bconv_variant bk_bconv_avx2_4x8;
extern const bk_bconv_variant bk_bconv_avx512_8x16;
extern const bk_bconv_variant bk_bconv_neon_4x8;
extern const bk_bconv_variant bk_bconv_neon_4x8_wide;
extern const bk_bconv_variant bk_bconv_neon_dotprod_4x8;
extern const bk_bconv_variant bk_bconv_neon_dotprod_4x8_wide;

extern const bk_fconv_variant bk_fconv_portable;
extern const bk_fconv_variant bk_fconv_avx2;
extern const bk_fconv_variant bk_fconv_avx512;
extern const bk_fconv_variant bk_fconv_neon;

#endif
