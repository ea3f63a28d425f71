/*
 * teacher_payload.c - image rows of teacher outputs (see teacher_payload.h).
 */
#include "comm/teacher_payload.h"

#include <stdlib.h>
#include <string.h>

#include "comm/bf16.h"

static int masked_in(const uint8_t *mask, int patches) {
    int count = 0;
    for (int p = 0; p < patches; p++) count += mask[p] != 0;
    return count;
}

long payload_offsets(const PayloadShape *s, const uint8_t *masks, int first, long *offsets) {
    long masked_total = 0;
    offsets[first] = 0;
    for (int b = 0; b < s->images; b++) {
        long values = (long)s->global_count * s->dino_dim;
        for (int g = 0; g < s->global_count; g++) {
            int m = masked_in(masks + ((long)g * s->images + b) * s->patches, s->patches);
            values += (long)m * s->ibot_dim;
            masked_total += m;
        }
        offsets[first + b + 1] = offsets[first + b] + values;
    }
    return masked_total;
}

/* First masked row (in the crop-major ibot tensor) of each crop row g*B+b. */
static void masked_row_starts(const PayloadShape *s, const uint8_t *masks, long *starts) {
    long row = 0;
    for (int r = 0; r < s->global_count * s->images; r++) {
        starts[r] = row;
        row += masked_in(masks + (long)r * s->patches, s->patches);
    }
}

/* Walks every image row in order, calling copy(row part, feature row, values). */
static void walk(const PayloadShape *s, const uint8_t *masks, long *starts,
                 void (*copy)(void *ctx, long row_offset, int is_ibot, long feature_row, int values), void *ctx) {
    masked_row_starts(s, masks, starts);
    long offset = 0;
    for (int b = 0; b < s->images; b++) {
        for (int g = 0; g < s->global_count; g++) {
            copy(ctx, offset, 0, (long)g * s->images + b, s->dino_dim);
            offset += s->dino_dim;
        }
        for (int g = 0; g < s->global_count; g++) {
            const long crop_row = (long)g * s->images + b;
            int m = masked_in(masks + crop_row * s->patches, s->patches);
            for (int k = 0; k < m; k++) {
                copy(ctx, offset, 1, starts[crop_row] + k, s->ibot_dim);
                offset += s->ibot_dim;
            }
        }
    }
}

typedef struct PackContext {
    const float *dino, *ibot;
    float *rows;
    const PayloadShape *shape;
} PackContext;

static void pack_one(void *ctx, long row_offset, int is_ibot, long feature_row, int values) {
    PackContext *c = ctx;
    const float *src = is_ibot ? c->ibot + feature_row * c->shape->ibot_dim : c->dino + feature_row * c->shape->dino_dim;
    memcpy(c->rows + row_offset, src, (size_t)values * sizeof(float));
}

typedef struct UnpackContext {
    float *dino, *ibot;
    const uint16_t *rows;
    const PayloadShape *shape;
} UnpackContext;

static void unpack_one(void *ctx, long row_offset, int is_ibot, long feature_row, int values) {
    UnpackContext *c = ctx;
    float *dst = is_ibot ? c->ibot + feature_row * c->shape->ibot_dim : c->dino + feature_row * c->shape->dino_dim;
    bf16_to_float(dst, c->rows + row_offset, values);
}

void payload_pack(const PayloadShape *shape, const uint8_t *masks, const float *dino, const float *ibot,
                  float *rows, long *row_starts) {
    PackContext c = {dino, ibot, rows, shape};
    walk(shape, masks, row_starts, pack_one, &c);
}

void payload_unpack(const PayloadShape *shape, const uint8_t *masks, const uint16_t *rows, float *dino,
                    float *ibot, long *row_starts) {
    UnpackContext c = {dino, ibot, rows, shape};
    walk(shape, masks, row_starts, unpack_one, &c);
}

typedef struct StartsContext {
    int64_t *dino, *ibot;   /* the two parts of starts */
    long masked;            /* ibot rows seen */
} StartsContext;

static void record_start(void *ctx, long row_offset, int is_ibot, long feature_row, int values) {
    StartsContext *c = ctx;
    (is_ibot ? c->ibot : c->dino)[feature_row] = row_offset;
    c->masked += is_ibot;
}

long payload_feature_starts(const PayloadShape *shape, const uint8_t *masks, int64_t *starts, long *row_starts) {
    StartsContext c = {starts, starts + (long)shape->global_count * shape->images, 0};
    walk(shape, masks, row_starts, record_start, &c);
    return c.masked;
}

int payload_starts_alloc(PayloadStarts *starts, const NnBackend *be, long crop_rows, long max_masked, DdError *err) {
    memset(starts, 0, sizeof *starts);
    starts->capacity = crop_rows + (max_masked > 0 ? max_masked : 0);
    const size_t count = (size_t)starts->capacity + 1;
    starts->host = malloc(count * (sizeof(int64_t) + sizeof(long)));
    starts->device = be->alloc(count * sizeof(int64_t));
    if (!starts->host || !starts->device) {
        payload_starts_free(starts, be);
        return dd_fail(err, "payload: out of memory for the offsets of %ld feature rows", (long)count);
    }
    starts->row_starts = (long *)(starts->host + count);
    return 0;
}

void payload_starts_free(PayloadStarts *starts, const NnBackend *be) {
    free(starts->host);
    if (starts->device) be->free(starts->device);
    memset(starts, 0, sizeof *starts);
}

/* The feature starts of a slice, on the host and copied to the backend;
 * the number of dino and ibot rows in *crop_rows, *masked. */
static int upload_feature_starts(const NnBackend *be, const PayloadShape *shape, const uint8_t *masks,
                                 PayloadStarts *starts, long *crop_rows, long *masked, DdError *err) {
    *crop_rows = (long)shape->global_count * shape->images;
    if (*crop_rows > starts->capacity)
        return dd_fail(err, "payload: %ld crops exceed the %ld feature rows the offsets were sized for", *crop_rows,
                       starts->capacity);
    /* counted before the walk writes them, so an overflow is refused, not written */
    *masked = masked_in(masks, (int)(*crop_rows * shape->patches));
    if (*crop_rows + *masked > starts->capacity)
        return dd_fail(err, "payload: %ld crops and %ld masked patches exceed the %ld feature rows the offsets "
                            "were sized for", *crop_rows, *masked, starts->capacity);
    payload_feature_starts(shape, masks, starts->host, starts->row_starts);
    be->copy_to_device(starts->device, starts->host, (size_t)(*crop_rows + *masked) * sizeof(int64_t));
    return 0;
}

int payload_pack_bf16_on(const NnBackend *be, const PayloadShape *shape, const uint8_t *masks, const float *dino,
                         const float *ibot, uint16_t *rows, PayloadStarts *starts, DdError *err) {
    long crop_rows = 0, masked = 0;
    if (upload_feature_starts(be, shape, masks, starts, &crop_rows, &masked, err) != 0) return -1;
    be->scatter_rows_to_bf16(rows, dino, starts->device, (int)crop_rows, shape->dino_dim);
    be->scatter_rows_to_bf16(rows, ibot, starts->device + crop_rows, (int)masked, shape->ibot_dim);
    return 0;
}

int payload_unpack_on(const NnBackend *be, const PayloadShape *shape, const uint8_t *masks, const uint16_t *rows,
                      float *dino, float *ibot, PayloadStarts *starts, DdError *err) {
    long crop_rows = 0, masked = 0;
    if (upload_feature_starts(be, shape, masks, starts, &crop_rows, &masked, err) != 0) return -1;
    be->gather_rows_from_bf16(dino, rows, starts->device, (int)crop_rows, shape->dino_dim);
    be->gather_rows_from_bf16(ibot, rows, starts->device + crop_rows, (int)masked, shape->ibot_dim);
    return 0;
}

double payload_mean_bytes(const IbotMaskConfig *masks, uint64_t seed, int samples, int global_count, int Hp,
                          int Wp, int dino_dim, int ibot_dim) {
    uint8_t *mask = malloc((size_t)Hp * Wp);
    if (!mask || samples < 1) {
        free(mask);
        return 0;
    }
    double values = 0;
    for (int i = 0; i < samples; i++) {
        values += (double)global_count * dino_dim;
        for (int g = 0; g < global_count; g++)
            values += (double)ibot_mask_generate(masks, seed, 0, (uint64_t)i, g, Hp, Wp, mask) * ibot_dim;
    }
    free(mask);
    return values * sizeof(uint16_t) / samples;
}
