/*
 * image.c - growable pixel and byte buffers, whole-file reads, and the
 * decoder front door that tells JPEG from PNG by signature.
 */
#include "data/image.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int grow(void **memory, size_t *capacity, size_t need, const char *what, DdError *err) {
    if (need <= *capacity) return 0;
    size_t next = *capacity ? *capacity : 4096;
    while (next < need) next *= 2;
    void *p = realloc(*memory, next);
    if (!p) return dd_fail(err, "out of memory for %zu bytes of %s", next, what);
    *memory = p;
    *capacity = next;
    return 0;
}

int data_image_reserve(DataImage *image, int width, int height, DdError *err) {
    if (width <= 0 || height <= 0 || (int64_t)width * height > DATA_MAX_IMAGE_PIXELS)
        return dd_fail(err, "image of %d x %d px, expected at most %d pixels", width, height, DATA_MAX_IMAGE_PIXELS);
    if (grow((void **)&image->pixels, &image->capacity, (size_t)width * height * 3, "pixels", err)) return -1;
    image->width = width;
    image->height = height;
    return 0;
}

void data_image_free(DataImage *image) {
    free(image->pixels);
    *image = (DataImage){0};
}

int data_bytes_reserve(DataBytes *bytes, size_t size, DdError *err) {
    if (grow((void **)&bytes->data, &bytes->capacity, size ? size : 1, "encoded bytes", err)) return -1;
    bytes->size = size;
    return 0;
}

void data_bytes_free(DataBytes *bytes) {
    free(bytes->data);
    *bytes = (DataBytes){0};
}

int data_read_file(const char *path, DataBytes *bytes, DataProblemKind *kind, DdError *err) {
    *kind = DATA_PROBLEM_UNREADABLE;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int status = -1;
    if (fstat(fd, &st) != 0) {
        dd_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        dd_fail(err, "%s: not a regular file", path);
    } else if (st.st_size == 0) {
        *kind = DATA_PROBLEM_EMPTY;
        dd_fail(err, "%s: empty file (0 bytes)", path);
    } else if (st.st_size > DATA_MAX_FILE_BYTES) {
        *kind = DATA_PROBLEM_TOO_LARGE;
        dd_fail(err, "%s: %lld bytes, expected at most %d", path, (long long)st.st_size, DATA_MAX_FILE_BYTES);
    } else if (data_bytes_reserve(bytes, (size_t)st.st_size, err) == 0) {
        size_t done = 0;
        while (done < bytes->size) {
            ssize_t n = read(fd, bytes->data + done, bytes->size - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            done += (size_t)n;
        }
        if (done == bytes->size) status = 0;
        else dd_fail(err, "%s: read %zu of %zu bytes", path, done, bytes->size);
    }
    close(fd);
    return status;
}

static int is_jpeg(const unsigned char *b, size_t n) { return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

static int is_png(const unsigned char *b, size_t n) {
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return n >= 8 && memcmp(b, signature, 8) == 0;
}

/* The first bytes of an unrecognised file, printable characters as they are. */
static void describe_start(const unsigned char *b, size_t n, char *out, size_t cap) {
    size_t used = 0;
    for (size_t i = 0; i < n && i < 8 && used + 5 < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, b[i] >= 32 && b[i] < 127 ? "%c" : "\\x%02x", b[i]);
    out[used] = 0;
}

static int not_an_image(const unsigned char *bytes, size_t size, const char *where, DataProblemKind *kind,
                        DdError *err) {
    if (size == 0) {
        *kind = DATA_PROBLEM_EMPTY;
        return dd_fail(err, "%s: empty file (0 bytes)", where);
    }
    char start[48];
    describe_start(bytes, size, start, sizeof start);
    *kind = DATA_PROBLEM_NOT_AN_IMAGE;
    return dd_fail(err, "%s: expected a JPEG or PNG signature, found '%s'", where, start);
}

int data_decode_image(DataDecoder *decoder, const unsigned char *bytes, size_t size, DataImage *image,
                      const char *where, DataProblemKind *kind, DdError *err) {
    if (is_jpeg(bytes, size)) return data_decode_jpeg(decoder, bytes, size, image, where, kind, err);
    if (is_png(bytes, size)) return data_decode_png(bytes, size, image, where, kind, err);
    return not_an_image(bytes, size, where, kind, err);
}

int data_probe_image(DataDecoder *decoder, const unsigned char *bytes, size_t size, int *width, int *height,
                     const char *where, DataProblemKind *kind, DdError *err) {
    if (is_jpeg(bytes, size)) return data_probe_jpeg(decoder, bytes, size, width, height, where, kind, err);
    if (is_png(bytes, size)) return data_probe_png(bytes, size, width, height, where, kind, err);
    return not_an_image(bytes, size, where, kind, err);
}
