#include "bk_internal.h"

void *bk_alloc(size_t bytes) {
    size_t size = BK_ROUND_UP(bytes ? bytes : 1, 64);
    void *pointer = NULL;
    if (posix_memalign(&pointer, 64, size) != 0) return NULL;
    memset(pointer, 0, size);
    return pointer;
}

void bk_free(void *pointer) { free(pointer); }

int bk_fail(char *error, size_t error_size, const char *format, ...) {
    if (error && error_size) {
        va_list arguments;
        va_start(arguments, format);
        vsnprintf(error, error_size, format, arguments);
        va_end(arguments);
    }
    return -1;
}
