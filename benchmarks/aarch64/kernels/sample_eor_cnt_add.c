/* SAMPLE kernel, not one of BitFleet's: it exists to show the llvm-mca pipeline of
 * benchmarks/aarch64/run.sh working end to end on a C file with markers.
 *
 * A 4-channel x 2-pixel tile of a binary GEMM: each K step XORs two 128-bit pixel words
 * with four 128-bit weight words (8 eor), counts bits per byte (8 cnt) and accumulates
 * bytes (8 add .16b), so one iteration is 4 x 2 x 128 = 1024 binary MACs. Byte counters
 * hold at most 8 per step, so they are widened to 16 bits every 31 steps (outside the
 * measured loop).
 *
 * sample_tile_4x2_udot is the same tile for cores with dotprod (Cortex-A76, Pi 5): UDOT
 * against a vector of ones sums each 4 byte counts into 32-bit lanes, so the counters never
 * need widening. It carries the dotprod target attribute, so the file still compiles for
 * cortex-a72 (see scripts/aarch64-lib.sh); llvm-mca's cortex-a72 model rejects UDOT, so
 * kernels.list measures it on neoverse-n1 only.
 *
 * The LLVM-MCA markers sit outside the loop, before and after it; mca.py takes the
 * innermost loop between them (so the markers do not change the loop's code). */
#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>

void sample_tile_4x2(const uint8_t *a0, const uint8_t *a1, const uint8_t *w, size_t ksteps, uint16_t *out) {
    uint16x8_t wide[8];
    for (int i = 0; i < 8; i++) wide[i] = vdupq_n_u16(0);
    while (ksteps > 0) {
        size_t block = ksteps < 31 ? ksteps : 31;
        uint8x16_t acc[8];
        for (int i = 0; i < 8; i++) acc[i] = vdupq_n_u8(0);
        __asm__ volatile("// LLVM-MCA-BEGIN sample_tile_4x2");
        for (size_t k = 0; k < block; k++) {
            uint8x16_t p0 = vld1q_u8(a0), p1 = vld1q_u8(a1);
            uint8x16_t w0 = vld1q_u8(w), w1 = vld1q_u8(w + 16), w2 = vld1q_u8(w + 32), w3 = vld1q_u8(w + 48);
            acc[0] = vaddq_u8(acc[0], vcntq_u8(veorq_u8(p0, w0)));
            acc[1] = vaddq_u8(acc[1], vcntq_u8(veorq_u8(p0, w1)));
            acc[2] = vaddq_u8(acc[2], vcntq_u8(veorq_u8(p0, w2)));
            acc[3] = vaddq_u8(acc[3], vcntq_u8(veorq_u8(p0, w3)));
            acc[4] = vaddq_u8(acc[4], vcntq_u8(veorq_u8(p1, w0)));
            acc[5] = vaddq_u8(acc[5], vcntq_u8(veorq_u8(p1, w1)));
            acc[6] = vaddq_u8(acc[6], vcntq_u8(veorq_u8(p1, w2)));
            acc[7] = vaddq_u8(acc[7], vcntq_u8(veorq_u8(p1, w3)));
            a0 += 16; a1 += 16; w += 64;
        }
        __asm__ volatile("// LLVM-MCA-END sample_tile_4x2");
        for (int i = 0; i < 8; i++) wide[i] = vpadalq_u8(wide[i], acc[i]);
        ksteps -= block;
    }
    for (int i = 0; i < 8; i++) out[i] = vaddvq_u16(wide[i]);
}

__attribute__((target("arch=armv8.2-a+dotprod")))
void sample_tile_4x2_udot(const uint8_t *a0, const uint8_t *a1, const uint8_t *w, size_t ksteps, uint32_t *out) {
    const uint8x16_t ones = vdupq_n_u8(1);
    uint32x4_t acc[8];
    for (int i = 0; i < 8; i++) acc[i] = vdupq_n_u32(0);
    __asm__ volatile("// LLVM-MCA-BEGIN sample_tile_4x2_udot");
    for (size_t k = 0; k < ksteps; k++) {
        uint8x16_t p0 = vld1q_u8(a0), p1 = vld1q_u8(a1);
        uint8x16_t w0 = vld1q_u8(w), w1 = vld1q_u8(w + 16), w2 = vld1q_u8(w + 32), w3 = vld1q_u8(w + 48);
        acc[0] = vdotq_u32(acc[0], vcntq_u8(veorq_u8(p0, w0)), ones);
        acc[1] = vdotq_u32(acc[1], vcntq_u8(veorq_u8(p0, w1)), ones);
        acc[2] = vdotq_u32(acc[2], vcntq_u8(veorq_u8(p0, w2)), ones);
        acc[3] = vdotq_u32(acc[3], vcntq_u8(veorq_u8(p0, w3)), ones);
        acc[4] = vdotq_u32(acc[4], vcntq_u8(veorq_u8(p1, w0)), ones);
        acc[5] = vdotq_u32(acc[5], vcntq_u8(veorq_u8(p1, w1)), ones);
        acc[6] = vdotq_u32(acc[6], vcntq_u8(veorq_u8(p1, w2)), ones);
        acc[7] = vdotq_u32(acc[7], vcntq_u8(veorq_u8(p1, w3)), ones);
        a0 += 16; a1 += 16; w += 64;
    }
    __asm__ volatile("// LLVM-MCA-END sample_tile_4x2_udot");
    for (int i = 0; i < 8; i++) out[i] = vaddvq_u32(acc[i]);
}
