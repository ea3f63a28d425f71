/*
 * decode_jpeg.c - JPEG to 8-bit RGB through libjpeg-turbo's TurboJPEG API,
 * with the accurate integer IDCT and fancy upsampling (what PIL does).
 *
 * Strict: any libjpeg warning (a premature end of file, corrupt entropy
 * data) fails the decode, since it would leave part of the image grey.
 * CMYK and YCCK files (Adobe, inverted) are decoded as CMYK and converted.
 */
#include <turbojpeg.h>

#include "data/image.h"

int data_decoder_init(DataDecoder *decoder, DdError *err) {
    decoder->jpeg = tjInitDecompress();
    if (!decoder->jpeg) return dd_fail(err, "cannot create a libjpeg-turbo decompressor: %s", tjGetErrorStr2(NULL));
    return 0;
}

void data_decoder_free(DataDecoder *decoder) {
    if (decoder->jpeg) tjDestroy(decoder->jpeg);
    decoder->jpeg = NULL;
}

static int read_header(DataDecoder *decoder, const unsigned char *bytes, size_t size, int *width, int *height,
                       int *colorspace, const char *where, DataProblemKind *kind, DdError *err) {
    int subsampling = 0;
    *kind = DATA_PROBLEM_BAD_JPEG;
    if (size > (size_t)DATA_MAX_FILE_BYTES) {
        *kind = DATA_PROBLEM_TOO_LARGE;
        return dd_fail(err, "%s: %zu bytes, expected at most %d", where, size, DATA_MAX_FILE_BYTES);
    }
    if (tjDecompressHeader3(decoder->jpeg, bytes, (unsigned long)size, width, height, &subsampling, colorspace) != 0)
        return dd_fail(err, "%s: cannot read the JPEG header: %s", where, tjGetErrorStr2(decoder->jpeg));
    if (*width <= 0 || *height <= 0)
        return dd_fail(err, "%s: JPEG header without an image size (truncated or corrupt)", where);
    if ((int64_t)*width * *height > DATA_MAX_IMAGE_PIXELS) {
        *kind = DATA_PROBLEM_TOO_LARGE;
        return dd_fail(err, "%s: JPEG of %d x %d px, expected at most %d pixels", where, *width, *height,
                       DATA_MAX_IMAGE_PIXELS);
    }
    return 0;
}

/* After a failed call the TurboJPEG handle can be left mid-stream (the
 * next header then reads as 0 x 0): start a fresh one. */
static void reset(DataDecoder *decoder) {
    tjhandle fresh = tjInitDecompress();
    if (!fresh) return;   /* keep the old one; the next call reports what it finds */
    tjDestroy(decoder->jpeg);
    decoder->jpeg = fresh;
}

int data_probe_jpeg(DataDecoder *decoder, const unsigned char *bytes, size_t size, int *width, int *height,
                    const char *where, DataProblemKind *kind, DdError *err) {
    int colorspace = 0;
    if (read_header(decoder, bytes, size, width, height, &colorspace, where, kind, err) == 0) return 0;
    reset(decoder);
    return -1;
}

/* Adobe CMYK JPEGs store inverted ink values: R = C * K / 255 and so on.
 * In place: pixel i moves from byte 4i to byte 3i, never ahead of a read. */
static void cmyk_to_rgb(uint8_t *pixels, size_t count) {
    for (size_t i = 0; i < count; i++) {
        const uint8_t *in = pixels + 4 * i;
        unsigned c = in[0], m = in[1], y = in[2], k = in[3];
        uint8_t *out = pixels + 3 * i;
        out[0] = (uint8_t)((c * k + 127) / 255);
        out[1] = (uint8_t)((m * k + 127) / 255);
        out[2] = (uint8_t)((y * k + 127) / 255);
    }
}

int data_decode_jpeg(DataDecoder *decoder, const unsigned char *bytes, size_t size, DataImage *image,
                     const char *where, DataProblemKind *kind, DdError *err) {
    int width = 0, height = 0, colorspace = 0;
    if (read_header(decoder, bytes, size, &width, &height, &colorspace, where, kind, err)) {
        reset(decoder);
        return -1;
    }
    int cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
    /* CMYK needs 4 bytes per pixel while decoding: reserve 4/3 as many rows */
    if (data_image_reserve(image, width, cmyk ? (int)(((int64_t)height * 4 + 2) / 3) : height, err)) {
        *kind = DATA_PROBLEM_TOO_LARGE;
        reset(decoder);
        return dd_fail_context(err, "%s", where);
    }
    image->height = height;
    const int flags = TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
    if (tjDecompress2(decoder->jpeg, bytes, (unsigned long)size, image->pixels, width, 0, height,
                      cmyk ? TJPF_CMYK : TJPF_RGB, flags) != 0) {
        *kind = DATA_PROBLEM_BAD_JPEG;
        dd_fail(err, "%s: corrupt or truncated JPEG (%s)", where, tjGetErrorStr2(decoder->jpeg));
        reset(decoder);
        return -1;
    }
    if (cmyk) cmyk_to_rgb(image->pixels, (size_t)width * height);
    return 0;
}
