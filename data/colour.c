/*
 * colour.c - the colour operations of the crop recipe on planar float
 * images rgb [3, n] in [0, 1], with torchvision's formulas (its tensor path):
 * each jitter op blends with a reference image and clamps to [0, 1];
 * grayscale is 0.2989 R + 0.587 G + 0.114 B; hue shifts in HSV.
 */
#include <math.h>

#include "data/augment.h"

static float clamp01(float v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

static float gray_of(float r, float g, float b) { return 0.2989f * r + 0.587f * g + 0.114f * b; }

void data_adjust_brightness(float *rgb, size_t n, float factor) {
    for (size_t i = 0; i < 3 * n; i++) rgb[i] = clamp01(rgb[i] * factor);
}

/* Blends with the mean grey level of the whole crop. */
void data_adjust_contrast(float *rgb, size_t n, float factor) {
    const float *r = rgb, *g = rgb + n, *b = rgb + 2 * n;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += gray_of(r[i], g[i], b[i]);
    const float mean = (float)(sum / (double)n), offset = (1 - factor) * mean;
    for (size_t i = 0; i < 3 * n; i++) rgb[i] = clamp01(factor * rgb[i] + offset);
}

/* Blends each pixel with its own grey level. */
void data_adjust_saturation(float *rgb, size_t n, float factor) {
    float *restrict r = rgb, *restrict g = rgb + n, *restrict b = rgb + 2 * n;
    for (size_t i = 0; i < n; i++) {
        float offset = (1 - factor) * gray_of(r[i], g[i], b[i]);
        r[i] = clamp01(factor * r[i] + offset);
        g[i] = clamp01(factor * g[i] + offset);
        b[i] = clamp01(factor * b[i] + offset);
    }
}

/* The fractional part, x - floor(x): exact, and what fmodf(x, 1) + (x < 0)
 * gives, without fmodf's library call. */
static float fraction(float x) { return x - floorf(x); }

/* RGB -> HSV, h += shift (mod 1), HSV -> RGB. Branch-free selects, so the
 * loop vectorises. */
void data_adjust_hue(float *rgb, size_t n, float shift) {
    /* three planes, never the same element: restrict lets the loop vectorise */
    float *restrict r = rgb, *restrict g = rgb + n, *restrict b = rgb + 2 * n;
    for (size_t i = 0; i < n; i++) {
        float R = r[i], G = g[i], B = b[i];
        float maxc = R > G ? R : G, minc = R < G ? R : G;
        maxc = maxc > B ? maxc : B;
        minc = minc < B ? minc : B;
        float range = maxc - minc;
        float s = range / (maxc == minc ? 1.0f : maxc);
        float divisor = maxc == minc ? 1.0f : range;
        float rc = (maxc - R) / divisor, gc = (maxc - G) / divisor, bc = (maxc - B) / divisor;
        float h = maxc == R ? bc - gc : maxc == G ? 2.0f + rc - bc : 4.0f + gc - rc;
        h = fraction(fraction(h / 6.0f + 1.0f) + shift);
        float v = maxc;
        float sector = floorf(h * 6.0f), f = h * 6.0f - sector;
        float p = clamp01(v * (1 - s)), q = clamp01(v * (1 - s * f)), t = clamp01(v * (1 - s * (1 - f)));
        /* sector 0..5 (6 only if h rounds up to 1: the same as 0) */
        float k = sector >= 6.0f ? sector - 6.0f : sector;
        r[i] = k == 0 ? v : k == 1 ? q : k == 2 ? p : k == 3 ? p : k == 4 ? t : v;
        g[i] = k == 0 ? t : k == 1 ? v : k == 2 ? v : k == 3 ? q : p;
        b[i] = k == 0 ? p : k == 1 ? p : k == 2 ? t : k == 3 ? v : k == 4 ? v : q;
    }
}

void data_to_grayscale(float *rgb, size_t n) {
    float *restrict r = rgb, *restrict g = rgb + n, *restrict b = rgb + 2 * n;
    for (size_t i = 0; i < n; i++) r[i] = g[i] = b[i] = gray_of(r[i], g[i], b[i]);
}

/* Inverts values at or above 128/255 (PIL's solarize threshold on 8 bits). */
void data_solarize(float *rgb, size_t n) {
    const float threshold = 128.0f / 255.0f;
    for (size_t i = 0; i < 3 * n; i++)
        if (rgb[i] >= threshold) rgb[i] = 1.0f - rgb[i];
}

void data_normalize(float *rgb, size_t n, const DataRgb *mean, const DataRgb *std) {
    const float m[3] = {mean->red, mean->green, mean->blue};
    const float inv[3] = {1.0f / std->red, 1.0f / std->green, 1.0f / std->blue};
    for (int c = 0; c < 3; c++) {
        float *p = rgb + c * n;
        for (size_t i = 0; i < n; i++) p[i] = (p[i] - m[c]) * inv[c];
    }
}
