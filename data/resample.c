/*
 * resample.c - bicubic resampling of a crop box, separable, antialiased as
 * PIL's resize is (see data_resample_bicubic in augment.h).
 *
 * Two passes: horizontal (box rows [H_box, W_box, 3] uint8 -> [H_box, out_w, 3]
 * float), then vertical ([H_box, out_w, 3] -> [3, out_h, out_w], clamped).
 * The taps of every output index are computed once per crop.
 */
#include <math.h>
#include <stdlib.h>

#include "data/augment.h"

double data_bicubic_kernel(double x) {
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

int data_scratch_grow(void **buffer, size_t *capacity, size_t count, size_t elem_size, DdError *err) {
    if (count <= *capacity) return 0;
    size_t next = *capacity ? *capacity : 256;
    while (next < count) next *= 2;
    void *p = realloc(*buffer, next * elem_size);
    if (!p) return dd_fail(err, "out of memory for %zu bytes of crop scratch", next * elem_size);
    *buffer = p;
    *capacity = next;
    return 0;
}

void data_crop_scratch_free(DataCropScratch *s) {
    free(s->taps);
    free(s->weights);
    free(s->rows);
    free(s->line);
    free(s->plane);
    *s = (DataCropScratch){0};
}

/* Taps per output index for `length` inputs resampled to `out` outputs. */
static int axis_taps(int length, int out) {
    double scale = (double)length / out;
    double support = 2.0 * (scale > 1 ? scale : 1);
    return (int)ceil(support) * 2 + 1;
}

/* The taps of one axis: output i reads inputs first[i] .. first[i]+count[i]-1
 * (relative to the box) with weights[i * taps ...], which sum to 1. */
static void axis_weights(int length, int out, int taps, int *first, int *count, float *weights) {
    double scale = (double)length / out;
    double filter_scale = scale > 1 ? scale : 1;
    double support = 2.0 * filter_scale;
    for (int i = 0; i < out; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)floor(center - support + 0.5), hi = (int)floor(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > length) hi = length;
        if (hi - lo > taps) hi = lo + taps;
        double total = 0;
        for (int k = 0; k < hi - lo; k++) total += data_bicubic_kernel((lo + k - center + 0.5) / filter_scale);
        first[i] = lo;
        count[i] = hi - lo;
        float *w = weights + (size_t)i * taps;
        for (int k = 0; k < taps; k++)
            w[k] = k < hi - lo && total != 0
                       ? (float)(data_bicubic_kernel((lo + k - center + 0.5) / filter_scale) / total)
                       : 0.0f;
    }
}

int data_resample_bicubic(const DataImage *image, int x, int y, int width, int height, int out_w, int out_h,
                          int flip, float *out, DataCropScratch *s, DdError *err) {
    if (width <= 0 || height <= 0 || x < 0 || y < 0 || x + width > image->width || y + height > image->height ||
        out_w <= 0 || out_h <= 0)
        return dd_fail(err, "crop box (%d, %d) %d x %d outside the %d x %d image, or empty output %d x %d", x, y,
                       width, height, image->width, image->height, out_w, out_h);
    const int taps_x = axis_taps(width, out_w), taps_y = axis_taps(height, out_h);
    if (data_scratch_grow((void **)&s->taps, &s->taps_cap, 2 * ((size_t)out_w + out_h), sizeof(int), err) ||
        data_scratch_grow((void **)&s->weights, &s->weights_cap, (size_t)out_w * taps_x + (size_t)out_h * taps_y,
                          sizeof(float), err) ||
        data_scratch_grow((void **)&s->rows, &s->rows_cap, (size_t)height * out_w * 3, sizeof(float), err) ||
        data_scratch_grow((void **)&s->line, &s->line_cap, (size_t)out_w * 3, sizeof(float), err))
        return -1;
    int *first_x = s->taps, *count_x = s->taps + out_w;
    int *first_y = s->taps + 2 * out_w, *count_y = s->taps + 2 * out_w + out_h;
    float *weights_x = s->weights, *weights_y = s->weights + (size_t)out_w * taps_x;
    axis_weights(width, out_w, taps_x, first_x, count_x, weights_x);
    axis_weights(height, out_h, taps_y, first_y, count_y, weights_y);

    /* horizontal: rows[r, j, c] = sum_k wx[j, k] * box[r, first_x[j] + k, c] */
    const size_t stride = (size_t)image->width * 3;
    for (int r = 0; r < height; r++) {
        const uint8_t *src = image->pixels + (size_t)(y + r) * stride + (size_t)x * 3;
        float *row = s->rows + (size_t)r * out_w * 3;
        for (int j = 0; j < out_w; j++) {
            const uint8_t *p = src + (size_t)first_x[j] * 3;
            const float *w = weights_x + (size_t)j * taps_x;
            float a0 = 0, a1 = 0, a2 = 0;
            for (int k = 0; k < count_x[j]; k++) {
                a0 += w[k] * p[3 * k];
                a1 += w[k] * p[3 * k + 1];
                a2 += w[k] * p[3 * k + 2];
            }
            float *o = row + (size_t)(flip ? out_w - 1 - j : j) * 3;
            o[0] = a0;
            o[1] = a1;
            o[2] = a2;
        }
    }
    /* vertical: out[c, i, j] = clamp(sum_k wy[i, k] * rows[first_y[i] + k, j, c] / 255) */
    const size_t plane = (size_t)out_w * out_h, width3 = (size_t)out_w * 3;
    for (int i = 0; i < out_h; i++) {
        float *line = s->line;
        for (size_t e = 0; e < width3; e++) line[e] = 0;
        const float *w = weights_y + (size_t)i * taps_y;
        for (int k = 0; k < count_y[i]; k++) {
            const float *row = s->rows + (size_t)(first_y[i] + k) * width3;
            const float wk = w[k];
            for (size_t e = 0; e < width3; e++) line[e] += wk * row[e];
        }
        for (int c = 0; c < 3; c++) {
            float *o = out + c * plane + (size_t)i * out_w;
            for (int j = 0; j < out_w; j++) {
                float v = line[(size_t)j * 3 + c] * (1.0f / 255.0f);
                o[j] = v < 0 ? 0 : v > 1 ? 1 : v;
            }
        }
    }
    return 0;
}
