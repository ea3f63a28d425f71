/*
 * decode_png.c - PNG to 8-bit RGB through libpng's simplified API: any bit
 * depth, palette, grey or alpha in; 8-bit sRGB out. Alpha is dropped, not
 * composited (what PIL's convert("RGB") does). A bad CRC in a critical chunk,
 * a truncated stream or a corrupt IDAT fails the decode.
 */
#include <png.h>
#include <string.h>

#include "data/image.h"

static int begin(png_image *png, const unsigned char *bytes, size_t size, const char *where, DataProblemKind *kind,
                 DdError *err) {
    memset(png, 0, sizeof *png);
    png->version = PNG_IMAGE_VERSION;
    *kind = DATA_PROBLEM_BAD_PNG;
    if (!png_image_begin_read_from_memory(png, bytes, size)) {
        dd_fail(err, "%s: cannot read the PNG header: %s", where, png->message);
        png_image_free(png);
        return -1;
    }
    if (png->width == 0 || png->height == 0 || (uint64_t)png->width * png->height > DATA_MAX_IMAGE_PIXELS) {
        *kind = DATA_PROBLEM_TOO_LARGE;
        dd_fail(err, "%s: PNG of %u x %u px, expected at most %d pixels", where, png->width, png->height,
                DATA_MAX_IMAGE_PIXELS);
        png_image_free(png);
        return -1;
    }
    return 0;
}

int data_probe_png(const unsigned char *bytes, size_t size, int *width, int *height, const char *where,
                   DataProblemKind *kind, DdError *err) {
    png_image png;
    if (begin(&png, bytes, size, where, kind, err)) return -1;
    *width = (int)png.width;
    *height = (int)png.height;
    png_image_free(&png);
    return 0;
}

int data_decode_png(const unsigned char *bytes, size_t size, DataImage *image, const char *where,
                    DataProblemKind *kind, DdError *err) {
    png_image png;
    if (begin(&png, bytes, size, where, kind, err)) return -1;
    int has_alpha = (png.format & PNG_FORMAT_FLAG_ALPHA) != 0;
    int width = (int)png.width, height = (int)png.height;
    /* with alpha, decode RGBA (4 bytes per pixel: reserve 4/3 as many rows) and drop it */
    if (data_image_reserve(image, width, has_alpha ? (int)(((int64_t)height * 4 + 2) / 3) : height, err)) {
        png_image_free(&png);
        *kind = DATA_PROBLEM_TOO_LARGE;
        return dd_fail_context(err, "%s", where);
    }
    image->height = height;
    png.format = has_alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
    if (!png_image_finish_read(&png, NULL, image->pixels, 0, NULL)) {
        dd_fail(err, "%s: corrupt or truncated PNG (%s)", where, png.message);
        png_image_free(&png);
        return -1;
    }
    if (has_alpha) {
        size_t count = (size_t)width * height;
        for (size_t i = 0; i < count; i++) memmove(image->pixels + 3 * i, image->pixels + 4 * i, 3);
    }
    png_image_free(&png);
    return 0;
}
