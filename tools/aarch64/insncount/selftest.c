/* Self-test guest for the insncount plugin: regions whose exact instruction counts are
 * known, run by tools/aarch64/test.sh, which compares the plugin's report with the numbers
 * in the comments below.
 *
 *   selftest           the regions of asm_regions(), then c_regions()
 *   selftest unbalanced  an end without a begin, and a begin that is never ended
 */
#include "regions.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* asm_regions: every instruction is written here, so the counts are fixed whatever the
 * compiler. The loop body is 5 instructions (add, eor, cnt, subs, b.ne).
 *   region 0: empty                          bl end                          = 1
 *   region 1: mov + 1000 x 5 + bl end        1 + 5000 + 1                    = 5002
 *   region 2: outer, contains region 3       bl begin + 52 + mov + 20 x 5 + bl end
 *                                            1 + 52 + 1 + 100 + 1            = 155
 *   region 3: inner, mov + 10 x 5 + bl end   1 + 50 + 1                      = 52
 * Region 1's histogram: add, eor, cnt, subs, b.ne 1000 each; mov 1; bl 1. */
void asm_regions(void);
__asm__(
    "    .text\n"
    "    .p2align 2\n"
    "    .type asm_regions, %function\n"
    "asm_regions:\n"
    "    stp x29, x30, [sp, #-16]!\n"
    "    mov x29, sp\n"
    "    bl bk_region_begin\n"
    "    bl bk_region_end\n"
    "    bl bk_region_begin\n"
    "    mov x9, #1000\n"
    "1:  add x10, x10, #1\n"
    "    eor v0.16b, v0.16b, v1.16b\n"
    "    cnt v0.16b, v0.16b\n"
    "    subs x9, x9, #1\n"
    "    b.ne 1b\n"
    "    bl bk_region_end\n"
    "    bl bk_region_begin\n"
    "    bl bk_region_begin\n"
    "    mov x9, #10\n"
    "2:  add x10, x10, #1\n"
    "    eor v0.16b, v0.16b, v1.16b\n"
    "    cnt v0.16b, v0.16b\n"
    "    subs x9, x9, #1\n"
    "    b.ne 2b\n"
    "    bl bk_region_end\n"
    "    mov x9, #20\n"
    "3:  add x10, x10, #1\n"
    "    eor v0.16b, v0.16b, v1.16b\n"
    "    cnt v0.16b, v0.16b\n"
    "    subs x9, x9, #1\n"
    "    b.ne 3b\n"
    "    bl bk_region_end\n"
    "    ldp x29, x30, [sp], #16\n"
    "    ret\n"
    "    .size asm_regions, .-asm_regions\n");

/* The same 5-instruction loop, n iterations, behind a C call. */
__attribute__((noinline)) static void asm_loop(uint64_t n) {
    __asm__ volatile(
        "1:  add x10, x10, #1\n"
        "    eor v0.16b, v0.16b, v1.16b\n"
        "    cnt v0.16b, v0.16b\n"
        "    subs %0, %0, #1\n"
        "    b.ne 1b\n"
        : "+r"(n) : : "x10", "v0", "cc", "memory");
}

/* c_regions: regions 4 and 5 call asm_loop(100) and asm_loop(1100) from C; the call
 * overhead depends on the compiler, the difference is exactly 1000 x 5 = 5000. */
static volatile uint64_t iterations[2] = {100, 1100};
static void c_regions(void) {
    for (int i = 0; i < 2; i++) {
        uint64_t n = iterations[i];
        bk_region_begin();
        asm_loop(n);
        bk_region_end();
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "unbalanced")) {
        bk_region_end();
        bk_region_begin();
        bk_region_begin();
        asm_loop(3);
        bk_region_end();
        puts("selftest: unbalanced done");
        return 0;
    }
    asm_regions();
    c_regions();
    puts("selftest: done");
    return 0;
}
