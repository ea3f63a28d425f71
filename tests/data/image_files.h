/*
 * image_files.h - what the data tests need on disk: temporary folders,
 * JPEG and PNG files written with libturbojpeg and libpng from synthetic
 * pixels, and the ways to damage them that the bad-input tests list.
 */
#ifndef DD_TESTS_DATA_IMAGE_FILES_H
#define DD_TESTS_DATA_IMAGE_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "data/image.h"

/* A fresh folder /tmp/dd-data-test-XXXXXX (path must hold 64 bytes). */
int make_temp_folder(char *path);
/* rm -r */
void remove_tree(const char *path);
int make_folder(const char *path);

/* Deterministic test pixels (a synthetic image cut to width x height). */
void test_pixels(DataImage *image, int width, int height, uint64_t id);

/* Writes pixels as a JPEG (quality 90, 4:2:0) or a PNG (8-bit RGB). */
int write_jpeg(const char *path, const DataImage *image);
int write_png(const char *path, const DataImage *image);
int write_bytes(const char *path, const void *bytes, size_t size);
/* The whole file in a malloc'ed buffer. */
unsigned char *read_bytes(const char *path, size_t *size);

/* Damage: keep the first `keep` bytes; flip a byte inside the first IDAT
 * chunk's data (its CRC no longer matches). */
int truncate_file(const char *path, size_t keep);
int corrupt_png_idat(const char *path);

/* A log function for DataProblems that keeps the lines (up to 64). */
typedef struct LogLines {
    char lines[64][1024];
    int count;
} LogLines;
void keep_log_line(void *context, const char *line);
/* 1 if some kept line contains every one of the NULL-terminated needles. */
int log_has(const LogLines *log, const char *needle, ...);

#endif
