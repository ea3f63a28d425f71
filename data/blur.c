/*
 * blur.c - Gaussian blur of a square planar crop [3, S, S]: separable,
 * DATA_BLUR_TAPS taps at offsets -4..4 (torchvision's GaussianBlur with
 * kernel_size 9), reflect padding (x[-1] = x[1]).
 */
#include <math.h>

#include "data/augment.h"

/* Reflects an index into [0, n): -1 -> 1, n -> n - 2; repeats for tiny n. */
static int reflect(int i, int n) {
    if (n == 1) return 0;
    for (;;) {
        if (i < 0) i = -i;
        else if (i >= n) i = 2 * (n - 1) - i;
        else return i;
    }
}

int data_gaussian_blur(float *rgb, int side, float sigma, DataCropScratch *scratch, DdError *err) {
    const int half = DATA_BLUR_TAPS / 2;
    const size_t plane = (size_t)side * side;
    if (data_scratch_grow((void **)&scratch->plane, &scratch->plane_cap, plane, sizeof(float), err)) return -1;
    float kernel[DATA_BLUR_TAPS];
    double total = 0;
    for (int k = 0; k < DATA_BLUR_TAPS; k++) {
        double x = (k - half) / (double)sigma;
        total += exp(-0.5 * x * x);
    }
    for (int k = 0; k < DATA_BLUR_TAPS; k++) {
        double x = (k - half) / (double)sigma;
        kernel[k] = (float)(exp(-0.5 * x * x) / total);
    }
    float *tmp = scratch->plane;
    for (int c = 0; c < 3; c++) {
        float *p = rgb + c * plane;
        /* horizontal into tmp: the edges through reflect(), the interior
         * tap by tap over the whole row (vectorises); same order of sums */
        for (int y = 0; y < side; y++) {
            const float *row = p + (size_t)y * side;
            float *out = tmp + (size_t)y * side;
            for (int x = 0; x < side; x++) {
                if (x >= half && x + half < side) continue;
                float acc = 0;
                for (int k = 0; k < DATA_BLUR_TAPS; k++) acc += kernel[k] * row[reflect(x + k - half, side)];
                out[x] = acc;
            }
            if (side <= 2 * half) continue;
            for (int x = half; x < side - half; x++) out[x] = 0;
            for (int k = 0; k < DATA_BLUR_TAPS; k++) {
                const float w = kernel[k], *in = row + k - half;
                for (int x = half; x < side - half; x++) out[x] += w * in[x];
            }
        }
        /* vertical back into p, a row at a time */
        for (int y = 0; y < side; y++) {
            float *out = p + (size_t)y * side;
            for (int x = 0; x < side; x++) out[x] = 0;
            for (int k = 0; k < DATA_BLUR_TAPS; k++) {
                const float *row = tmp + (size_t)reflect(y + k - half, side) * side;
                const float w = kernel[k];
                for (int x = 0; x < side; x++) out[x] += w * row[x];
            }
        }
    }
    return 0;
}
