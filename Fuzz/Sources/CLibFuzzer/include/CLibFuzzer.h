#ifndef BITFLEET_CLIBFUZZER_H
#define BITFLEET_CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (compiler-rt, linked by -sanitize=fuzzer). The fuzz targets have
/// their own `main` (SwiftPM renames an executable's entry point), which hands over to it.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
