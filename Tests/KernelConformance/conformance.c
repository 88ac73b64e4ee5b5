// Conformance test of every CBitKernels micro-kernel this CPU can run against a scalar
// reference written here from the definitions (+-1 values, zero padding counting as 0),
// not from the library's packing or tables. Built and run by scripts/test-kernels.sh:
// natively on x86-64 (portable, AVX2, AVX-512) and under qemu-aarch64 with -cpu cortex-a72
// (NEON) and -cpu cortex-a76 (NEON + dotprod).
//
//   conformance [--seed N] [--require ISA]... [--forbid ISA]...
//
// --require fails the run if that family is not available here (so a CI machine that lost
// a feature cannot pass by skipping); --forbid fails it if the family IS reported (checks
// the run-time detection, e.g. no dotprod on a Cortex-A72). Exit status 0 only if every
// case of every kernel matched.

#include "bitkernels.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;
static uint64_t next_random(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int random_below(int n) { return (int)(next_random() % (uint64_t)n); }
static float random_float(float low, float high) {
    return low + (high - low) * (float)((next_random() >> 40) * (1.0 / (double)(1ull << 24)));
}

#define BK_MAX_TEST(a, b) ((a) > (b) ? (a) : (b))

static int failures, checks, skipped;
static void fail(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    fprintf(stderr, "FAIL ");
    vfprintf(stderr, format, arguments);
    fprintf(stderr, "\n");
    va_end(arguments);
    failures++;
}

// MARK: - Binary convolution

typedef struct {
    bk_bconv_desc d;
    int pad_bottom, pad_right;
} bconv_case;

static int bit_of(const uint64_t *row, int c) { return (int)((row[c / 64] >> (c % 64)) & 1); }

/// Exact +-1 dot product of output pixel (oy, ox) and channel o; padded taps are 0, +1 or -1.
static long reference_dot(const bconv_case *t, const uint64_t *input, const uint64_t *weights, int oy, int ox, int o) {
    const bk_bconv_desc *d = &t->d;
    const int in_words = (d->in_c + 63) / 64;
    long dot = 0;
    for (int ky = 0; ky < d->kernel_h; ky++) {
        for (int kx = 0; kx < d->kernel_w; kx++) {
            const int iy = oy * d->stride_h - d->pad_top + ky, ix = ox * d->stride_w - d->pad_left + kx;
            const uint64_t *w = weights + ((size_t)o * d->kernel_h * d->kernel_w + (size_t)(ky * d->kernel_w + kx)) * in_words;
            const int inside = iy >= 0 && iy < d->in_h && ix >= 0 && ix < d->in_w;
            if (!inside && d->pad_value == BK_PAD_ZERO) continue;
            for (int c = 0; c < d->in_c; c++) {
                int x;
                if (inside) x = bit_of(input + ((size_t)iy * d->in_w + ix) * in_words, c) ? 1 : -1;
                else x = d->pad_value == BK_PAD_PLUS_ONE ? 1 : -1;
                dot += x * (bit_of(w, c) ? 1 : -1);
            }
        }
    }
    return dot;
}

static void random_bits(uint64_t *words, size_t rows, int channels) {
    const int per_row = (channels + 63) / 64;
    for (size_t r = 0; r < rows; r++)
        for (int w = 0; w < per_row; w++) {
            uint64_t word = next_random();
            const int used = channels - w * 64;
            if (used < 64) word &= ((uint64_t)1 << used) - 1;
            words[r * per_row + w] = word;
        }
}

/// Runs one case on one named micro-kernel, split into tasks of `quantum`-aligned channel
/// ranges and uneven pixel ranges as the engine's thread pool would, and compares.
static void check_bconv(const bconv_case *t, const char *kernel_name, int split) {
    const bk_bconv_desc *d = &t->d;
    const int in_words = (d->in_c + 63) / 64, out_words = (d->out_c + 63) / 64;
    const int taps = d->kernel_h * d->kernel_w;
    const int32_t max_depth = bk_bconv_kernel_max_depth(kernel_name);
    if (max_depth > 0 && taps * in_words > max_depth) {
        skipped++;  // the family's next kernel takes such depths; it is tested in its own suite
        return;
    }
    const size_t in_pixels = (size_t)d->in_h * d->in_w, out_pixels = (size_t)d->out_h * d->out_w;
    uint64_t *input = malloc(sizeof(uint64_t) * in_pixels * in_words);
    uint64_t *weights = malloc(sizeof(uint64_t) * (size_t)d->out_c * taps * in_words);
    float *multiplier = malloc(sizeof(float) * d->out_c), *bias = malloc(sizeof(float) * d->out_c);
    int32_t *direction = malloc(sizeof(int32_t) * d->out_c), *threshold = malloc(sizeof(int32_t) * d->out_c);
    float *residual = d->residual ? malloc(sizeof(float) * out_pixels * d->out_c) : NULL;
    random_bits(input, in_pixels, d->in_c);
    random_bits(weights, (size_t)d->out_c * taps, d->in_c);
    const int max_dot = taps * d->in_c;
    for (int o = 0; o < d->out_c; o++) {
        multiplier[o] = random_float(-2, 2);
        bias[o] = random_float(-3, 3);
        direction[o] = random_below(2) ? 1 : -1;
        // Thresholds on both sides of every reachable dot, and the never/always extremes.
        const int r = random_below(20);
        threshold[o] = r == 0 ? INT32_MAX : r == 1 ? INT32_MIN : random_below(2 * max_dot + 5) - max_dot - 2;
    }
    if (residual)
        for (size_t i = 0; i < out_pixels * d->out_c; i++) residual[i] = random_float(-5, 5);

    bk_bconv_params params = {weights, multiplier, bias, direction, threshold};
    bk_bconv *kernel = NULL;
    char error[256];
    if (bk_bconv_create_with_kernel(d, &params, kernel_name, &kernel, error, sizeof error)) {
        fail("%s: create failed: %s", kernel_name, error);
        goto done;
    }
    bk_kernel_info info;
    bk_bconv_info(kernel, &info);
    if (strcmp(info.kernel_name, kernel_name)) fail("%s: created %s instead", kernel_name, info.kernel_name);
    void *scratch = NULL;
    if (posix_memalign(&scratch, 64, info.scratch_bytes + 64)) { fail("out of memory"); bk_bconv_destroy(kernel); goto done; }
    const int bits = d->output == BK_OUTPUT_BITS;
    const size_t out_bytes = bits ? out_pixels * out_words * 8 : out_pixels * d->out_c * sizeof(float);
    // Filled with a pattern first: every byte the kernel owns (padding bits included) must
    // be written.
    uint8_t *output = malloc(out_bytes);
    memset(output, 0xA5, out_bytes);
    const int pixel_step = split ? BK_MAX_TEST(1, (int)info.block_pixels / 2 + 1) : (int)out_pixels;
    const int channel_step = split ? info.channel_quantum * (1 + random_below(2)) : d->out_c;
    for (int p0 = 0; p0 < (int)out_pixels; p0 += pixel_step)
        for (int c0 = 0; c0 < d->out_c; c0 += channel_step)
            bk_bconv_run(kernel, input, residual, output, p0, p0 + pixel_step < (int)out_pixels ? p0 + pixel_step : (int)out_pixels,
                         c0, c0 + channel_step < d->out_c ? c0 + channel_step : d->out_c, scratch);

    int reported = 0;
    for (int oy = 0; oy < d->out_h; oy++) {
        for (int ox = 0; ox < d->out_w; ox++) {
            const size_t pixel = (size_t)oy * d->out_w + ox;
            for (int o = 0; o < d->out_c; o++) {
                const long dot = reference_dot(t, input, weights, oy, ox, o);
                checks++;
                if (bits) {
                    const int expected = (long)direction[o] * dot >= threshold[o];
                    const int actual = bit_of((const uint64_t *)output + pixel * out_words, o);
                    if (expected != actual && reported++ < 3)
                        fail("%s in=%d out=%d %dx%d k=%dx%d s=%d p=%d pad=%d: pixel (%d,%d) channel %d: bit %d, expected %d (dot %ld, direction %d, threshold %d)",
                             kernel_name, d->in_c, d->out_c, d->in_h, d->in_w, d->kernel_h, d->kernel_w, d->stride_h, d->pad_top, d->pad_value,
                             oy, ox, o, actual, expected, dot, direction[o], threshold[o]);
                } else {
                    const double expected = (double)multiplier[o] * dot + bias[o] + (residual ? residual[pixel * d->out_c + o] : 0);
                    const double actual = ((const float *)output)[pixel * d->out_c + o];
                    const double magnitude = fabs((double)multiplier[o]) * (max_dot + 2.0 * max_dot) + fabs(bias[o]) + 5;
                    if (!(fabs(actual - expected) <= 4e-7 * magnitude) && reported++ < 3)
                        fail("%s in=%d out=%d %dx%d k=%dx%d s=%d p=%d pad=%d residual=%d: pixel (%d,%d) channel %d: %.7g, expected %.7g (dot %ld)",
                             kernel_name, d->in_c, d->out_c, d->in_h, d->in_w, d->kernel_h, d->kernel_w, d->stride_h, d->pad_top, d->pad_value,
                             d->residual, oy, ox, o, actual, expected, dot);
                }
            }
            if (bits) {
                // Padding bits past out_c must be 0 (the next layer XORs whole words).
                const uint64_t *row = (const uint64_t *)output + pixel * out_words;
                const int used = d->out_c % 64;
                checks++;
                if (used && (row[out_words - 1] >> used) && reported++ < 3)
                    fail("%s out=%d: pixel %zu has padding bits set: %016llx", kernel_name, d->out_c, pixel,
                         (unsigned long long)row[out_words - 1]);
            }
        }
    }
    free(output);
    free(scratch);
    bk_bconv_destroy(kernel);
done:
    free(input); free(weights); free(multiplier); free(bias); free(direction); free(threshold); free(residual);
}

static int output_size(int input, int kernel, int stride, int before, int after) {
    const int span = input + before + after - kernel;
    return span < 0 ? 0 : span / stride + 1;
}

static int make_case(bconv_case *t, int in_c, int out_c, int h, int w, int kernel, int stride, int pad, int pad_value,
                     int output, int residual) {
    memset(t, 0, sizeof *t);
    bk_bconv_desc *d = &t->d;
    d->in_h = h; d->in_w = w; d->in_c = in_c; d->out_c = out_c;
    d->kernel_h = d->kernel_w = kernel;
    d->stride_h = d->stride_w = stride;
    d->pad_top = d->pad_left = pad;
    t->pad_bottom = t->pad_right = pad;
    d->out_h = output_size(h, kernel, stride, pad, pad);
    d->out_w = output_size(w, kernel, stride, pad, pad);
    d->pad_value = pad_value;
    d->output = output;
    d->residual = output == BK_OUTPUT_FLOAT && residual;
    return d->out_h > 0 && d->out_w > 0;
}

static void bconv_suite(const char *kernel_name, int cases) {
    static const int in_channels[] = {1, 3, 7, 31, 63, 64, 65, 100, 127, 128, 129, 200, 256, 320};
    static const int out_channels[] = {1, 5, 7, 8, 9, 13, 16, 17, 31, 33, 64, 65, 100};
    static const int kernels[] = {1, 1, 3, 3, 3, 5};
    const int before = failures;
    int ran = 0;
    while (ran < cases) {
        bconv_case t;
        const int kernel = kernels[random_below(6)];
        if (!make_case(&t, in_channels[random_below(14)], out_channels[random_below(13)], 1 + random_below(11),
                       1 + random_below(11), kernel, 1 + random_below(2), random_below(kernel / 2 + 2 > kernel ? kernel : kernel / 2 + 2),
                       random_below(3), random_below(2), random_below(2)))
            continue;
        check_bconv(&t, kernel_name, random_below(2));
        ran++;
    }
    // Depth edge cases: 1 word; the 15/16-word block boundary of the 8-bit NEON kernel and
    // the dotprod kernel's lower limit; 511/512 words, where 16-bit counts end; thousands of
    // words (binary dense layers).
    static const int dense_words[] = {1, 2, 14, 15, 16, 17, 30, 31, 32, 33, 62, 100, 511, 512, 513, 1500, 2600};
    for (size_t i = 0; i < sizeof dense_words / sizeof dense_words[0]; i++) {
        const int words = dense_words[i];
        for (int output = 0; output < 2; output++) {
            bconv_case t;
            make_case(&t, words * 64 - random_below(2) * (1 + random_below(63)), 1 + random_below(40), 1, 1, 1, 1, 0, 0, output, 0);
            check_bconv(&t, kernel_name, 0);
        }
    }
    // A 3x3 layer deep enough for several 15-word blocks, with every padding mode and a
    // 7x7 image (borders everywhere), strides 1 and 2.
    for (int pad_value = 0; pad_value < 3; pad_value++)
        for (int stride = 1; stride <= 2; stride++)
            for (int output = 0; output < 2; output++) {
                bconv_case t;
                make_case(&t, 448, 24, 7, 7, 3, stride, 1, pad_value, output, 1);
                check_bconv(&t, kernel_name, 1);
            }
    printf("  %-24s %s (%d random cases + depth and padding edge cases)\n", kernel_name,
           failures == before ? "ok" : "FAILED", cases);
}

// MARK: - Float convolution

static void check_fconv(bk_isa isa, int in_c, int out_c, int h, int w, int kernel, int stride, int pad, int split) {
    bk_fconv_desc d = {h, w, in_c, output_size(h, kernel, stride, pad, pad), output_size(w, kernel, stride, pad, pad), out_c,
                       kernel, kernel, stride, stride, pad, pad};
    if (d.out_h < 1 || d.out_w < 1) return;
    const size_t depth = (size_t)kernel * kernel * in_c, out_pixels = (size_t)d.out_h * d.out_w;
    float *input = malloc(sizeof(float) * (size_t)h * w * in_c), *weights = malloc(sizeof(float) * depth * out_c);
    float *bias = malloc(sizeof(float) * out_c), *output = malloc(sizeof(float) * out_pixels * out_c);
    for (size_t i = 0; i < (size_t)h * w * in_c; i++) input[i] = random_float(-1, 1);
    for (size_t i = 0; i < depth * out_c; i++) weights[i] = random_float(-1, 1);
    for (int o = 0; o < out_c; o++) bias[o] = random_float(-1, 1);
    bk_fconv *k = NULL;
    char error[256];
    if (bk_fconv_create(&d, weights, bias, isa, &k, error, sizeof error)) {
        fail("%s float conv: %s", bk_isa_name(isa), error);
    } else {
        bk_kernel_info info;
        bk_fconv_info(k, &info);
        void *scratch = NULL;
        if (posix_memalign(&scratch, 64, info.scratch_bytes + 64) == 0) {
            for (size_t i = 0; i < out_pixels * out_c; i++) output[i] = NAN;
            const int pixel_step = split ? (int)info.block_pixels / 3 + 1 : (int)out_pixels;
            const int channel_step = split ? info.channel_quantum : out_c;
            for (int p0 = 0; p0 < (int)out_pixels; p0 += pixel_step)
                for (int c0 = 0; c0 < out_c; c0 += channel_step)
                    bk_fconv_run(k, input, output, p0, p0 + pixel_step < (int)out_pixels ? p0 + pixel_step : (int)out_pixels, c0,
                                 c0 + channel_step < out_c ? c0 + channel_step : out_c, scratch);
            int reported = 0;
            for (int oy = 0; oy < d.out_h; oy++)
                for (int ox = 0; ox < d.out_w; ox++)
                    for (int o = 0; o < out_c; o++) {
                        double sum = bias[o], magnitude = fabs(bias[o]);
                        for (int ky = 0; ky < kernel; ky++)
                            for (int kx = 0; kx < kernel; kx++) {
                                const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                for (int c = 0; c < in_c; c++) {
                                    const double term = (double)input[((size_t)iy * w + ix) * in_c + c] *
                                                        weights[(size_t)o * depth + (size_t)(ky * kernel + kx) * in_c + c];
                                    sum += term;
                                    magnitude += fabs(term);
                                }
                            }
                        const double actual = output[((size_t)oy * d.out_w + ox) * out_c + o];
                        checks++;
                        if (!(fabs(actual - sum) <= 1e-6 * magnitude + 1e-7) && reported++ < 3)
                            fail("%s float conv in=%d out=%d %dx%d k=%d s=%d p=%d: (%d,%d,%d) = %.7g, expected %.7g",
                                 info.kernel_name, in_c, out_c, h, w, kernel, stride, pad, oy, ox, o, actual, sum);
                    }
            free(scratch);
        }
        bk_fconv_destroy(k);
    }
    free(input); free(weights); free(bias); free(output);
}

static void fconv_suite(bk_isa isa) {
    const int before = failures;
    static const int channels[] = {1, 3, 5, 8, 15, 16, 17, 31, 33, 64, 70};
    for (int i = 0; i < 40; i++) {
        const int kernel = (int[]){1, 1, 3, 5, 7}[random_below(5)];
        check_fconv(isa, channels[random_below(11)], channels[random_below(11)], 1 + random_below(13), 1 + random_below(13),
                    kernel, 1 + random_below(2), random_below(kernel / 2 + 1), random_below(2));
    }
    check_fconv(isa, 3, 64, 23, 23, 7, 2, 3, 1);   // the Bi-Real stem, small
    check_fconv(isa, 512, 37, 1, 1, 1, 1, 0, 0);   // a classifier
    check_fconv(isa, 1027, 9, 1, 1, 1, 1, 0, 0);   // depth not a multiple of 4
    printf("  %-24s %s\n", "float conv", failures == before ? "ok" : "FAILED");
}

// MARK: - Element-wise kernels

static void elementwise_suite(bk_isa isa) {
    const int before = failures;
    // Binarize: signs, -0 -> 1, NaN -> 0, every tail length.
    for (int channels = 1; channels <= 200; channels += (channels < 70 ? 1 : 13)) {
        const int pixels = 3, words = (channels + 63) / 64;
        float *x = malloc(sizeof(float) * pixels * channels);
        uint64_t *bits = malloc(sizeof(uint64_t) * pixels * words);
        for (int i = 0; i < pixels * channels; i++) {
            const int r = random_below(10);
            x[i] = r == 0 ? -0.0f : r == 1 ? NAN : r == 2 ? 0.0f : random_float(-1, 1);
        }
        memset(bits, 0xA5, sizeof(uint64_t) * pixels * words);
        bk_binarize(isa, x, pixels, channels, bits);
        for (int p = 0; p < pixels; p++)
            for (int w = 0; w < words; w++) {
                uint64_t expected = 0;
                for (int c = w * 64; c < channels && c < w * 64 + 64; c++)
                    if (x[p * channels + c] >= 0.0f) expected |= (uint64_t)1 << (c - w * 64);
                checks++;
                if (bits[p * words + w] != expected)
                    fail("%s binarize channels=%d pixel %d word %d: %016llx, expected %016llx", bk_isa_name(isa), channels, p, w,
                         (unsigned long long)bits[p * words + w], (unsigned long long)expected);
            }
        free(x); free(bits);
    }
    // Transposes of every small shape, RGB planes, and a large one.
    const int shapes[][2] = {{1, 1}, {1, 7}, {3, 1}, {3, 50}, {4, 4}, {5, 9}, {8, 8}, {9, 17}, {16, 33}, {64, 3136}, {3, 50176}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const size_t rows = (size_t)shapes[s][0], columns = (size_t)shapes[s][1];
        float *a = malloc(sizeof(float) * rows * columns), *b = malloc(sizeof(float) * rows * columns);
        for (size_t i = 0; i < rows * columns; i++) a[i] = (float)i;
        bk_transpose(isa, a, rows, columns, b);
        int bad = 0;
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < columns; c++) bad += b[c * rows + r] != a[r * columns + c];
        checks++;
        if (bad) fail("%s transpose %zux%zu: %d elements misplaced", bk_isa_name(isa), rows, columns, bad);
        free(a); free(b);
    }
    // Pooling against a direct evaluation.
    for (int i = 0; i < 30; i++) {
        bk_pool_desc d = {0};
        d.in_h = 1 + random_below(9); d.in_w = 1 + random_below(9); d.channels = 1 + random_below(70);
        d.kernel_h = d.kernel_w = 1 + random_below(3);
        d.stride_h = d.stride_w = 1 + random_below(2);
        d.pad_top = d.pad_left = random_below(d.kernel_h);
        d.count_includes_padding = random_below(2);
        d.out_h = output_size(d.in_h, d.kernel_h, d.stride_h, d.pad_top, d.pad_top);
        d.out_w = output_size(d.in_w, d.kernel_w, d.stride_w, d.pad_left, d.pad_left);
        if (d.out_h < 1 || d.out_w < 1) continue;
        const size_t in_count = (size_t)d.in_h * d.in_w * d.channels, out_count = (size_t)d.out_h * d.out_w * d.channels;
        float *x = malloc(sizeof(float) * in_count), *y = malloc(sizeof(float) * out_count);
        for (size_t j = 0; j < in_count; j++) x[j] = random_float(-4, 4);
        for (int is_max = 0; is_max < 2; is_max++) {
            if (is_max) bk_max_pool(isa, &d, x, y, 0, d.out_h * d.out_w);
            else bk_average_pool(isa, &d, x, y, 0, d.out_h * d.out_w);
            for (int oy = 0; oy < d.out_h; oy++)
                for (int ox = 0; ox < d.out_w; ox++)
                    for (int c = 0; c < d.channels; c++) {
                        double best = -INFINITY, sum = 0;
                        int valid = 0;
                        for (int ky = 0; ky < d.kernel_h; ky++)
                            for (int kx = 0; kx < d.kernel_w; kx++) {
                                const int iy = oy * d.stride_h - d.pad_top + ky, ix = ox * d.stride_w - d.pad_left + kx;
                                if (iy < 0 || iy >= d.in_h || ix < 0 || ix >= d.in_w) continue;
                                const double v = x[((size_t)iy * d.in_w + ix) * d.channels + c];
                                best = v > best ? v : best;
                                sum += v;
                                valid++;
                            }
                        const double expected = is_max ? best : sum / (d.count_includes_padding ? d.kernel_h * d.kernel_w : (valid ? valid : 1));
                        const double actual = y[((size_t)oy * d.out_w + ox) * d.channels + c];
                        checks++;
                        if (!(fabs(actual - expected) <= 1e-5))
                            fail("%s %s pool: %.7g, expected %.7g", bk_isa_name(isa), is_max ? "max" : "average", actual, expected);
                    }
        }
        // Global average over a channel sub-range leaves the others alone.
        const size_t pixels = (size_t)d.in_h * d.in_w;
        float *g = malloc(sizeof(float) * (size_t)d.channels);
        for (int c = 0; c < d.channels; c++) g[c] = 12345;
        const int c0 = random_below(d.channels), c1 = c0 + 1 + random_below(d.channels - c0);
        bk_global_average_pool(isa, x, pixels, (size_t)d.channels, g, (size_t)c0, (size_t)c1);
        for (int c = 0; c < d.channels; c++) {
            double expected = 12345;
            if (c >= c0 && c < c1) {
                expected = 0;
                for (size_t p = 0; p < pixels; p++) expected += x[p * d.channels + c];
                expected /= (double)pixels;
            }
            checks++;
            if (!(fabs(g[c] - expected) <= 1e-5)) fail("%s global average channel %d: %.7g, expected %.7g", bk_isa_name(isa), c, g[c], expected);
        }
        free(g); free(x); free(y);
    }
    printf("  %-24s %s\n", "binarize/transpose/pool", failures == before ? "ok" : "FAILED");
}

// MARK: - Main

static int isa_named(const char *name) {
    for (int isa = 0; isa < BK_ISA_COUNT; isa++)
        if (!strcmp(bk_isa_name((bk_isa)isa), name)) return isa;
    return -1;
}

int main(int argc, char **argv) {
    uint64_t seed = 20261202;
    int required[BK_ISA_COUNT] = {0}, forbidden[BK_ISA_COUNT] = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if ((!strcmp(argv[i], "--require") || !strcmp(argv[i], "--forbid")) && i + 1 < argc) {
            const int isa = isa_named(argv[i + 1]);
            if (isa < 0) { fprintf(stderr, "unknown instruction set %s\n", argv[i + 1]); return 2; }
            (argv[i][2] == 'r' ? required : forbidden)[isa] = 1;
            i++;
        } else {
            fprintf(stderr, "usage: conformance [--seed N] [--require ISA]... [--forbid ISA]...\n");
            return 2;
        }
    }
    printf("kernel conformance, seed %llu\n", (unsigned long long)seed);
    for (int isa = 0; isa < BK_ISA_COUNT; isa++) {
        const char *name = bk_isa_name((bk_isa)isa);
        if (!bk_isa_supported((bk_isa)isa)) {
            if (required[isa]) fail("%s is required but not available on this CPU", name);
            else printf("%s: not available on this CPU, skipped\n", name);
            continue;
        }
        if (forbidden[isa]) fail("%s is reported available, but this CPU must not have it", name);
        printf("%s:\n", name);
        rng_state = seed + (uint64_t)isa;
        for (int i = 0; bk_bconv_kernel_name((bk_isa)isa, i); i++) bconv_suite(bk_bconv_kernel_name((bk_isa)isa, i), 120);
        fconv_suite((bk_isa)isa);
        elementwise_suite((bk_isa)isa);
    }
    printf("%d checks, %d failures (%d cases beyond a kernel's depth limit left to the kernel that takes them)\n",
           checks, failures, skipped);
    return failures ? 1 : 0;
}
