// Replays a kernel trace (fleetctl model trace; format in Sources/BitEngine/KernelTrace.swift)
// with this machine's kernels: rebuilds every recorded kernel from its descriptor and
// parameters, runs it on the recorded input, and compares with the recorded output: packed
// bits must be identical, floats within --tolerance of the layer's largest magnitude.
// Under qemu-aarch64 this checks the NEON kernels against the x86-64 engine layer by layer,
// so a kernel bug on ARM cannot hide behind "x86 passes".
//
// Each layer runs once over its whole output inside a counting region (bk_region_begin/end,
// tools/aarch64/insncount), then, with --tasks, once more task by task as the recorded
// thread split cuts it, one region per task (for the multi-core estimate). Stdout has one
// line per record naming its regions, for benchmarks/aarch64/estimate.py.
//
//   replay TRACE [--isa NAME] [--tasks] [--tolerance X]

#include "bitkernels.h"
#include "../../tools/aarch64/insncount/regions.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint32_t element;  // 1 u64, 2 f32, 3 i32
    uint64_t count;
    void *data;
} array_t;

typedef struct {
    uint32_t kind;
    char label[256];
    uint32_t fields;
    int32_t descriptor[32];
    uint32_t arrays;
    array_t array[16];
    uint32_t tasks;
    int32_t (*task)[4];
} record_t;

static const uint8_t *cursor, *end_of_file;
static int truncated;

static int take(void *out, size_t bytes) {
    if ((size_t)(end_of_file - cursor) < bytes) { truncated = 1; return -1; }
    memcpy(out, cursor, bytes);
    cursor += bytes;
    return 0;
}
static uint32_t take32(void) { uint32_t v = 0; take(&v, 4); return v; }
static uint64_t take64(void) { uint64_t v = 0; take(&v, 8); return v; }

static int read_record(record_t *r) {
    memset(r, 0, sizeof *r);
    r->kind = take32();
    uint32_t length = take32();
    if (length >= sizeof r->label) return -1;
    if (take(r->label, length)) return -1;
    r->fields = take32();
    if (r->fields > 32) return -1;
    for (uint32_t i = 0; i < r->fields; i++) r->descriptor[i] = (int32_t)take32();
    r->arrays = take32();
    if (r->arrays > 16) return -1;
    for (uint32_t i = 0; i < r->arrays; i++) {
        array_t *a = &r->array[i];
        a->element = take32();
        a->count = take64();
        const size_t size = a->element == 1 ? 8 : 4;
        if (a->element < 1 || a->element > 3 || a->count > (uint64_t)(end_of_file - cursor) / size) return -1;
        a->data = a->count ? (void *)cursor : NULL;  // aligned enough: the loader copies the file to an aligned buffer
        cursor += a->count * size;
    }
    r->tasks = take32();
    if (r->tasks > (uint64_t)(end_of_file - cursor) / 16) return -1;
    r->task = (int32_t(*)[4])cursor;
    cursor += (size_t)r->tasks * 16;
    return truncated ? -1 : 0;
}

static int region_count;
static int begin_region(void) { bk_region_begin(); return region_count++; }

typedef struct {
    int ok;
    double worst;
    char detail[200];
} verdict_t;

static verdict_t compare(const array_t *expected, const void *actual) {
    verdict_t v = {1, 0, ""};
    if (expected->element == 1) {
        const uint64_t *e = expected->data, *a = actual;
        for (uint64_t i = 0; i < expected->count; i++)
            if (e[i] != a[i]) {
                v.ok = 0;
                snprintf(v.detail, sizeof v.detail, "word %llu: %016llx, expected %016llx", (unsigned long long)i,
                         (unsigned long long)a[i], (unsigned long long)e[i]);
                return v;
            }
        return v;
    }
    const float *e = expected->data, *a = actual;
    double scale = 1e-30;
    for (uint64_t i = 0; i < expected->count; i++) scale = fmax(scale, fabs(e[i]));
    for (uint64_t i = 0; i < expected->count; i++) {
        const double error = fabs((double)a[i] - e[i]) / scale;
        if (!(error <= v.worst)) v.worst = isnan(error) ? INFINITY : error;
    }
    return v;
}

/// Runs one record; returns 0 when it reproduced the recorded output.
static int replay(const record_t *r, bk_isa isa, int tasks, double tolerance, int index) {
    const array_t *expected = NULL;
    void *output = NULL, *scratch = NULL;
    long long macs = 0;
    int full_region = -1, first_task_region = -1, status = -1;
    char error[256] = "";
    const int32_t *d = r->descriptor;
    void *kernel = NULL;
    size_t output_bytes = 0;
    const char *kernel_name = "-";

    switch (r->kind) {
    case 1: {  // binary conv
        if (r->fields != 15 || r->arrays != 8) goto malformed;
        const bk_bconv_desc desc = {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14]};
        const bk_bconv_params params = {r->array[0].data, r->array[1].data, r->array[2].data, r->array[3].data, r->array[4].data};
        bk_bconv *k = NULL;
        if (bk_bconv_create(&desc, &params, isa, &k, error, sizeof error)) break;
        kernel = k;
        bk_kernel_info info;
        bk_bconv_info(k, &info);
        kernel_name = info.kernel_name;
        expected = &r->array[7];
        output_bytes = expected->count * (expected->element == 1 ? 8 : 4);
        if (posix_memalign(&scratch, 64, info.scratch_bytes + 64) || posix_memalign(&output, 64, output_bytes + 64)) break;
        macs = (long long)desc.out_h * desc.out_w * desc.out_c * desc.kernel_h * desc.kernel_w * desc.in_c;
        const uint64_t *input = r->array[5].data;
        const float *residual = r->array[6].count ? r->array[6].data : NULL;
        full_region = begin_region();
        bk_bconv_run(k, input, residual, output, 0, desc.out_h * desc.out_w, 0, desc.out_c, scratch);
        bk_region_end();
        if (tasks)
            for (uint32_t t = 0; t < r->tasks; t++) {
                const int region = begin_region();
                if (t == 0) first_task_region = region;
                bk_bconv_run(k, input, residual, output, r->task[t][0], r->task[t][1], r->task[t][2], r->task[t][3], scratch);
                bk_region_end();
            }
        status = 0;
        break;
    }
    case 2: {  // float conv
        if (r->fields != 12 || r->arrays != 4) goto malformed;
        const bk_fconv_desc desc = {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11]};
        bk_fconv *k = NULL;
        if (bk_fconv_create(&desc, r->array[0].data, r->array[1].data, isa, &k, error, sizeof error)) break;
        kernel = k;
        bk_kernel_info info;
        bk_fconv_info(k, &info);
        kernel_name = info.kernel_name;
        expected = &r->array[3];
        output_bytes = expected->count * 4;
        if (posix_memalign(&scratch, 64, info.scratch_bytes + 64) || posix_memalign(&output, 64, output_bytes + 64)) break;
        macs = -(long long)desc.out_h * desc.out_w * desc.out_c * desc.kernel_h * desc.kernel_w * desc.in_c;  // float MACs
        full_region = begin_region();
        bk_fconv_run(k, r->array[2].data, output, 0, desc.out_h * desc.out_w, 0, desc.out_c, scratch);
        bk_region_end();
        if (tasks)
            for (uint32_t t = 0; t < r->tasks; t++) {
                const int region = begin_region();
                if (t == 0) first_task_region = region;
                bk_fconv_run(k, r->array[2].data, output, r->task[t][0], r->task[t][1], r->task[t][2], r->task[t][3], scratch);
                bk_region_end();
            }
        status = 0;
        break;
    }
    case 3:    // binarize
    case 6: {  // global average pool
        if (r->fields != 2 || r->arrays != 2) goto malformed;
        expected = &r->array[1];
        output_bytes = expected->count * (expected->element == 1 ? 8 : 4);
        if (posix_memalign(&output, 64, output_bytes + 64)) break;
        const size_t pixels = (size_t)d[0], channels = (size_t)d[1];
        const float *input = r->array[0].data;
        kernel_name = r->kind == 3 ? "binarize" : "global-average-pool";
        full_region = begin_region();
        if (r->kind == 3) bk_binarize(isa, input, pixels, channels, output);
        else bk_global_average_pool(isa, input, pixels, channels, output, 0, channels);
        bk_region_end();
        if (tasks)
            for (uint32_t t = 0; t < r->tasks; t++) {
                const int region = begin_region();
                if (t == 0) first_task_region = region;
                const int32_t *task = r->task[t];
                if (r->kind == 3)
                    bk_binarize(isa, input + (size_t)task[0] * channels, (size_t)(task[1] - task[0]), channels,
                                (uint64_t *)output + (size_t)task[0] * ((channels + 63) / 64));
                else bk_global_average_pool(isa, input, pixels, channels, output, (size_t)task[2], (size_t)task[3]);
                bk_region_end();
            }
        status = 0;
        break;
    }
    case 4:
    case 5: {  // max / average pool
        if (r->fields != 12 || r->arrays != 2) goto malformed;
        const bk_pool_desc desc = {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11]};
        expected = &r->array[1];
        output_bytes = expected->count * 4;
        if (posix_memalign(&output, 64, output_bytes + 64)) break;
        kernel_name = r->kind == 4 ? "max-pool" : "average-pool";
        full_region = begin_region();
        if (r->kind == 4) bk_max_pool(isa, &desc, r->array[0].data, output, 0, desc.out_h * desc.out_w);
        else bk_average_pool(isa, &desc, r->array[0].data, output, 0, desc.out_h * desc.out_w);
        bk_region_end();
        if (tasks)
            for (uint32_t t = 0; t < r->tasks; t++) {
                const int region = begin_region();
                if (t == 0) first_task_region = region;
                if (r->kind == 4) bk_max_pool(isa, &desc, r->array[0].data, output, r->task[t][0], r->task[t][1]);
                else bk_average_pool(isa, &desc, r->array[0].data, output, r->task[t][0], r->task[t][1]);
                bk_region_end();
            }
        status = 0;
        break;
    }
    default:
    malformed:
        snprintf(error, sizeof error, "malformed record (kind %u, %u fields, %u arrays)", r->kind, r->fields, r->arrays);
        break;
    }

    int ok = 0;
    verdict_t v = {0, 0, ""};
    if (status == 0) {
        v = compare(expected, output);
        ok = v.ok && v.worst <= tolerance;
        if (v.ok && !ok) snprintf(v.detail, sizeof v.detail, "relative error %.3g above %.3g", v.worst, tolerance);
    }
    printf("record %d kind=%u label=%s kernel=%s macs=%lld full_region=%d tasks=%u first_task_region=%d result=%s",
           index, r->kind, r->label, kernel_name, macs, full_region, tasks ? r->tasks : 0, first_task_region,
           status ? "ERROR" : ok ? "ok" : "FAIL");
    if (status) printf(" error=\"%s\"", error);
    else if (!ok) printf(" detail=\"%s\"", v.detail);
    else if (expected->element == 2) printf(" worst=%.3g", v.worst);
    printf("\n");
    if (r->kind == 1) bk_bconv_destroy(kernel);
    if (r->kind == 2) bk_fconv_destroy(kernel);
    free(output);
    free(scratch);
    return status == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int tasks = 0;
    double tolerance = 1e-5;
    int isa = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tasks")) tasks = 1;
        else if (!strcmp(argv[i], "--tolerance") && i + 1 < argc) tolerance = atof(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            const char *name = argv[++i];
            for (int k = 0; k < BK_ISA_COUNT; k++)
                if (!strcmp(bk_isa_name((bk_isa)k), name)) isa = k;
            if (isa < 0) { fprintf(stderr, "replay: unknown instruction set %s\n", name); return 2; }
        } else if (!path && argv[i][0] != '-') path = argv[i];
        else { fprintf(stderr, "usage: replay TRACE [--isa NAME] [--tasks] [--tolerance X]\n"); return 2; }
    }
    if (!path) { fprintf(stderr, "usage: replay TRACE [--isa NAME] [--tasks] [--tolerance X]\n"); return 2; }
    if (isa < 0)
        for (int k = 0; k < BK_ISA_COUNT; k++)
            if (bk_isa_supported((bk_isa)k)) isa = k;  // the last supported: the fastest
    if (!bk_isa_supported((bk_isa)isa)) { fprintf(stderr, "replay: %s is not available on this CPU\n", bk_isa_name((bk_isa)isa)); return 2; }

    FILE *file = fopen(path, "rb");
    if (!file) { fprintf(stderr, "replay: cannot open %s\n", path); return 2; }
    fseek(file, 0, SEEK_END);
    const long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    uint8_t *bytes = NULL;
    if (size < 20 || posix_memalign((void **)&bytes, 64, (size_t)size) || fread(bytes, 1, (size_t)size, file) != (size_t)size) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        return 2;
    }
    fclose(file);
    cursor = bytes;
    end_of_file = bytes + size;
    char magic[8];
    take(magic, 8);
    const uint32_t version = take32(), threads = take32(), records = take32();
    if (memcmp(magic, "BKTRACE1", 8) || version != 1) { fprintf(stderr, "replay: %s is not a version 1 kernel trace\n", path); return 2; }
    printf("trace %s: %u records, split for %u threads, replayed with %s kernels\n", path, records, threads, bk_isa_name((bk_isa)isa));
    int failed = 0;
    for (uint32_t i = 0; i < records; i++) {
        // Arrays point into the file buffer; payloads are 4- or 8-byte aligned there only by
        // luck, so copy each record's arrays to aligned memory first.
        record_t r;
        if (read_record(&r)) { fprintf(stderr, "replay: record %u is truncated or malformed\n", i); return 2; }
        for (uint32_t a = 0; a < r.arrays; a++) {
            if (!r.array[a].count) continue;
            const size_t bytes_needed = r.array[a].count * (r.array[a].element == 1 ? 8 : 4);
            void *copy = NULL;
            if (posix_memalign(&copy, 64, bytes_needed)) { fprintf(stderr, "replay: out of memory\n"); return 2; }
            memcpy(copy, r.array[a].data, bytes_needed);
            r.array[a].data = copy;
        }
        int32_t (*task_copy)[4] = malloc((size_t)r.tasks * 16 + 16);
        memcpy(task_copy, r.task, (size_t)r.tasks * 16);
        r.task = task_copy;
        if (replay(&r, (bk_isa)isa, tasks, tolerance, (int)i)) failed++;
        for (uint32_t a = 0; a < r.arrays; a++) free(r.array[a].count ? r.array[a].data : NULL);
        free(task_copy);
    }
    printf("%u records, %d did not reproduce the trace\n", records, failed);
    free(bytes);
    return failed ? 1 : 0;
}
