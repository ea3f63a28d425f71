/*
 * image_files.c - test files for the data tests (see image_files.h).
 */
#include "tests/data/image_files.h"

#include <ftw.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "data/source.h"

int make_temp_folder(char *path) {
    strcpy(path, "/tmp/dd-data-test-XXXXXX");
    return mkdtemp(path) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void remove_tree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

int make_folder(const char *path) { return mkdir(path, 0755); }

void test_pixels(DataImage *image, int width, int height, uint64_t id) {
    DataImage square = {0};
    int32_t label;
    int side = width > height ? width : height;
    if (data_synthetic_image(7, id, side, 5, &square, &label, NULL) != 0 ||
        data_image_reserve(image, width, height, NULL) != 0)
        abort();
    for (int y = 0; y < height; y++)
        memcpy(image->pixels + (size_t)y * width * 3, square.pixels + (size_t)y * side * 3, (size_t)width * 3);
    data_image_free(&square);
}

int write_bytes(const char *path, const void *bytes, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(bytes, 1, size, f) == size;
    return fclose(f) == 0 && ok ? 0 : -1;
}

unsigned char *read_bytes(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(n > 0 ? (size_t)n : 1);
    *size = data ? fread(data, 1, (size_t)n, f) : 0;
    fclose(f);
    return data;
}

int write_jpeg(const char *path, const DataImage *image) {
    tjhandle encoder = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long size = 0;
    int status = tjCompress2(encoder, image->pixels, image->width, 0, image->height, TJPF_RGB, &jpeg, &size,
                             TJSAMP_420, 90, 0);
    if (status == 0) status = write_bytes(path, jpeg, size);
    tjFree(jpeg);
    tjDestroy(encoder);
    return status;
}

int write_png(const char *path, const DataImage *image) {
    png_image png;
    memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    png.width = (png_uint_32)image->width;
    png.height = (png_uint_32)image->height;
    png.format = PNG_FORMAT_RGB;
    return png_image_write_to_file(&png, path, 0, image->pixels, 0, NULL) ? 0 : -1;
}

int truncate_file(const char *path, size_t keep) { return truncate(path, (off_t)keep); }

int corrupt_png_idat(const char *path) {
    size_t size = 0;
    unsigned char *data = read_bytes(path, &size);
    int status = -1;
    for (size_t at = 8; data && at + 12 <= size;) {   /* chunks: length, type, data, crc */
        size_t length = (size_t)data[at] << 24 | (size_t)data[at + 1] << 16 | (size_t)data[at + 2] << 8 | data[at + 3];
        if (memcmp(data + at + 4, "IDAT", 4) == 0 && length > 4) {
            data[at + 8 + length / 2] ^= 0x5A;
            status = write_bytes(path, data, size);
            break;
        }
        at += 12 + length;
    }
    free(data);
    return status;
}

void keep_log_line(void *context, const char *line) {
    LogLines *log = context;
    if (log->count < 64) snprintf(log->lines[log->count++], sizeof log->lines[0], "%s", line);
}

int log_has(const LogLines *log, const char *needle, ...) {
    for (int i = 0; i < log->count; i++) {
        va_list args;
        va_start(args, needle);
        int all = 1;
        for (const char *n = needle; n; n = va_arg(args, const char *))
            if (!strstr(log->lines[i], n)) all = 0;
        va_end(args);
        if (all) return 1;
    }
    return 0;
}
