/*
 * synthetic_image.c - procedurally drawn images with structure a network
 * can learn: the class decides the objects' shape, surface texture and hue;
 * each image draws its own background gradient, grain, object placements,
 * sizes, rotations and shading, and occluding patches.
 *
 * Streams: the image's own choices come from dd_random_keyed(0,
 * DD_RANDOM_SYNTHETIC, source index, id, 0); the traits of class k from
 * (source index, k, 1). The data set is the same under every run seed.
 */
#include <math.h>

#include "data/source.h"
#include "nn/random.h"

enum { SHAPE_KINDS = 6, TEXTURE_KINDS = 4, MAX_OBJECTS = 3, MAX_OCCLUDERS = 2 };

typedef struct ClassTraits {
    int shape;            /* disc, square, triangle, ring, cross, ellipse */
    int texture;          /* flat, stripes, checks, dots */
    float hue;            /* [0, 1) */
    float frequency;      /* texture cycles per object radius */
} ClassTraits;

typedef struct Object {
    float cx, cy, radius, cos_a, sin_a;
    float colour[3];
    float frequency;
} Object;

typedef struct Patch {
    float x0, y0, x1, y1;
    float colour[3];
} Patch;

static float draw(DdRandom *r, float lo, float hi) { return (float)(lo + (hi - lo) * dd_random_uniform(r)); }

/* HSV in [0, 1] to RGB in [0, 1]. */
static void hsv_to_rgb(float h, float s, float v, float rgb[3]) {
    h = h - floorf(h);
    float sector = floorf(h * 6), f = h * 6 - sector;
    float p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    switch ((int)sector % 6) {
    case 0: rgb[0] = v, rgb[1] = t, rgb[2] = p; break;
    case 1: rgb[0] = q, rgb[1] = v, rgb[2] = p; break;
    case 2: rgb[0] = p, rgb[1] = v, rgb[2] = t; break;
    case 3: rgb[0] = p, rgb[1] = q, rgb[2] = v; break;
    case 4: rgb[0] = t, rgb[1] = p, rgb[2] = v; break;
    default: rgb[0] = v, rgb[1] = p, rgb[2] = q; break;
    }
}

static ClassTraits class_traits(int index, int label) {
    DdRandom r = dd_random_keyed(0, DD_RANDOM_SYNTHETIC, (uint64_t)index, (uint64_t)label, 1);
    ClassTraits t = {
        .shape = label % SHAPE_KINDS,
        .texture = (label / SHAPE_KINDS) % TEXTURE_KINDS,
        .hue = fmodf(label * 0.618034f + draw(&r, 0, 0.1f), 1.0f),
        .frequency = draw(&r, 2.0f, 5.0f),
    };
    return t;
}

/* 1 if the object-local point (u, v), in radii, is inside the shape. */
static int inside(int shape, float u, float v) {
    float au = fabsf(u), av = fabsf(v), rr = u * u + v * v;
    switch (shape) {
    case 0: return rr < 1.0f;
    case 1: return au < 0.8f && av < 0.8f;
    case 2: return v > -0.5f && v < 1.0f - 1.732f * au;
    case 3: return rr < 1.0f && rr > 0.36f;
    case 4: return (au < 0.3f && av < 1.0f) || (av < 0.3f && au < 1.0f);
    default: return u * u + v * v * 3.0f < 1.0f;
    }
}

/* Texture brightness factor at object-local (u, v). */
static float texture_at(int texture, float u, float v, float frequency) {
    switch (texture) {
    case 1: return sinf(frequency * 3.14159f * (u + 0.5f * v)) > 0 ? 1.0f : 0.6f;
    case 2: return ((int)floorf(u * frequency + 8) + (int)floorf(v * frequency + 8)) & 1 ? 1.0f : 0.65f;
    case 3: {
        float fu = u * frequency - floorf(u * frequency) - 0.5f, fv = v * frequency - floorf(v * frequency) - 0.5f;
        return fu * fu + fv * fv < 0.09f ? 0.55f : 1.0f;
    }
    default: return 1.0f;
    }
}

static uint8_t to_byte(float v) {
    v = v * 255.0f + 0.5f;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int data_synthetic_image(int index, uint64_t id, int size, int classes, DataImage *image, int32_t *label,
                         DdError *err) {
    if (data_image_reserve(image, size, size, err)) return -1;
    DdRandom r = dd_random_keyed(0, DD_RANDOM_SYNTHETIC, (uint64_t)index, id, 0);
    const int k = (int)(dd_random_u64(&r) % (uint64_t)classes);
    *label = k;
    const ClassTraits traits = class_traits(index, k);

    /* background: a gradient between two muted colours at a random angle */
    float from[3], to[3];
    hsv_to_rgb(draw(&r, 0, 1), draw(&r, 0.05f, 0.4f), draw(&r, 0.3f, 0.9f), from);
    hsv_to_rgb(draw(&r, 0, 1), draw(&r, 0.05f, 0.4f), draw(&r, 0.2f, 0.8f), to);
    float angle = draw(&r, 0, 6.2832f), gx = cosf(angle), gy = sinf(angle);
    float grain = draw(&r, 0.01f, 0.05f);

    Object objects[MAX_OBJECTS];
    int object_count = 1 + (int)(dd_random_u64(&r) % MAX_OBJECTS);
    for (int i = 0; i < object_count; i++) {
        Object *o = &objects[i];
        o->cx = draw(&r, 0.15f, 0.85f) * size;
        o->cy = draw(&r, 0.15f, 0.85f) * size;
        o->radius = draw(&r, 0.12f, 0.3f) * size;
        float a = draw(&r, 0, 6.2832f);
        o->cos_a = cosf(a);
        o->sin_a = sinf(a);
        hsv_to_rgb(traits.hue + draw(&r, -0.04f, 0.04f), draw(&r, 0.55f, 0.95f), draw(&r, 0.55f, 0.95f), o->colour);
        o->frequency = traits.frequency * draw(&r, 0.8f, 1.25f);
    }
    Patch patches[MAX_OCCLUDERS];
    int patch_count = (int)(dd_random_u64(&r) % (MAX_OCCLUDERS + 1));
    for (int i = 0; i < patch_count; i++) {
        Patch *p = &patches[i];
        float w = draw(&r, 0.1f, 0.35f) * size, h = draw(&r, 0.1f, 0.35f) * size;
        p->x0 = draw(&r, 0, size - w);
        p->y0 = draw(&r, 0, size - h);
        p->x1 = p->x0 + w;
        p->y1 = p->y0 + h;
        float grey = draw(&r, 0.1f, 0.9f);
        hsv_to_rgb(draw(&r, 0, 1), draw(&r, 0, 0.2f), grey, p->colour);
    }
    uint64_t noise = dd_random_u64(&r);

    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            float t = 0.5f + 0.5f * ((x - size * 0.5f) * gx + (y - size * 0.5f) * gy) / (0.71f * size);
            float rgb[3];
            for (int c = 0; c < 3; c++) rgb[c] = from[c] + (to[c] - from[c]) * t;
            for (int i = 0; i < object_count; i++) {
                const Object *o = &objects[i];
                float dx = (x + 0.5f - o->cx) / o->radius, dy = (y + 0.5f - o->cy) / o->radius;
                float u = o->cos_a * dx + o->sin_a * dy, v = -o->sin_a * dx + o->cos_a * dy;
                if (!inside(traits.shape, u, v)) continue;
                float shade = (1.1f - 0.25f * (dx + dy)) * texture_at(traits.texture, u, v, o->frequency);
                for (int c = 0; c < 3; c++) rgb[c] = o->colour[c] * shade;
            }
            for (int i = 0; i < patch_count; i++) {
                const Patch *p = &patches[i];
                if (x >= p->x0 && x < p->x1 && y >= p->y0 && y < p->y1)
                    for (int c = 0; c < 3; c++) rgb[c] = p->colour[c];
            }
            /* grain: a hash of the pixel, so JPEGs of these images cost what photos do */
            uint64_t h = noise ^ ((uint64_t)y * 0x9E3779B97F4A7C15ull + (uint64_t)x * 0xC2B2AE3D27D4EB4Full);
            h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ull;
            h ^= h >> 32;
            float jitter = ((float)(h & 0xFFFF) / 65535.0f - 0.5f) * 2.0f * grain;
            uint8_t *px = image->pixels + ((size_t)y * size + x) * 3;
            for (int c = 0; c < 3; c++) px[c] = to_byte(rgb[c] + jitter);
        }
    }
    return 0;
}
