/* Region markers for the insncount qemu plugin (tools/aarch64/insncount/insncount.c).
 *
 *   #include "regions.h"
 *   bk_region_begin();
 *   kernel(...);              // counted exactly, per call pair, in execution order
 *   bk_region_end();
 *
 * The plugin finds these two functions by symbol name, so they must stay real,
 * out-of-line, distinct functions in the executable:
 *   - noinline (and noipa/noclone on gcc) so every call stays a call;
 *   - used, so that a file that includes this header without calling them still compiles
 *     cleanly (and the symbol exists);
 *   - different bodies (one nop against two), so identical-code folding (gcc -fipa-icf,
 *     lld --icf) cannot merge begin and end into one symbol;
 *   - the asm has a memory clobber: loads and stores of the measured code cannot move across
 *     a marker. Arithmetic that touches no memory still can, as across any call, so measure
 *     code whose inputs and outputs are in memory (kernels are).
 * The marker instructions themselves are not counted. Single-threaded guests only.
 * Do not strip the binary; qemu needs `-d plugin` to load its symbols. */
#ifndef BITFLEET_INSNCOUNT_REGIONS_H
#define BITFLEET_INSNCOUNT_REGIONS_H

#if defined(__GNUC__) && !defined(__clang__)
#define BK_REGION_ATTRS __attribute__((noinline, noipa, noclone, used))
#else
#define BK_REGION_ATTRS __attribute__((noinline, used))
#endif

static BK_REGION_ATTRS void bk_region_begin(void) { __asm__ volatile("nop" ::: "memory"); }
static BK_REGION_ATTRS void bk_region_end(void) { __asm__ volatile("nop\n\tnop" ::: "memory"); }

#undef BK_REGION_ATTRS
#endif
