#ifndef BK_LAYOUT_GROUP_H
#define BK_LAYOUT_GROUP_H

// Weight layout "channel groups": output channels in groups of G, and within a group the
// K words (or floats) of the G channels interleaved, so one vector load at depth k yields
// word k of G consecutive channels:
//
//     packed[(o / G) * K * G + k * G + o % G] = weights[o][k]
//
// Channels past out_c (up to a multiple of G) are zero. The binary micro-kernels of every
// architecture read this layout with G = 8 (one 512-bit vector, two 256-bit vectors or
// four 128-bit NEON registers per depth step); the float GEMMs use their own G.

#include <stddef.h>
#include <stdint.h>

static inline size_t bk_group_index(size_t o, size_t k, size_t depth, size_t group) {
    return (o / group) * depth * group + k * group + o % group;
}

#endif
