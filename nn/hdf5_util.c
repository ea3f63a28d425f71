/*
 * hdf5_util.c - libhdf5 errors as sentences, and recognising an HDF5 file
 * (see hdf5_util.h).
 */
#include "nn/hdf5_util.h"

#include <stdio.h>
#include <string.h>

Hdf5Quiet hdf5_quiet(void) {
    Hdf5Quiet saved = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &saved.handler, &saved.handler_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return saved;
}

void hdf5_restore(Hdf5Quiet saved) {
    H5Eset_auto2(H5E_DEFAULT, saved.handler, saved.handler_data);
}

typedef struct Hdf5Reason {
    char *text;
    size_t size;
} Hdf5Reason;

/* Error-stack walker: keeps the innermost (first, walking upward) description. */
static herr_t keep_innermost_error(unsigned position, const H5E_error2_t *entry, void *data) {
    Hdf5Reason *reason = data;
    if (position == 0 && entry->desc) snprintf(reason->text, reason->size, "%s", entry->desc);
    return 0;
}

/* The most specific description HDF5 left on its error stack for the call
 * that just failed, e.g. "truncated file: eof = 96, ..." */
const char *hdf5_reason(char *text, size_t size) {
    Hdf5Reason reason = {text, size};
    snprintf(text, size, "unknown HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost_error, &reason);
    H5Eclear2(H5E_DEFAULT);
    return text;
}

/* An HDF5 file starts with this signature (at offset 0, or after a user block). */
int hdf5_looks_like_file(const char *path) {
    static const unsigned char signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    FILE *stream = fopen(path, "rb");
    if (!stream) return 0;
    int found = 0;
    /* User blocks are 0, 512, 1024, 2048, ... bytes long. */
    for (long offset = 0; !found && offset <= (1L << 30); offset = offset ? offset * 2 : 512) {
        unsigned char head[8];
        if (fseek(stream, offset, SEEK_SET) != 0 || fread(head, 1, 8, stream) != 8) break;
        found = memcmp(head, signature, 8) == 0;
    }
    fclose(stream);
    return found;
}

