/*
 * scratch.c - the scratch folder of scratch.h.
 */
#include "tests/weights/scratch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char folder[512];

static void remove_folder(void) {
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", folder);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", folder);
}

const char *scratch_path(const char *name) {
    static char paths[8][1024];
    static int next;
    if (!folder[0]) {
        const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(folder, sizeof folder, "%s/dd_weights_XXXXXX", tmp);
        if (!mkdtemp(folder)) {
            perror("mkdtemp");
            exit(1);
        }
        if (getenv("DD_KEEP_SCRATCH")) fprintf(stderr, "scratch folder kept: %s\n", folder);
        else atexit(remove_folder);
    }
    char *path = paths[next++ % 8];
    snprintf(path, sizeof paths[0], "%s/%s", folder, name);
    return path;
}

int write_bytes(const char *path, const void *bytes, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t written = fwrite(bytes, 1, size, f);
    return fclose(f) == 0 && written == size ? 0 : -1;
}

int write_safetensors_raw(const char *path, const char *header, uint64_t header_length, size_t data_size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint64_t length = header_length == UINT64_MAX ? strlen(header) : header_length;
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (uint8_t)(length >> (8 * i));
    fwrite(prefix, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_size; i++) fputc(0, f);
    return fclose(f) == 0 ? 0 : -1;
}

uint8_t *read_bytes(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *bytes = malloc(n > 0 ? (size_t)n : 1);
    if (bytes && fread(bytes, 1, (size_t)n, f) != (size_t)n) {
        free(bytes);
        bytes = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return bytes;
}
