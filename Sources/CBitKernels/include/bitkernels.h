#ifndef BITKERNELS_H
#define BITKERNELS_H

// BitFleet's kernel library: every hot loop of the engine, for every architecture, behind
// one interface. The Swift planner describes a layer (shapes, window, epilogue) and gets
// back an opaque kernel object that chose its micro-kernel from the layer's shape and the
// instruction set, packed the weights in the layout that micro-kernel wants, and
// precomputed its output transform. Swift then only splits the work into tasks and calls
// `run` per task; nothing on the Swift side knows about registers, tiles or layouts.
//
// Instruction sets are families: code for AVX2/AVX-512 is compiled with per-function
// target attributes (x86-64), code for NEON is baseline on aarch64 and the UDOT variants
// carry a `+dotprod` target attribute; every entry point checks `bk_isa_supported` first
// (the Swift side refuses an unsupported family before creating anything).
//
// Activations are NHWC. Binary activations are packed: ceil(C/64) 64-bit words per pixel,
// bit c%64 of word c/64 is channel c, 1 = +1, 0 = -1, padding bits always 0.

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Instruction sets

typedef enum {
    BK_ISA_PORTABLE = 0,      // plain C: any CPU
    BK_ISA_AVX2 = 1,          // x86-64 AVX2 + FMA + POPCNT
    BK_ISA_AVX512 = 2,        // x86-64 AVX-512 F/BW/VL/DQ + VPOPCNTDQ (and AVX2 + FMA)
    BK_ISA_NEON = 3,          // aarch64 Advanced SIMD (every Pi 3/4/5)
    BK_ISA_NEON_DOTPROD = 4,  // aarch64 with UDOT (Armv8.2 dotprod: Cortex-A76/Pi 5)
    BK_ISA_COUNT = 5
} bk_isa;

/// 1 when this build contains the family and the running CPU can execute it.
int bk_isa_supported(bk_isa isa);
/// "portable", "avx2", "avx512", "neon", "neon-dotprod".
const char *bk_isa_name(bk_isa isa);

/// A pause for spin-wait loops (x86 PAUSE, aarch64 YIELD): lets the sibling hardware
/// thread run and keeps a spinning core from starving the memory system.
static inline void bk_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

// MARK: - Binary convolution (and binary dense, as a 1x1 convolution of a 1x1 image)

typedef enum { BK_PAD_ZERO = 0, BK_PAD_PLUS_ONE = 1, BK_PAD_MINUS_ONE = 2 } bk_pad;
typedef enum { BK_OUTPUT_FLOAT = 0, BK_OUTPUT_BITS = 1 } bk_output;

typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;  // bottom/right padding follow from the output size
    int32_t pad_value;          // bk_pad: what the binarized input is padded with
    int32_t output;             // bk_output
    int32_t residual;           // float output only: add a float tensor shaped like the output
} bk_bconv_desc;

/// Parameters of a binary convolution, read only during `bk_bconv_create`.
///   weights:  [out_c][kernel_h][kernel_w][ceil(in_c/64)] packed words, padding bits 0.
///   float output: y = multiplier[o] * dot + bias[o] (+ residual)
///   bits output:  bit = direction[o] * dot >= threshold[o]   (direction +1 or -1)
/// where dot is the exact +-1 dot product, with zero padding counting as 0.
typedef struct {
    const uint64_t *weights;
    const float *multiplier;
    const float *bias;
    const int32_t *direction;
    const int32_t *threshold;
} bk_bconv_params;

typedef struct bk_bconv bk_bconv;

typedef struct {
    /// Work granularity: a task covers any pixel range and a channel range whose bounds are
    /// multiples of `channel_quantum` (or end at out_c).
    int32_t channel_quantum;
    /// Pixels the micro-kernel computes at once; blocks are best a multiple of it.
    int32_t tile_pixels;
    /// Pixels per task that keep the micro-kernel's operands in L1.
    int32_t block_pixels;
    /// Scratch bytes one task of up to `block_pixels` pixels needs (64-byte aligned).
    size_t scratch_bytes;
    /// Bytes of packed weights and tables the kernel holds.
    size_t packed_bytes;
    /// The micro-kernel chosen for this layer, e.g. "neon-4x8-u8acc".
    const char *kernel_name;
} bk_kernel_info;

/// Creates the kernel for one layer; returns 0, or -1 with a message in `error`.
int bk_bconv_create(const bk_bconv_desc *desc, const bk_bconv_params *params, bk_isa isa,
                    bk_bconv **kernel, char *error, size_t error_size);
/// The same with one named micro-kernel (conformance tests and benchmarks): it must be
/// compiled in, runnable on this CPU and accept the layer's depth.
int bk_bconv_create_with_kernel(const bk_bconv_desc *desc, const bk_bconv_params *params, const char *kernel_name,
                                bk_bconv **kernel, char *error, size_t error_size);
/// Deepest receptive field (words per output pixel) the named micro-kernel accepts; 0: any,
/// -1: no such kernel.
int32_t bk_bconv_kernel_max_depth(const char *kernel_name);
/// Name of the index-th micro-kernel the family offers, in order of preference; NULL past the end.
const char *bk_bconv_kernel_name(bk_isa isa, int32_t index);
void bk_bconv_info(const bk_bconv *kernel, bk_kernel_info *info);
/// Output pixels [pixel_begin, pixel_end) and channels [channel_begin, channel_end).
/// input: packed bits; residual: floats (or NULL); output: floats or packed words.
void bk_bconv_run(const bk_bconv *kernel, const uint64_t *input, const float *residual, void *output,
                  int32_t pixel_begin, int32_t pixel_end, int32_t channel_begin, int32_t channel_end,
                  void *scratch);
void bk_bconv_destroy(bk_bconv *kernel);

// MARK: - Float convolution (and dense, as a 1x1 convolution of a 1x1 image)

typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;  // zero padding
} bk_fconv_desc;

typedef struct bk_fconv bk_fconv;

/// weights: [out_c][kernel_h][kernel_w][in_c]; bias: [out_c] or NULL. y = conv + bias.
int bk_fconv_create(const bk_fconv_desc *desc, const float *weights, const float *bias, bk_isa isa,
                    bk_fconv **kernel, char *error, size_t error_size);
void bk_fconv_info(const bk_fconv *kernel, bk_kernel_info *info);
/// The layer's weights ([out_c][kernel_h][kernel_w][in_c]) and bias as given to create
/// (packing is a permutation, so this is exact): for traces and diagnostics.
void bk_fconv_copy_parameters(const bk_fconv *kernel, float *weights, float *bias);
void bk_fconv_run(const bk_fconv *kernel, const float *input, float *output, int32_t pixel_begin,
                  int32_t pixel_end, int32_t channel_begin, int32_t channel_end, void *scratch);
void bk_fconv_destroy(bk_fconv *kernel);

// MARK: - Element-wise and data movement

/// Sign bits of `pixels` rows of `channels` floats (x >= 0, also -0, -> 1; NaN -> 0) into
/// rows of ceil(channels/64) words with zero padding bits.
void bk_binarize(bk_isa isa, const float *x, size_t pixels, size_t channels, uint64_t *out);

typedef struct {
    int32_t in_h, in_w, channels;
    int32_t out_h, out_w;
    int32_t kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
    int32_t count_includes_padding;  // average only: divide by the full window, not the valid taps
} bk_pool_desc;

/// Max pooling (padded taps ignored) of output pixels [pixel_begin, pixel_end).
void bk_max_pool(bk_isa isa, const bk_pool_desc *desc, const float *input, float *output,
                 int32_t pixel_begin, int32_t pixel_end);
/// Average pooling of output pixels [pixel_begin, pixel_end).
void bk_average_pool(bk_isa isa, const bk_pool_desc *desc, const float *input, float *output,
                     int32_t pixel_begin, int32_t pixel_end);
/// Mean over `pixels` rows of `channels` floats, for channels [channel_begin, channel_end).
void bk_global_average_pool(bk_isa isa, const float *input, size_t pixels, size_t channels,
                            float *output, size_t channel_begin, size_t channel_end);

/// [channels][pixels] -> [pixels][channels] and back (the caller's NCHW to the engine's NHWC).
void bk_transpose(bk_isa isa, const float *source, size_t rows, size_t columns, float *destination);

#ifdef __cplusplus
}
#endif

#endif
