// aarch64 NEON binarization and transposes.

#include "bk_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

/// 64 floats -> one word: compare (x >= 0, so -0 -> 1 and NaN -> 0), narrow the 32-bit
/// masks to bytes, weight each byte by its bit and add pairwise down to 8 bytes.
void bk_binarize_neon(const float *x, size_t pixels, size_t channels, uint64_t *out) {
    static const uint8_t bit_weights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t weights = vld1q_u8(bit_weights);
    const size_t words = (channels + 63) / 64;
    for (size_t p = 0; p < pixels; p++) {
        const float *row = x + p * channels;
        uint64_t *destination = out + p * words;
        size_t c = 0;
        for (size_t wi = 0; wi < words; wi++) {
            if (c + 64 <= channels) {
                uint8x16_t bytes[4];
                for (int q = 0; q < 4; q++) {
                    const float *v = row + c + 16 * q;
                    const uint16x8_t h0 = vuzp1q_u16(vreinterpretq_u16_u32(vcgezq_f32(vld1q_f32(v))),
                                                     vreinterpretq_u16_u32(vcgezq_f32(vld1q_f32(v + 4))));
                    const uint16x8_t h1 = vuzp1q_u16(vreinterpretq_u16_u32(vcgezq_f32(vld1q_f32(v + 8))),
                                                     vreinterpretq_u16_u32(vcgezq_f32(vld1q_f32(v + 12))));
                    bytes[q] = vandq_u8(vuzp1q_u8(vreinterpretq_u8_u16(h0), vreinterpretq_u8_u16(h1)), weights);
                }
                // bytes[q] covers channels 16q..16q+15; pairwise sums keep them in order.
                uint8x16_t r = vpaddq_u8(vpaddq_u8(bytes[0], bytes[1]), vpaddq_u8(bytes[2], bytes[3]));
                r = vpaddq_u8(r, r);
                destination[wi] = vgetq_lane_u64(vreinterpretq_u64_u8(r), 0);
                c += 64;
            } else {
                uint64_t bits = 0;
                for (int j = 0; c < channels; c++, j++)
                    if (row[c] >= 0.0f) bits |= (uint64_t)1 << j;
                destination[wi] = bits;
            }
        }
    }
}

/// Max pooling, 16 channels at a time in registers across the window's taps; the same
/// rule as the portable kernel (a tap replaces the maximum when it is >= it, so a NaN
/// input is skipped and a NaN maximum stays), as compare + bit select.
void bk_max_pool_neon(const bk_pool_desc *d, const float *input, float *output, int32_t pixel_begin, int32_t pixel_end) {
    const size_t C = (size_t)d->channels;
    for (int32_t pixel = pixel_begin; pixel < pixel_end; pixel++) {
        const int32_t oy = pixel / d->out_w, ox = pixel % d->out_w;
        const int32_t y0 = oy * d->stride_h - d->pad_top, x0 = ox * d->stride_w - d->pad_left;
        const int32_t ky0 = y0 < 0 ? -y0 : 0, ky1 = BK_MIN(d->kernel_h, d->in_h - y0);
        const int32_t kx0 = x0 < 0 ? -x0 : 0, kx1 = BK_MIN(d->kernel_w, d->in_w - x0);
        float *out = output + (size_t)pixel * C;
        size_t c = 0;
        for (; c + 16 <= C; c += 16) {
            float32x4_t m0 = vdupq_n_f32(-__builtin_inff()), m1 = m0, m2 = m0, m3 = m0;
            for (int32_t ky = ky0; ky < ky1; ky++) {
                const float *row = input + ((size_t)(y0 + ky) * (size_t)d->in_w + (size_t)x0) * C + c;
                for (int32_t kx = kx0; kx < kx1; kx++) {
                    const float32x4x4_t v = vld1q_f32_x4(row + (size_t)kx * C);
                    m0 = vbslq_f32(vcgeq_f32(v.val[0], m0), v.val[0], m0);
                    m1 = vbslq_f32(vcgeq_f32(v.val[1], m1), v.val[1], m1);
                    m2 = vbslq_f32(vcgeq_f32(v.val[2], m2), v.val[2], m2);
                    m3 = vbslq_f32(vcgeq_f32(v.val[3], m3), v.val[3], m3);
                }
            }
            const float32x4x4_t result = {{m0, m1, m2, m3}};
            vst1q_f32_x4(out + c, result);
        }
        for (; c < C; c++) {
            float m = -__builtin_inff();
            for (int32_t ky = ky0; ky < ky1; ky++)
                for (int32_t kx = kx0; kx < kx1; kx++) {
                    const float v = input[((size_t)(y0 + ky) * (size_t)d->in_w + (size_t)(x0 + kx)) * C + c];
                    m = v >= m ? v : m;
                }
            out[c] = m;
        }
    }
}

/// 4x4 blocks through registers (TRN1/TRN2 on 32- then 64-bit lanes); three rows (the
/// planes of an RGB image) interleave with ST3; the edges element by element.
void bk_transpose_neon(const float *source, size_t rows, size_t columns, float *destination) {
    if (rows == 3) {
        size_t c = 0;
        for (; c + 4 <= columns; c += 4) {
            float32x4x3_t v = {{vld1q_f32(source + c), vld1q_f32(source + columns + c), vld1q_f32(source + 2 * columns + c)}};
            vst3q_f32(destination + c * 3, v);
        }
        for (; c < columns; c++)
            for (size_t r = 0; r < 3; r++) destination[c * 3 + r] = source[r * columns + c];
        return;
    }
    size_t r0 = 0;
    for (; r0 + 4 <= rows; r0 += 4) {
        size_t c0 = 0;
        for (; c0 + 4 <= columns; c0 += 4) {
            const float32x4_t a = vld1q_f32(source + r0 * columns + c0), b = vld1q_f32(source + (r0 + 1) * columns + c0);
            const float32x4_t c = vld1q_f32(source + (r0 + 2) * columns + c0), d = vld1q_f32(source + (r0 + 3) * columns + c0);
            const float32x4_t ab0 = vtrn1q_f32(a, b), ab1 = vtrn2q_f32(a, b);
            const float32x4_t cd0 = vtrn1q_f32(c, d), cd1 = vtrn2q_f32(c, d);
            float *o = destination + c0 * rows + r0;
            vst1q_f32(o, vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(ab0), vreinterpretq_f64_f32(cd0))));
            vst1q_f32(o + rows, vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(ab1), vreinterpretq_f64_f32(cd1))));
            vst1q_f32(o + 2 * rows, vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(ab0), vreinterpretq_f64_f32(cd0))));
            vst1q_f32(o + 3 * rows, vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(ab1), vreinterpretq_f64_f32(cd1))));
        }
        for (; c0 < columns; c0++)
            for (size_t r = r0; r < r0 + 4; r++) destination[c0 * rows + r] = source[r * columns + c0];
    }
    for (; r0 < rows; r0++)
        for (size_t c = 0; c < columns; c++) destination[c * rows + r0] = source[r0 * columns + c];
}
#endif
