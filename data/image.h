/*
 * image.h - decoded pixels and the reusable buffers a loading thread keeps:
 * the encoded bytes of the sample in hand, the decoder state, the pixels.
 *
 * Buffers grow to the largest sample seen and are then reused, so a loading
 * thread stops allocating once it has met its largest image.
 */
#ifndef DD_DATA_IMAGE_H
#define DD_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "data/problems.h"
#include "nn/error.h"

enum {
    DATA_MAX_IMAGE_PIXELS = 1 << 26,   /* 67 Mpx: larger images are refused, not decoded */
    DATA_MAX_FILE_BYTES = 1 << 28,     /* 256 MiB of encoded bytes */
};

/* 8-bit RGB pixels, row-major: pixels[(y * width + x) * 3 + channel], i.e. [H, W, 3]. */
typedef struct DataImage {
    uint8_t *pixels;
    int width, height;
    size_t capacity;        /* bytes allocated */
} DataImage;

/* Encoded bytes of one file or shard entry. */
typedef struct DataBytes {
    unsigned char *data;
    size_t size, capacity;
} DataBytes;

/* Makes room for width x height pixels and sets the size. */
int data_image_reserve(DataImage *image, int width, int height, DdError *err);
void data_image_free(DataImage *image);

/* Makes room for size bytes (data->size is set to size). */
int data_bytes_reserve(DataBytes *bytes, size_t size, DdError *err);
void data_bytes_free(DataBytes *bytes);

/* Reads the whole file at path into bytes. On failure *kind says why
 * (unreadable, empty, too large). */
int data_read_file(const char *path, DataBytes *bytes, DataProblemKind *kind, DdError *err);

/* A decoder: libjpeg-turbo's handle, kept between images. One per thread. */
typedef struct DataDecoder {
    void *jpeg;     /* tjhandle */
} DataDecoder;

int data_decoder_init(DataDecoder *decoder, DdError *err);
void data_decoder_free(DataDecoder *decoder);

/* Decodes JPEG or PNG bytes, told apart by their signature (not by the file
 * name), into image. `where` names the file (and entry) in messages. Every
 * libjpeg-turbo warning (a truncated file, corrupt data) is an error here.
 * On failure *kind says which problem it was. */
int data_decode_image(DataDecoder *decoder, const unsigned char *bytes, size_t size, DataImage *image,
                      const char *where, DataProblemKind *kind, DdError *err);
/* The two decoders behind it; *kind is BAD_JPEG / BAD_PNG, or TOO_LARGE. */
int data_decode_jpeg(DataDecoder *decoder, const unsigned char *bytes, size_t size, DataImage *image,
                     const char *where, DataProblemKind *kind, DdError *err);
int data_decode_png(const unsigned char *bytes, size_t size, DataImage *image, const char *where,
                    DataProblemKind *kind, DdError *err);

/* Reads only the header of a JPEG or PNG: its size (for `distill pack --no-verify`). */
int data_probe_image(DataDecoder *decoder, const unsigned char *bytes, size_t size, int *width, int *height,
                     const char *where, DataProblemKind *kind, DdError *err);
int data_probe_jpeg(DataDecoder *decoder, const unsigned char *bytes, size_t size, int *width, int *height,
                    const char *where, DataProblemKind *kind, DdError *err);
int data_probe_png(const unsigned char *bytes, size_t size, int *width, int *height, const char *where,
                   DataProblemKind *kind, DdError *err);

#endif
