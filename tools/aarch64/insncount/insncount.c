/* insncount: exact dynamic guest instruction counts under qemu-aarch64 (QEMU 7.2 TCG plugin
 * API, version 1): for the whole program, per mnemonic, and per REGION that the guest marks
 * by calling bk_region_begin() and bk_region_end() (tools/aarch64/insncount/regions.h).
 *
 * Started from the project's shared tools/aarch64/insncount.c (whole-program total and
 * per-mnemonic histogram, sym= and top=); regions, per-region histograms, out= and the
 * per-instruction counting are added here.
 *
 * Build and run (scripts/aarch64-lib.sh's require_aarch64_tools builds it into .build-aarch64):
 *   cc -O2 -shared -fPIC -fvisibility=hidden -o libinsncount.so insncount.c
 *   qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu cortex-a72 \
 *       -plugin ./libinsncount.so,top=10,hist=on -d plugin ./prog
 * `-d plugin` is required: without it qemu neither prints the plugin's output nor loads
 * the guest's symbols, and then no marker (and no sym=) can be found.
 *
 * Arguments (comma-separated after the plugin path):
 *   top=N        print the N most frequent mnemonics of each histogram (default 25, 0: none)
 *   sym=NAME     restrict the whole-program histogram to instructions of function NAME
 *   hist=on|off  also print a per-mnemonic histogram for every region (default off)
 *   begin=NAME   region begin marker symbol (default bk_region_begin)
 *   end=NAME     region end marker symbol (default bk_region_end)
 *   out=FILE     write the report to FILE instead of qemu's log (stderr)
 *   profile=on   with sym=: also print every instruction of that function with its address
 *                and execution count, in address order (where a function's instructions go)
 *
 * Report lines:
 *   insncount: total=T counted=C marker_insns=M            T = C + M
 *   insncount: sym NAME=S                                   with sym=
 *     MNEMONIC COUNT                                        top mnemonics (sym or all)
 *   insncount: region index=I depth=D insns=N              one line per region, in the
 *     MNEMONIC COUNT                                        order the regions began
 *   insncount: regions=R open=O unmatched_end=U
 *
 * What a region counts, exactly: every guest instruction executed after the call to
 * bk_region_begin returns, up to and including the instruction that calls bk_region_end
 * (a `bl`, so `bk_region_begin(); bk_region_end();` counts 1). Instructions inside the
 * marker functions are never counted (anywhere); a nested region's marker calls count in
 * its enclosing region, its body too. Regions nest; an end closes the latest open begin.
 * Each instruction is counted by its own inline counter before it executes, so a count
 * read at a marker is exact; the counts are instructions, not cycles.
 *
 * A marker call is recognised by its instructions' symbol, whatever the marker's body
 * looks like: consecutive marker instructions with no counted instruction between them
 * belong to one call (two calls are always separated by at least the calling `bl`).
 *
 * Limits: counts are exact for a single-threaded guest; with several guest threads the
 * counters are shared and not atomic (the report then warns). Symbols come from the main
 * executable (not shared libraries), which must not be stripped.
 */
#include "qemu-plugin-min.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 1;

enum { MARKER_NONE = 0, MARKER_BEGIN = 1, MARKER_END = 2 };

/* One translated (non-marker) instruction: its own execution counter. Records live in
 * fixed chunks so that the counter addresses handed to TCG never move. */
typedef struct { uint64_t count; uint64_t vaddr; char *disas; uint32_t mnemonic; uint8_t in_sym; } InsnRec;
#define REC_CHUNK 4096
static InsnRec **rec_chunks;
static size_t nrecs, rec_chunk_cap;

static InsnRec *rec_at(size_t i) { return &rec_chunks[i / REC_CHUNK][i % REC_CHUNK]; }

static InsnRec *new_rec(void) {
    if (nrecs % REC_CHUNK == 0) {
        size_t chunk = nrecs / REC_CHUNK;
        if (chunk == rec_chunk_cap) {
            rec_chunk_cap = rec_chunk_cap ? 2 * rec_chunk_cap : 64;
            rec_chunks = realloc(rec_chunks, rec_chunk_cap * sizeof *rec_chunks);
        }
        rec_chunks[chunk] = calloc(REC_CHUNK, sizeof(InsnRec));
        if (!rec_chunks || !rec_chunks[chunk]) { fprintf(stderr, "insncount: out of memory\n"); exit(1); }
    }
    return rec_at(nrecs++);
}

/* Interned mnemonics. */
static char **mnemonics; static size_t nmnemonics, mnemonic_cap;
#define MN_HASH 4096
static int32_t mn_hash[MN_HASH];  /* index + 1, 0 = empty; linear probing */

static uint32_t intern_mnemonic(const char *disas) {
    char mn[32] = {0};
    if (!disas || sscanf(disas, "%31s", mn) != 1) strcpy(mn, "?");
    uint32_t h = 2166136261u;
    for (const char *p = mn; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    for (uint32_t slot = h % MN_HASH;; slot = (slot + 1) % MN_HASH) {
        if (mn_hash[slot] == 0) {
            if (nmnemonics == mnemonic_cap) {
                mnemonic_cap = mnemonic_cap ? 2 * mnemonic_cap : 256;
                mnemonics = realloc(mnemonics, mnemonic_cap * sizeof *mnemonics);
            }
            if (nmnemonics >= MN_HASH - 1) { fprintf(stderr, "insncount: too many mnemonics\n"); exit(1); }
            mnemonics[nmnemonics] = strdup(mn);
            mn_hash[slot] = (int32_t)++nmnemonics;
            return (uint32_t)(nmnemonics - 1);
        }
        if (!strcmp(mnemonics[mn_hash[slot] - 1], mn)) return (uint32_t)(mn_hash[slot] - 1);
    }
}

/* A region's result: its histogram is kept as (mnemonic, count) pairs, largest first. */
typedef struct { uint32_t mnemonic; uint64_t count; } MnCount;
typedef struct {
    uint32_t depth; int closed;
    uint64_t begin_total, insns;
    uint64_t *snapshot; size_t snapshot_n;   /* per-record counts at begin (hist=on) */
    MnCount *hist; size_t nhist;
} Region;
static Region *regions; static size_t nregions, region_cap;
static size_t *open_stack; static size_t nopen, open_cap;
static uint64_t unmatched_end;

static uint64_t counted;        /* non-marker instructions executed */
static uint64_t marker_insns;   /* instructions executed inside the markers */
static uint64_t last_marker_counted = UINT64_MAX;
static int last_marker_kind = MARKER_NONE;
static uint64_t symbols_seen;
static unsigned vcpus;

static const char *want_sym, *begin_sym = "bk_region_begin", *end_sym = "bk_region_end", *out_path;
static int top = 25, per_region_hist, profile;
static int need_recs;

static int cmp_mncount(const void *a, const void *b) {
    uint64_t x = ((const MnCount *)a)->count, y = ((const MnCount *)b)->count;
    if (x != y) return x < y ? 1 : -1;
    uint32_t p = ((const MnCount *)a)->mnemonic, q = ((const MnCount *)b)->mnemonic;
    return strcmp(mnemonics[p], mnemonics[q]);
}

/* `name` or a compiler clone of it (`name.constprop.0`). */
static int symbol_is(const char *sym, const char *name) {
    size_t n = strlen(name);
    return sym && !strncmp(sym, name, n) && (sym[n] == 0 || sym[n] == '.');
}

static void region_begin(void) {
    if (nregions == region_cap) {
        region_cap = region_cap ? 2 * region_cap : 64;
        regions = realloc(regions, region_cap * sizeof *regions);
    }
    if (nopen == open_cap) {
        open_cap = open_cap ? 2 * open_cap : 16;
        open_stack = realloc(open_stack, open_cap * sizeof *open_stack);
    }
    if (!regions || !open_stack) { fprintf(stderr, "insncount: out of memory\n"); exit(1); }
    Region *r = &regions[nregions];
    memset(r, 0, sizeof *r);
    r->depth = (uint32_t)nopen;
    r->begin_total = counted;
    if (per_region_hist) {
        r->snapshot_n = nrecs;
        r->snapshot = malloc((nrecs ? nrecs : 1) * sizeof(uint64_t));
        if (!r->snapshot) { fprintf(stderr, "insncount: out of memory\n"); exit(1); }
        for (size_t i = 0; i < nrecs; i++) r->snapshot[i] = rec_at(i)->count;
    }
    open_stack[nopen++] = nregions++;
}

static void region_end(void) {
    if (nopen == 0) { unmatched_end++; return; }
    Region *r = &regions[open_stack[--nopen]];
    r->insns = counted - r->begin_total;
    r->closed = 1;
    if (per_region_hist) {
        /* Records translated after the begin started from 0 then. */
        uint64_t *by_mn = calloc(nmnemonics + 1, sizeof *by_mn);
        if (!by_mn) { fprintf(stderr, "insncount: out of memory\n"); exit(1); }
        for (size_t i = 0; i < nrecs; i++) {
            uint64_t before = i < r->snapshot_n ? r->snapshot[i] : 0;
            by_mn[rec_at(i)->mnemonic] += rec_at(i)->count - before;
        }
        free(r->snapshot); r->snapshot = NULL;
        r->hist = malloc((nmnemonics + 1) * sizeof *r->hist);
        for (size_t m = 0; m < nmnemonics; m++)
            if (by_mn[m]) r->hist[r->nhist++] = (MnCount){(uint32_t)m, by_mn[m]};
        free(by_mn);
        qsort(r->hist, r->nhist, sizeof *r->hist, cmp_mncount);
        if (top >= 0 && r->nhist > (size_t)top) r->nhist = (size_t)top;
    }
}

/* Runs before each instruction of a marker function. */
static void marker_exec(unsigned int vcpu_index, void *udata) {
    (void)vcpu_index;
    int kind = (int)(uintptr_t)udata;
    if (counted == last_marker_counted && kind == last_marker_kind) return;  /* same call */
    last_marker_counted = counted;
    last_marker_kind = kind;
    if (kind == MARKER_BEGIN) region_begin(); else region_end();
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        const char *sym = qemu_plugin_insn_symbol(insn);
        if (sym) symbols_seen++;
        int kind = symbol_is(sym, begin_sym) ? MARKER_BEGIN : symbol_is(sym, end_sym) ? MARKER_END : MARKER_NONE;
        if (kind != MARKER_NONE) {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &marker_insns, 1);
            qemu_plugin_register_vcpu_insn_exec_cb(insn, marker_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)kind);
            continue;
        }
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &counted, 1);
        if (!need_recs) continue;
        InsnRec *r = new_rec();
        char *disas = qemu_plugin_insn_disas(insn);
        r->mnemonic = intern_mnemonic(disas);
        r->in_sym = !want_sym || (sym && !strcmp(sym, want_sym));
        if (profile && want_sym && r->in_sym) {
            r->vaddr = qemu_plugin_insn_vaddr(insn);
            r->disas = disas;
        } else {
            free(disas);
        }
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &r->count, 1);
    }
}

static int cmp_vaddr(const void *a, const void *b) {
    uint64_t x = (*(InsnRec *const *)a)->vaddr, y = (*(InsnRec *const *)b)->vaddr;
    return x < y ? -1 : x > y;
}

static void vcpu_init(qemu_plugin_id_t id, unsigned int vcpu_index) {
    (void)id; (void)vcpu_index;
    vcpus++;
}

static FILE *out_file;
static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (out_file) fputs(buf, out_file); else qemu_plugin_outs(buf);
}

static void at_exit(qemu_plugin_id_t id, void *p) {
    (void)id; (void)p;
    if (out_path && !(out_file = fopen(out_path, "w")))
        fprintf(stderr, "insncount: cannot write %s; reporting to the qemu log\n", out_path);
    emit("insncount: total=%llu counted=%llu marker_insns=%llu\n",
         (unsigned long long)(counted + marker_insns), (unsigned long long)counted,
         (unsigned long long)marker_insns);
    if (symbols_seen == 0)
        emit("insncount: warning: no guest symbols were found; run qemu with -d plugin and do not strip the binary\n");
    if (vcpus > 1)
        emit("insncount: warning: the guest ran %u threads; counters are shared and not exact\n", vcpus);
    if (need_recs && top > 0) {
        uint64_t *by_mn = calloc(nmnemonics + 1, sizeof *by_mn);
        MnCount *m = malloc((nmnemonics + 1) * sizeof *m);
        uint64_t in_sym = 0; size_t nm = 0;
        for (size_t i = 0; i < nrecs; i++)
            if (rec_at(i)->in_sym) { by_mn[rec_at(i)->mnemonic] += rec_at(i)->count; in_sym += rec_at(i)->count; }
        for (size_t j = 0; j < nmnemonics; j++) if (by_mn[j]) m[nm++] = (MnCount){(uint32_t)j, by_mn[j]};
        qsort(m, nm, sizeof *m, cmp_mncount);
        if (want_sym) emit("insncount: sym %s=%llu\n", want_sym, (unsigned long long)in_sym);
        for (size_t j = 0; j < nm && (int)j < top; j++)
            emit("  %-10s %llu\n", mnemonics[m[j].mnemonic], (unsigned long long)m[j].count);
        free(by_mn); free(m);
    }
    if (profile && want_sym) {
        // One line per address (an instruction translated more than once is summed).
        InsnRec **list = malloc((nrecs + 1) * sizeof *list);
        size_t n = 0;
        for (size_t i = 0; i < nrecs; i++) if (rec_at(i)->disas) list[n++] = rec_at(i);
        qsort(list, n, sizeof *list, cmp_vaddr);
        for (size_t i = 0; i < n;) {
            uint64_t count = 0;
            size_t j = i;
            for (; j < n && list[j]->vaddr == list[i]->vaddr; j++) count += list[j]->count;
            emit("  %012llx %12llu  %s\n", (unsigned long long)list[i]->vaddr, (unsigned long long)count, list[i]->disas);
            i = j;
        }
        free(list);
    }
    for (size_t i = 0; i < nregions; i++) {
        Region *r = &regions[i];
        if (!r->closed) continue;
        emit("insncount: region index=%zu depth=%u insns=%llu\n", i, r->depth, (unsigned long long)r->insns);
        for (size_t j = 0; j < r->nhist; j++)
            emit("    %-10s %llu\n", mnemonics[r->hist[j].mnemonic], (unsigned long long)r->hist[j].count);
    }
    emit("insncount: regions=%zu open=%zu unmatched_end=%llu\n", nregions - nopen, nopen,
         (unsigned long long)unmatched_end);
    if (out_file) fclose(out_file);
}

static int parse_on_off(const char *value, const char *arg) {
    if (!strcmp(value, "on") || !strcmp(value, "true") || !strcmp(value, "1")) return 1;
    if (!strcmp(value, "off") || !strcmp(value, "false") || !strcmp(value, "0")) return 0;
    fprintf(stderr, "insncount: %s: expected on or off\n", arg);
    return -1;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const struct qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "sym=", 4)) want_sym = strdup(a + 4);
        else if (!strncmp(a, "top=", 4)) {
            char *end; long v = strtol(a + 4, &end, 10);
            if (*end || v < 0) { fprintf(stderr, "insncount: %s: expected a count\n", a); return -1; }
            top = (int)v;
        }
        else if (!strncmp(a, "hist=", 5)) { if ((per_region_hist = parse_on_off(a + 5, a)) < 0) return -1; }
        else if (!strncmp(a, "begin=", 6)) begin_sym = strdup(a + 6);
        else if (!strncmp(a, "end=", 4)) end_sym = strdup(a + 4);
        else if (!strncmp(a, "out=", 4)) out_path = strdup(a + 4);
        else if (!strncmp(a, "profile=", 8)) { if ((profile = parse_on_off(a + 8, a)) < 0) return -1; }
        else { fprintf(stderr, "insncount: unknown argument %s (see the header of insncount.c)\n", a); return -1; }
    }
    need_recs = top > 0 || per_region_hist || profile;
    qemu_plugin_register_vcpu_init_cb(id, vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
