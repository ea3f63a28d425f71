/*
 * test_wire_ops.c - the ops that carry the teacher's rows to and from the
 * bf16 wire (scatter_rows_to_bf16, gather_rows_from_bf16) and the payload
 * functions built on them (payload_pack_bf16_on, payload_unpack_on), on
 * every backend, bit for bit against the host code they replace on the
 * device: comm/bf16.c (bf16_from_float, bf16_to_float) and
 * comm/teacher_payload.c (payload_pack, payload_unpack); and the teacher's
 * rows made on the backend (teacher_wire_rows) against its host rows
 * (teacher_rows) rounded by bf16_from_float, from the same forward.
 *
 * Every case runs once per backend: "<case>/cpu" and "<case>/cuda" (the
 * latter SKIPs with the reason without a CUDA device or in a build without
 * CUDA). Registered twice: tests/nn runs the /cpu cases, tests/cuda the
 * /cuda ones.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/bf16.h"
#include "comm/teacher_payload.h"
#include "nn/backend.h"
#include "teacher/teacher.h"
#include "tests/test.h"

/* ---- helpers ------------------------------------------------------------------ */

/* The backend of a case, or NULL after SKIP with the reason. */
static const NnBackend *backend_of(int cuda, char *why, size_t why_size) {
    return cuda ? nn_cuda_fp32_backend(why, why_size) : &nn_cpu_backend;
}

#define REQUIRE_BACKEND(be, cuda)                                                          \
    char why_[512] = "";                                                                   \
    const NnBackend *be = backend_of(cuda, why_, sizeof why_);                             \
    if (!be) SKIP("%s", why_)

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

/* splitmix64 */
static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static float float_of_bits(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Floats that exercise the rounding: zeros, infinities, NaNs (quiet,
 * signalling, negative), the largest float (rounds up to infinity), ties
 * to even from both sides, subnormals, then random bit patterns. */
static void tricky_floats(float *values, long n) {
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffc00001u, 0x7fffffffu,
        0x7f7fffffu, 0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0x00000001u, 0x00008000u, 0x00018000u,
        0x807fffffu, 0x3f800000u, 0xbf7fffffu, 0x7f7f8000u,
    };
    const long count = (long)(sizeof special / sizeof special[0]);
    for (long i = 0; i < n; i++)
        values[i] = float_of_bits(i < count ? special[i] : (uint32_t)next_u64());
}

/* Row n of N rows of C values starts at offset starts[n] of a flat array
 * (a gap of n % 3 values before each, rows in reverse order to show that
 * starts, not n, place them); returns the array's length. */
static long gapped_starts(int64_t *starts, int N, int C) {
    long offset = 0;
    for (int n = N - 1; n >= 0; n--) {
        offset += n % 3;
        starts[n] = offset;
        offset += C;
    }
    return offset;
}

static void *device_copy(const NnBackend *be, const void *host, size_t bytes) {
    void *device = be->alloc(bytes);
    if (!device) {
        fprintf(stderr, "out of %s memory for %zu bytes\n", be->name, bytes);
        exit(2);
    }
    be->copy_to_device(device, host, bytes);
    return device;
}

/* ---- the ops -------------------------------------------------------------------- */

enum { N = 37, C = 29, SENTINEL = 0xabcd };

static void check_scatter_rows_to_bf16(int cuda) {
    REQUIRE_BACKEND(be, cuda);
    int64_t starts[N];
    const long length = gapped_starts(starts, N, C);
    float *inp = malloc((size_t)N * C * sizeof(float));                 /* [N, C] */
    uint16_t *expected = malloc((size_t)length * sizeof(uint16_t));     /* [length] */
    uint16_t *found = malloc((size_t)length * sizeof(uint16_t));
    tricky_floats(inp, (long)N * C);
    for (long i = 0; i < length; i++) expected[i] = SENTINEL;   /* the gaps stay as they were */
    for (int n = 0; n < N; n++) bf16_from_float(expected + starts[n], inp + (long)n * C, C);

    uint16_t *d_out = device_copy(be, expected, (size_t)length * sizeof(uint16_t));
    for (int n = 0; n < N; n++) be->zero(d_out + starts[n], (size_t)C * sizeof(uint16_t));   /* rows rewritten */
    float *d_inp = device_copy(be, inp, (size_t)N * C * sizeof(float));
    int64_t *d_starts = device_copy(be, starts, sizeof starts);
    be->scatter_rows_to_bf16(d_out, d_inp, d_starts, N, C);
    be->copy_to_host(found, d_out, (size_t)length * sizeof(uint16_t));
    long first = -1;
    for (long i = 0; i < length && first < 0; i++)
        if (found[i] != expected[i]) first = i;
    CHECK(first < 0, "value %ld of the wire: 0x%04x, expected 0x%04x (bf16_from_float)", first,
          first < 0 ? 0 : found[first], first < 0 ? 0 : expected[first]);
    be->free(d_out);
    be->free(d_inp);
    be->free(d_starts);
    free(inp);
    free(expected);
    free(found);
}

/* Every one of the 65536 bf16 bit patterns, gathered back to fp32. */
static void check_gather_rows_from_bf16(int cuda) {
    REQUIRE_BACKEND(be, cuda);
    enum { PATTERNS = 1 << 16, ROW = 256, ROWS = PATTERNS / ROW };
    uint16_t *wire = malloc((size_t)(PATTERNS + ROWS) * sizeof(uint16_t));   /* a gap of one before each row */
    int64_t starts[ROWS];
    for (int n = 0; n < ROWS; n++) {
        starts[n] = (int64_t)n * (ROW + 1) + 1;
        wire[starts[n] - 1] = SENTINEL;
        for (int c = 0; c < ROW; c++) wire[starts[n] + c] = (uint16_t)(n * ROW + c);
    }
    float *expected = malloc((size_t)PATTERNS * sizeof(float)), *found = malloc((size_t)PATTERNS * sizeof(float));
    for (int n = 0; n < ROWS; n++) bf16_to_float(expected + (long)n * ROW, wire + starts[n], ROW);
    uint16_t *d_wire = device_copy(be, wire, (size_t)(PATTERNS + ROWS) * sizeof(uint16_t));
    int64_t *d_starts = device_copy(be, starts, sizeof starts);
    float *d_out = be->alloc((size_t)PATTERNS * sizeof(float));
    be->gather_rows_from_bf16(d_out, d_wire, d_starts, ROWS, ROW);
    be->copy_to_host(found, d_out, (size_t)PATTERNS * sizeof(float));
    CHECK(memcmp(found, expected, (size_t)PATTERNS * sizeof(float)) == 0,
          "gather_rows_from_bf16 differs from bf16_to_float in some bit pattern");
    be->free(d_wire);
    be->free(d_starts);
    be->free(d_out);
    free(wire);
    free(expected);
    free(found);
}

/* ---- the payload on a backend ----------------------------------------------------- */

/* A slice of 3 images, 2 global crops of 6 patches; crop row 1 has no
 * masked patch, crop row 4 all of them. */
static const PayloadShape shape = {.images = 3, .global_count = 2, .patches = 6, .dino_dim = 5, .ibot_dim = 4};
enum { CROP_ROWS = 6, MASK_VALUES = CROP_ROWS * 6 };

static int draw_masks(uint8_t *masks) {
    int masked = 0;
    for (int i = 0; i < MASK_VALUES; i++) {
        const int row = i / shape.patches;
        masks[i] = row == 4 || (row != 1 && next_u64() % 3 == 0);
        masked += masks[i];
    }
    return masked;
}

static long values_of(const uint8_t *masks, long *offsets) {
    payload_offsets(&shape, masks, 0, offsets);
    return offsets[shape.images];
}

static void check_payload_pack_bf16_on(int cuda) {
    REQUIRE_BACKEND(be, cuda);
    uint8_t masks[MASK_VALUES];
    const int masked = draw_masks(masks);
    long offsets[4], row_starts[CROP_ROWS];
    const long values = values_of(masks, offsets);
    const long dino_count = (long)CROP_ROWS * shape.dino_dim, ibot_count = (long)masked * shape.ibot_dim;
    float *dino = malloc((size_t)dino_count * sizeof(float)), *ibot = malloc((size_t)ibot_count * sizeof(float));
    float *rows = malloc((size_t)values * sizeof(float));
    uint16_t *expected = malloc((size_t)values * sizeof(uint16_t)), *found = malloc((size_t)values * sizeof(uint16_t));
    tricky_floats(dino, dino_count);
    tricky_floats(ibot, ibot_count);
    payload_pack(&shape, masks, dino, ibot, rows, row_starts);
    bf16_from_float(expected, rows, values);

    PayloadStarts starts;
    DdError err;
    if (payload_starts_alloc(&starts, be, CROP_ROWS, masked, &err) != 0) {
        CHECK(0, "payload_starts_alloc: %s", err.message);
        return;
    }
    float *d_dino = device_copy(be, dino, (size_t)dino_count * sizeof(float));
    float *d_ibot = device_copy(be, ibot, (size_t)ibot_count * sizeof(float));
    uint16_t *d_rows = be->alloc((size_t)values * sizeof(uint16_t));
    CHECK(payload_pack_bf16_on(be, &shape, masks, d_dino, d_ibot, d_rows, &starts, &err) == 0, "%s", err.message);
    be->copy_to_host(found, d_rows, (size_t)values * sizeof(uint16_t));
    CHECK(memcmp(found, expected, (size_t)values * sizeof(uint16_t)) == 0,
          "payload_pack_bf16_on differs from payload_pack + bf16_from_float");

    /* offsets sized for fewer masked patches: a clear error, nothing written */
    PayloadStarts small;
    CHECK(payload_starts_alloc(&small, be, CROP_ROWS, masked - 1, &err) == 0, "%s", err.message);
    CHECK(payload_pack_bf16_on(be, &shape, masks, d_dino, d_ibot, d_rows, &small, &err) != 0,
          "offsets for too few feature rows were accepted");
    CHECK(strstr(err.message, "masked patches exceed") != NULL, "message: %s", err.message);
    payload_starts_free(&small, be);

    payload_starts_free(&starts, be);
    be->free(d_dino);
    be->free(d_ibot);
    be->free(d_rows);
    free(dino);
    free(ibot);
    free(rows);
    free(expected);
    free(found);
}

static void check_payload_unpack_on(int cuda) {
    REQUIRE_BACKEND(be, cuda);
    uint8_t masks[MASK_VALUES];
    const int masked = draw_masks(masks);
    long offsets[4], row_starts[CROP_ROWS];
    const long values = values_of(masks, offsets);
    const long dino_count = (long)CROP_ROWS * shape.dino_dim, ibot_count = (long)masked * shape.ibot_dim;
    uint16_t *wire = malloc((size_t)values * sizeof(uint16_t));
    for (long i = 0; i < values; i++) wire[i] = (uint16_t)next_u64();
    const size_t floats = (size_t)(dino_count + ibot_count);
    float *expected = malloc(floats * sizeof(float)), *found = malloc(floats * sizeof(float));
    payload_unpack(&shape, masks, wire, expected, expected + dino_count, row_starts);

    PayloadStarts starts;
    DdError err;
    if (payload_starts_alloc(&starts, be, CROP_ROWS, masked, &err) != 0) {
        CHECK(0, "payload_starts_alloc: %s", err.message);
        return;
    }
    uint16_t *d_wire = device_copy(be, wire, (size_t)values * sizeof(uint16_t));
    float *d_features = be->alloc(floats * sizeof(float));   /* dino[G*B, Kd] then ibot[M, Ki] */
    CHECK(payload_unpack_on(be, &shape, masks, d_wire, d_features, d_features + dino_count, &starts, &err) == 0,
          "%s", err.message);
    be->copy_to_host(found, d_features, floats * sizeof(float));
    CHECK(memcmp(found, expected, floats * sizeof(float)) == 0, "payload_unpack_on differs from payload_unpack");
    payload_starts_free(&starts, be);
    be->free(d_wire);
    be->free(d_features);
    free(wire);
    free(expected);
    free(found);
}

/* ---- the teacher's rows ---------------------------------------------------------- */

/* The tiny teacher on 3 images of 2 global crops of 32 px (4 x 4 patches),
 * about a third of the patches masked: one forward, then its rows twice. */
static void check_teacher_wire_rows(int cuda) {
    REQUIRE_BACKEND(be, cuda);
    enum { IMAGES = 3, GLOBALS = 2, SIZE = 32, PATCHES = 16, CROPS = GLOBALS * IMAGES };
    ViTConfig cfg;
    Teacher teacher;
    DdError err;
    if (vit_config_load(&cfg, "configs/models/tiny_teacher.yaml", &err) != 0 ||
        teacher_create(&teacher, &cfg, NULL, 5, IMAGES, GLOBALS, SIZE, CROPS * PATCHES, be, &err) != 0) {
        CHECK(0, "%s", err.message);
        return;
    }
    const long pixels = (long)CROPS * cfg.in_channels * SIZE * SIZE;
    float *crops = malloc((size_t)pixels * sizeof(float));   /* [G*B, C, S, S] */
    for (long i = 0; i < pixels; i++) crops[i] = (float)((next_u64() >> 40) * 0x1p-24) * 2.0f - 1.0f;
    uint8_t masks[CROPS * PATCHES];
    for (int i = 0; i < CROPS * PATCHES; i++) masks[i] = next_u64() % 3 == 0;
    const PayloadShape shape = {IMAGES, GLOBALS, PATCHES, cfg.dino_head.bottleneck, cfg.ibot_head.bottleneck};
    long offsets[IMAGES + 1];
    payload_offsets(&shape, masks, 0, offsets);
    const long values = offsets[IMAGES];
    float *rows = malloc((size_t)values * sizeof(float));
    uint16_t *expected = malloc((size_t)values * sizeof(uint16_t)), *found = malloc((size_t)values * sizeof(uint16_t));
    uint16_t *d_wire = be->alloc((size_t)values * sizeof(uint16_t));
    CHECK(teacher_forward(&teacher, be, crops, masks, IMAGES, &err) == 0, "%s", err.message);
    teacher_rows(&teacher, be, masks, rows);
    bf16_from_float(expected, rows, values);
    CHECK(teacher_wire_rows(&teacher, be, masks, d_wire, &err) == 0, "%s", err.message);
    be->copy_to_host(found, d_wire, (size_t)values * sizeof(uint16_t));
    CHECK(memcmp(found, expected, (size_t)values * sizeof(uint16_t)) == 0,
          "teacher_wire_rows differs from teacher_rows + bf16_from_float");
    be->free(d_wire);
    free(crops);
    free(rows);
    free(expected);
    free(found);
    teacher_free(&teacher, be);
}

/* ---- cases: each check on each backend --------------------------------------------- */

#define WIRE_CASES(X)                                                                      \
    X(scatter_rows_to_bf16)                                                                \
    X(gather_rows_from_bf16)                                                               \
    X(payload_pack_bf16_on)                                                                \
    X(payload_unpack_on)                                                                   \
    X(teacher_wire_rows)

#define DEFINE_CASES(name)                                                                 \
    static void name##_on_cpu(void) { check_##name(0); }                                   \
    static void name##_on_cuda(void) { check_##name(1); }
WIRE_CASES(DEFINE_CASES)

#define LIST_CASES(name) {#name "/cpu", name##_on_cpu}, {#name "/cuda", name##_on_cuda},

int main(int argc, char **argv) {
    static const TestCase cases[] = {WIRE_CASES(LIST_CASES)};
    return test_main(cases, (int)(sizeof cases / sizeof cases[0]), argc, argv);
}
