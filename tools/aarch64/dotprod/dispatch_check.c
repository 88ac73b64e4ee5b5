/* One binary with a plain NEON kernel and a UDOT kernel, chosen at run time from
 * getauxval(AT_HWCAP) & HWCAP_ASIMDDP. tools/aarch64/test.sh builds it with clang and with
 * gcc (global -mcpu=cortex-a72, so only the attributed function may use dotprod) and runs it
 * under qemu -cpu cortex-a72 (no dotprod) and -cpu cortex-a76 (dotprod).
 *
 *   dispatch_check          prints "hwcap=0x... asimddp=0|1 kernel=plain|udot popcount=N"
 *   dispatch_check udot     calls the UDOT kernel regardless (SIGILL without dotprod)
 *
 * The kernels: sum of popcount(a[i] ^ b[i]) over 4096 bytes. The plain one widens the
 * byte counts with uaddlp/uadalp; the UDOT one sums them with a dot product against ones,
 * the usual way dotprod replaces the widening chain in a popcount GEMM. */
#include <arm_neon.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <asm/hwcap.h>

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
/* Works with clang and gcc 12 alike; see scripts/aarch64-lib.sh for the variants that don't. */
#define BK_TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))

enum { BYTES = 4096 };

__attribute__((noinline)) static uint32_t popcount_xor_plain(const uint8_t *a, const uint8_t *b, size_t n) {
    uint32x4_t acc = vdupq_n_u32(0);
    for (size_t i = 0; i < n; i += 16) {
        uint8x16_t c = vcntq_u8(veorq_u8(vld1q_u8(a + i), vld1q_u8(b + i)));
        acc = vpadalq_u16(acc, vpaddlq_u8(c));
    }
    return vaddvq_u32(acc);
}

BK_TARGET_DOTPROD __attribute__((noinline)) static uint32_t popcount_xor_udot(const uint8_t *a, const uint8_t *b, size_t n) {
    uint32x4_t acc = vdupq_n_u32(0);
    const uint8x16_t ones = vdupq_n_u8(1);
    for (size_t i = 0; i < n; i += 16) {
        uint8x16_t c = vcntq_u8(veorq_u8(vld1q_u8(a + i), vld1q_u8(b + i)));
        acc = vdotq_u32(acc, c, ones);
    }
    return vaddvq_u32(acc);
}

int main(int argc, char **argv) {
    static uint8_t a[BYTES], b[BYTES];
    uint32_t expected = 0, state = 12345;
    for (int i = 0; i < BYTES; i++) {
        state = state * 1103515245u + 12345u; a[i] = (uint8_t)(state >> 16);
        state = state * 1103515245u + 12345u; b[i] = (uint8_t)(state >> 16);
        expected += (uint32_t)__builtin_popcount(a[i] ^ b[i]);
    }
    unsigned long hwcap = getauxval(AT_HWCAP);
    int dotprod = (hwcap & HWCAP_ASIMDDP) != 0;
    int force_udot = argc > 1 && !strcmp(argv[1], "udot");
    int use_udot = dotprod || force_udot;
    uint32_t got = use_udot ? popcount_xor_udot(a, b, BYTES) : popcount_xor_plain(a, b, BYTES);
    uint32_t plain = popcount_xor_plain(a, b, BYTES);
    printf("hwcap=%#lx asimddp=%d kernel=%s popcount=%u\n", hwcap, dotprod, use_udot ? "udot" : "plain", got);
    if (got != expected || plain != expected) {
        printf("MISMATCH: expected %u, plain %u, chosen %u\n", expected, plain, got);
        return 1;
    }
    return 0;
}
