/*
 * test_safetensors.c - the safetensors reader and writer: round trips in
 * F32, F16 and BF16; every conversion against torch's (dtypes.safetensors,
 * written by gen_weights.py) and over all 65,536 bit patterns; sharded
 * indexes and model folders; and malformed files, each of which must fail
 * with a message naming the file and what is wrong, never crash (run under
 * -Db_sanitize=address,undefined too). The JSON reader on its own at the end.
 * Run from the source root (meson sets workdir).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/half_float.h"
#include "nn/json.h"
#include "nn/safetensors.h"
#include "nn/safetensors_set.h"
#include "tests/test.h"
#include "tests/weights/scratch.h"

/* ---- round trips ----------------------------------------------------------------------- */

static int same_bits(float a, float b) {
    return memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b));
}

static void f32_round_trip_keeps_every_bit_and_shape(void) {
    float matrix[6] = {1.5f, -0.0f, 3e-39f /* subnormal */, INFINITY, 1e30f, -7.25f};
    float scalar = 42.0f, cube[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const NamedTensor tensors[] = {
        {"b.matrix", {2, {2, 3}}, matrix},
        {"a.scalar", {0, {0}}, &scalar},
        {"c.empty", {2, {0, 4}}, NULL},
        {"d.cube \"quoted\" \\ name", {4, {2, 1, 2, 2}}, cube},
    };
    const char *path = scratch_path("round_trip.safetensors");
    DdError err = {{0}};
    CHECK(safetensors_write(path, tensors, 4, SAFETENSORS_F32, &err) == 0, "%.900s", err.message);
    SafetensorsFile file;
    CHECK(safetensors_open(&file, path, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return;
    CHECK(file.header.count == 4, "4 tensors, found %d", file.header.count);
    CHECK(file.header.data_start % 8 == 0, "the header is padded to 8 bytes: data at %llu",
          (unsigned long long)file.header.data_start);
    CHECK(strcmp(file.header.tensors[0].name, "a.scalar") == 0, "sorted by name: %s", file.header.tensors[0].name);
    for (int i = 0; i < 4; i++) {
        const SafetensorsTensor *t = safetensors_find(&file, tensors[i].name);
        CHECK(t && t->dtype == SAFETENSORS_F32 && tensor_shape_equal(&t->shape, &tensors[i].shape),
              "tensor %s found with its shape", tensors[i].name);
        if (!t) continue;
        float out[8] = {0};
        CHECK(safetensors_read(&file, tensors[i].name, &tensors[i].shape, out, &err) == 0, "%.900s", err.message);
        for (int64_t j = 0; j < tensor_shape_count(&tensors[i].shape); j++)
            CHECK(same_bits(out[j], tensors[i].data[j]), "%s[%lld]: %g != %g", tensors[i].name, (long long)j,
                  out[j], tensors[i].data[j]);
    }
    TensorShape wrong = {2, {3, 2}};
    float out[6];
    CHECK(safetensors_read(&file, "b.matrix", &wrong, out, &err) != 0 && strstr(err.message, "expected shape [3, 2], found [2, 3]"),
          "a shape mismatch names both shapes: %.900s", err.message);
    CHECK(safetensors_read(&file, "missing.weight", &wrong, out, &err) != 0 &&
          strstr(err.message, "'missing.weight' of shape [3, 2] is missing") && strstr(err.message, path),
          "a missing tensor is named with the file: %.900s", err.message);
    safetensors_close(&file);
}

static void f16_and_bf16_round_trips_round_to_nearest_even(void) {
    enum { N = 7 };
    const float values[N] = {1.0f, -2.5f, 0.1f, 65504.0f, 1e-7f, 1.0f + 0x1p-11f /* F16 tie */, 1.0f + 0x1p-8f /* BF16 tie */};
    const NamedTensor tensor = {"x", {1, {N}}, values};
    const SafetensorsDtype kinds[2] = {SAFETENSORS_F16, SAFETENSORS_BF16};
    for (int k = 0; k < 2; k++) {
        const char *path = scratch_path(k ? "bf16.safetensors" : "f16.safetensors");
        DdError err = {{0}};
        SafetensorsFile file;
        CHECK(safetensors_write(path, &tensor, 1, kinds[k], &err) == 0, "%.900s", err.message);
        CHECK(safetensors_open(&file, path, &err) == 0, "%.900s", err.message);
        if (test_state.failed_checks) return;
        CHECK(file.header.tensors[0].dtype == kinds[k], "dtype %s", safetensors_dtype_name(kinds[k]));
        float out[N];
        CHECK(safetensors_read(&file, "x", &tensor.shape, out, &err) == 0, "%.900s", err.message);
        for (int i = 0; i < N; i++) {
            float expected = k ? bfloat16_to_float(float_to_bfloat16(values[i])) : half_to_float(float_to_half(values[i]));
            CHECK(same_bits(out[i], expected), "%s[%d]: %g read back as %g, expected %g",
                  safetensors_dtype_name(kinds[k]), i, values[i], out[i], expected);
        }
        CHECK(out[0] == 1.0f && out[1] == -2.5f, "exact values stay exact");
        CHECK(k ? out[6] == 1.0f : out[5] == 1.0f, "a tie rounds to the even neighbour");
        safetensors_close(&file);
    }
}

/* Every bit pattern of both 16-bit formats goes to fp32 and back unchanged
 * (NaNs stay NaN). */
static void every_16_bit_pattern_survives_a_round_trip(void) {
    int bad_half = 0, bad_bf16 = 0;
    for (uint32_t bits = 0; bits <= 0xffff; bits++) {
        float h = half_to_float((uint16_t)bits), b = bfloat16_to_float((uint16_t)bits);
        if (isnan(h) ? !isnan(half_to_float(float_to_half(h))) : float_to_half(h) != bits) bad_half++;
        if (isnan(b) ? !isnan(bfloat16_to_float(float_to_bfloat16(b))) : float_to_bfloat16(b) != bits) bad_bf16++;
    }
    CHECK(bad_half == 0 && bad_bf16 == 0, "%d F16 and %d BF16 patterns changed", bad_half, bad_bf16);
    CHECK(half_to_float(0x0001) == 0x1p-24f && half_to_float(0x7bff) == 65504.0f && half_to_float(0xfc00) == -INFINITY,
          "F16 subnormal, largest and -inf");
}

/* The same values converted by torch (gen_weights.py) and by us. */
static void conversions_agree_with_torch(void) {
    DdError err = {{0}};
    SafetensorsFile file;
    CHECK(safetensors_open(&file, "tests/weights/dtypes.safetensors", &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return;
    const SafetensorsTensor *f32 = safetensors_find(&file, "f32");
    CHECK(f32 != NULL, "f32 present");
    if (!f32) return;
    int n = (int)tensor_shape_count(&f32->shape);
    float values[64], got[64], expected[64];
    CHECK(n <= 64, "small vector");
    if (n > 64) return;
    CHECK(safetensors_read(&file, "f32", &f32->shape, values, &err) == 0, "%.900s", err.message);
    const struct { const char *stored, *as_f32; SafetensorsDtype dtype; } kinds[] = {
        {"f16", "f16_as_f32", SAFETENSORS_F16}, {"bf16", "bf16_as_f32", SAFETENSORS_BF16},
    };
    for (int k = 0; k < 2; k++) {
        const SafetensorsTensor *stored = safetensors_find(&file, kinds[k].stored);
        CHECK(stored && stored->dtype == kinds[k].dtype, "%s has dtype %s", kinds[k].stored,
              safetensors_dtype_name(kinds[k].dtype));
        if (!stored) continue;
        CHECK(safetensors_read(&file, kinds[k].stored, &f32->shape, got, &err) == 0, "%.900s", err.message);
        CHECK(safetensors_read(&file, kinds[k].as_f32, &f32->shape, expected, &err) == 0, "%.900s", err.message);
        const uint8_t *raw = file.map + file.header.data_start + stored->begin;
        for (int i = 0; i < n; i++) {
            uint16_t torch_bits, ours = k ? float_to_bfloat16(values[i]) : float_to_half(values[i]);
            memcpy(&torch_bits, raw + 2 * i, 2);
            CHECK(same_bits(got[i], expected[i]), "%s[%d] = %g decodes to %g, torch says %g", kinds[k].stored, i,
                  values[i], got[i], expected[i]);
            CHECK(ours == torch_bits || (isnan(values[i]) && isnan(got[i])), "%s[%d] = %g encodes to 0x%04x, torch to 0x%04x",
                  kinds[k].stored, i, values[i], ours, torch_bits);
        }
    }
    CHECK(safetensors_read(&file, "f64", &f32->shape, got, &err) == 0, "%.900s", err.message);
    for (int i = 0; i < n; i++) CHECK(same_bits(got[i], values[i]), "f64[%d] %g != %g", i, got[i], values[i]);
    safetensors_close(&file);
}

/* ---- malformed files -------------------------------------------------------------------- */

typedef struct BadFile {
    const char *what;
    const char *header;
    uint64_t header_length;        /* UINT64_MAX: strlen(header) */
    size_t data_size;
    const char *message;           /* must appear in the error */
} BadFile;

#define ENTRY(dtype, shape, b, e) "{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"
#define ALL UINT64_MAX

static const BadFile bad_files[] = {
    {"zero-length header", "", 0, 0, "expected a header of at least 2 bytes ('{}'), found 0"},
    {"header beyond the end", "{}", 1000, 0, "the header length says 1000 bytes, but only 2 bytes follow it"},
    {"100 MB header", "{}", 100ull << 20, 0, "expected a header of at most 100000000 bytes, found a header length of 104857600"},
    {"2^64-1 header", "{}", UINT64_MAX - 1, 0, "expected a header of at most 100000000 bytes"},
    {"tiny header", "{", 1, 0, "at least 2 bytes"},
    {"overlapping offsets", "{\"a\":" ENTRY("F32", "[2]", 0, 8) ",\"b\":" ENTRY("F32", "[2]", 4, 12) "}", ALL, 12,
     "tensor 'b': data_offsets [4, 12] overlap those of tensor 'a'"},
    {"same offsets twice", "{\"a\":" ENTRY("F32", "[2]", 0, 8) ",\"b\":" ENTRY("F32", "[2]", 0, 8) "}", ALL, 8, "overlap"},
    {"a gap", "{\"a\":" ENTRY("F32", "[2]", 0, 8) ",\"b\":" ENTRY("F32", "[2]", 12, 20) "}", ALL, 20, "(a gap)"},
    {"trailing bytes", "{\"a\":" ENTRY("F32", "[2]", 0, 8) "}", ALL, 12, "trailing bytes"},
    {"past the end (truncated)", "{\"a\":" ENTRY("F32", "[4]", 0, 16) "}", ALL, 10,
     "tensor 'a': data_offsets [0, 16] reach past the end of the data section (10 bytes): the file is truncated"},
    {"unknown dtype", "{\"a\":" ENTRY("Q4_K", "[2]", 0, 8) "}", ALL, 8, "tensor 'a': expected a dtype of BOOL, U8"},
    {"lower-case dtype", "{\"a\":" ENTRY("f32", "[2]", 0, 8) "}", ALL, 8, "found 'f32'"},
    {"size against shape", "{\"a\":" ENTRY("F32", "[3]", 0, 8) "}", ALL, 8, "tensor 'a': shape [3] of F32 needs"},
    {"shape overflow", "{\"a\":" ENTRY("F32", "[4294967296,4294967296]", 0, 8) "}", ALL, 8, "more than 2^64"},
    {"dim past int64", "{\"a\":" ENTRY("F32", "[9223372036854775808]", 0, 8) "}", ALL, 8, "at most 9223372036854775807"},
    {"negative dim", "{\"a\":" ENTRY("F32", "[-2]", 0, 8) "}", ALL, 8, "expected a non-negative integer, found -2"},
    {"fractional dim", "{\"a\":" ENTRY("F32", "[2.0]", 0, 8) "}", ALL, 8, "non-negative integer, found 2.0"},
    {"nine dims", "{\"a\":" ENTRY("F32", "[1,1,1,1,1,1,1,1,2]", 0, 8) "}", ALL, 8, "at most 8 entries in shape"},
    {"reversed offsets", "{\"a\":" ENTRY("F32", "[0]", 8, 0) "}", ALL, 8, "begin <= end"},
    {"three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4,8]}}", ALL, 8, "at most 2 entries"},
    {"offset past uint64", "{\"a\":" ENTRY("F32", "[]", 0, 18446744073709551616) "}", ALL, 4, "at most 18446744073709551615"},
    {"no dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", ALL, 8, "found no 'dtype'"},
    {"dtype twice", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", ALL, 8, "'dtype' once"},
    {"duplicate name", "{\"a\":" ENTRY("F32", "[1]", 0, 4) ",\"a\":" ENTRY("F32", "[1]", 4, 8) "}", ALL, 8, "found 'a' twice"},
    {"empty name", "{\"\":" ENTRY("F32", "[1]", 0, 4) "}", ALL, 4, "found an empty one"},
    {"not an object", "[1,2]", ALL, 0, "expected an object, found '['"},
    {"unterminated", "{\"a\":" ENTRY("F32", "[1]", 0, 4), ALL, 4, "expected ',' or '}', found the end of the text"},
    {"trailing comma", "{\"a\":" ENTRY("F32", "[1]", 0, 4) ",}", ALL, 4, "expected a key"},
    {"garbage after", "{} x", ALL, 0, "expected the end of the text, found 'x'"},
    {"metadata not strings", "{\"__metadata__\":{\"format\":1}}", ALL, 0, "expected a string value in __metadata__"},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", ALL, 0, "__metadata__ once"},
    {"invalid UTF-8", "{\"a\xff\":" ENTRY("F32", "[1]", 0, 4) "}", ALL, 4, "expected valid UTF-8"},
    {"overlong UTF-8", "{\"a\xc0\xaf\":" ENTRY("F32", "[1]", 0, 4) "}", ALL, 4, "expected valid UTF-8"},
    {"NUL escape", "{\"a\\u0000b\":" ENTRY("F32", "[1]", 0, 4) "}", ALL, 4, "no NUL character"},
    {"lone surrogate", "{\"a\\udc00\":" ENTRY("F32", "[1]", 0, 4) "}", ALL, 4, "high surrogate before a low one"},
    {"control character", "{\"a\tb\":" ENTRY("F32", "[1]", 0, 4) "}", ALL, 4, "no control character"},
    {"leading zero", "{\"a\":" ENTRY("F32", "[01]", 0, 4) "}", ALL, 4, "no leading zero"},
    {"NaN literal", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":NaN}}", ALL, 4, "expected a value"},
};

static void each_malformed_file_fails_with_a_clear_message(void) {
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        const BadFile *bad = &bad_files[i];
        const char *path = scratch_path("bad.safetensors");
        CHECK(write_safetensors_raw(path, bad->header, bad->header_length, bad->data_size) == 0, "write %s", bad->what);
        if (bad->header_length != ALL && bad->header_length > (1u << 20)) {   /* the real size: a sparse file */
            CHECK(truncate(path, (off_t)(8 + bad->header_length + 64)) == 0 || bad->header_length > (1ull << 40),
                  "extend %s", bad->what);
        }
        SafetensorsFile file;
        DdError err = {{0}};
        int status = safetensors_open(&file, path, &err);
        CHECK(status != 0, "%s: expected a failure, the file opened", bad->what);
        if (status == 0) {
            safetensors_close(&file);
            continue;
        }
        CHECK(strstr(err.message, bad->message) != NULL, "%s: expected a message with \"%s\", found \"%.700s\"", bad->what,
              bad->message, err.message);
        CHECK(strncmp(err.message, path, strlen(path)) == 0, "%s: the message starts with the file: %.700s", bad->what,
              err.message);
    }
}

/* A nested value in an ignored key still has a depth limit. */
static void deep_nesting_is_refused(void) {
    char header[512] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":";
    size_t n = strlen(header);
    for (int i = 0; i < 100; i++) header[n++] = '[';
    header[n] = '\0';
    const char *path = scratch_path("deep.safetensors");
    CHECK(write_safetensors_raw(path, header, ALL, 4) == 0, "write");
    SafetensorsFile file;
    DdError err = {{0}};
    CHECK(safetensors_open(&file, path, &err) != 0 && strstr(err.message, "at most 64 nested"), "%.900s", err.message);
}

static void truncated_writer_output_is_refused(void) {
    float values[64];
    for (int i = 0; i < 64; i++) values[i] = (float)i;
    const NamedTensor tensors[2] = {{"first", {1, {32}}, values}, {"second", {2, {4, 8}}, values + 32}};
    const char *path = scratch_path("to_truncate.safetensors");
    DdError err = {{0}};
    CHECK(safetensors_write(path, tensors, 2, SAFETENSORS_F32, &err) == 0, "%.900s", err.message);
    struct stat info;
    CHECK(stat(path, &info) == 0, "stat");
    const off_t cuts[] = {info.st_size - 1, info.st_size - 128, 40, 7, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CHECK(truncate(path, cuts[i]) == 0, "truncate to %ld", (long)cuts[i]);
        SafetensorsFile file;
        int status = safetensors_open(&file, path, &err);
        CHECK(status != 0 && strstr(err.message, "truncated"), "cut to %ld bytes: %.900s", (long)cuts[i],
              status ? err.message : "opened");
        if (status == 0) safetensors_close(&file);
    }
}

static void a_folder_or_missing_file_is_refused(void) {
    SafetensorsFile file;
    DdError err = {{0}};
    CHECK(safetensors_open(&file, "tests/weights", &err) != 0 && strstr(err.message, "a folder"), "%.900s", err.message);
    CHECK(safetensors_open(&file, "tests/weights/no_such.safetensors", &err) != 0 &&
          strstr(err.message, "No such file"), "%.900s", err.message);
}

static void integer_dtypes_parse_but_do_not_read_as_floats(void) {
    const char *path = scratch_path("ints.safetensors");
    CHECK(write_safetensors_raw(path, "{\"ids\":" ENTRY("I64", "[2]", 0, 16) "}", ALL, 16) == 0, "write");
    SafetensorsFile file;
    DdError err = {{0}};
    CHECK(safetensors_open(&file, path, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return;
    float out[2];
    TensorShape shape = {1, {2}};
    CHECK(safetensors_read(&file, "ids", &shape, out, &err) != 0 && strstr(err.message, "tensor 'ids'") &&
          strstr(err.message, "found I64"), "%.900s", err.message);
    safetensors_close(&file);
}

static void the_writer_refuses_bad_input(void) {
    float x = 1.0f;
    DdError err = {{0}};
    const NamedTensor twice[2] = {{"w", {1, {1}}, &x}, {"w", {1, {1}}, &x}};
    CHECK(safetensors_write(scratch_path("w.safetensors"), twice, 2, SAFETENSORS_F32, &err) != 0 &&
          strstr(err.message, "'w' twice"), "%.900s", err.message);
    const NamedTensor unnamed = {"", {1, {1}}, &x};
    CHECK(safetensors_write(scratch_path("w.safetensors"), &unnamed, 1, SAFETENSORS_F32, &err) != 0, "empty name");
    CHECK(safetensors_write(scratch_path("w.safetensors"), &twice[0], 1, SAFETENSORS_I32, &err) != 0 &&
          strstr(err.message, "found I32"), "%.900s", err.message);
    CHECK(safetensors_write("/nonexistent/folder/w.safetensors", &twice[0], 1, SAFETENSORS_F32, &err) != 0 &&
          strstr(err.message, "/nonexistent/folder/w.safetensors"), "%.900s", err.message);
    CHECK(access(scratch_path("w.safetensors"), F_OK) != 0, "nothing was left behind");
}

/* ---- sharded sets --------------------------------------------------------------------- */

/* Two shards in folder `name`, and an index with the given text. */
static const char *write_shards(const char *name, const char *index_text) {
    static float a[4] = {1, 2, 3, 4}, b[2] = {5, 6}, c[3] = {7, 8, 9};
    const char *folder = scratch_path(name);
    mkdir(folder, 0777);
    char path[1200];
    DdError err = {{0}};
    const NamedTensor first[2] = {{"layer.a", {2, {2, 2}}, a}, {"layer.b", {1, {2}}, b}};
    const NamedTensor second[1] = {{"layer.c", {1, {3}}, c}};
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", folder);
    CHECK(safetensors_write(path, first, 2, SAFETENSORS_BF16, &err) == 0, "%.900s", err.message);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", folder);
    CHECK(safetensors_write(path, second, 1, SAFETENSORS_F32, &err) == 0, "%.900s", err.message);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", folder);
    CHECK(write_bytes(path, index_text, strlen(index_text)) == 0, "index");
    return folder;
}

static const char good_index[] =
    "{\"metadata\": {\"total_size\": 24, \"note\": [1, {\"x\": null}]},\n"
    " \"weight_map\": {\"layer.a\": \"model-00001-of-00002.safetensors\",\n"
    "                \"layer.c\": \"model-00002-of-00002.safetensors\",\n"
    "                \"layer.b\": \"model-00001-of-00002.safetensors\"}}\n";

static void a_sharded_index_reads_as_one_set(void) {
    const char *folder = write_shards("sharded", good_index);
    char index_path[1200];
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", folder);
    const char *paths[2] = {folder, index_path};
    for (int p = 0; p < 2; p++) {
        SafetensorsSet set;
        DdError err = {{0}};
        CHECK(safetensors_set_open(&set, paths[p], &err) == 0, "%.900s", err.message);
        if (test_state.failed_checks) return;
        CHECK(set.count == 3 && set.file_count == 2, "3 tensors in 2 files, found %d in %d", set.count, set.file_count);
        float out[4];
        TensorShape shape_a = {2, {2, 2}}, shape_c = {1, {3}};
        CHECK(safetensors_set_read(&set, "layer.a", &shape_a, out, &err) == 0 && out[3] == 4.0f, "%.900s", err.message);
        CHECK(safetensors_set_read(&set, "layer.c", &shape_c, out, &err) == 0 && out[2] == 9.0f, "%.900s", err.message);
        CHECK(safetensors_set_read(&set, "layer.d", &shape_c, out, &err) != 0 && strstr(err.message, "'layer.d'") &&
              strstr(err.message, "missing"), "%.900s", err.message);
        safetensors_set_close(&set);
    }
}

static void broken_indexes_are_refused(void) {
    const struct { const char *what, *index, *message; } cases[] = {
        {"missing shard", "{\"weight_map\":{\"layer.a\":\"model-00003-of-00003.safetensors\"}}", "No such file"},
        {"tensor not in its shard", "{\"weight_map\":{\"layer.c\":\"model-00001-of-00002.safetensors\"}}",
         "tensor 'layer.c' is listed in shard 'model-00001-of-00002.safetensors', but that file does not hold it"},
        {"path traversal", "{\"weight_map\":{\"layer.a\":\"../model-00001-of-00002.safetensors\"}}",
         "expected a shard file name in the index's folder"},
        {"no weight_map", "{\"metadata\":{}}", "expected a weight_map"},
        {"tensor twice", "{\"weight_map\":{\"layer.a\":\"model-00001-of-00002.safetensors\","
                         "\"layer.a\":\"model-00001-of-00002.safetensors\"}}", "'layer.a' twice"},
        {"not JSON", "{\"weight_map\":{\"layer.a\":}", "expected a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *folder = write_shards("broken", cases[i].index);
        SafetensorsSet set;
        DdError err = {{0}};
        int status = safetensors_set_open(&set, folder, &err);
        CHECK(status != 0 && strstr(err.message, cases[i].message) && strstr(err.message, "model.safetensors.index.json"),
              "%s: expected \"%s\", found \"%.700s\"", cases[i].what, cases[i].message, status ? err.message : "opened");
        if (status == 0) safetensors_set_close(&set);
    }
    SafetensorsSet set;
    DdError err = {{0}};
    CHECK(safetensors_set_open(&set, "tests/fuzz", &err) != 0 && strstr(err.message, "found neither"), "%.900s",
          err.message);
}

/* ---- the JSON reader ------------------------------------------------------------------- */

static void json_strings_decode_escapes_and_utf8(void) {
    const char text[] = "[\"a\\\"b\\\\c\\/\\n\", \"\\u00e9\\ud83d\\ude00\xe2\x82\xac\", \"\"]";
    JsonCursor json;
    json_cursor_init(&json, text, sizeof text - 1, "inline");
    DdError err = {{0}};
    char out[32];
    size_t length;
    CHECK(json_array_begin(&json, &err) == 0 && json_array_next(&json, &err) == 1, "%.900s", err.message);
    CHECK(json_read_string(&json, out, sizeof out, &length, &err) == 0 && strcmp(out, "a\"b\\c/\n") == 0, "%s", out);
    CHECK(json_array_next(&json, &err) == 1, "second");
    CHECK(json_read_string(&json, out, sizeof out, &length, &err) == 0 &&
          strcmp(out, "\xc3\xa9\xf0\x9f\x98\x80\xe2\x82\xac") == 0 && length == 9, "%s (%zu)", out, length);
    CHECK(json_array_next(&json, &err) == 1 && json_read_string(&json, out, 4, NULL, &err) == 0 && out[0] == 0, "empty");
    CHECK(json_array_next(&json, &err) == 0 && json_expect_end(&json, &err) == 0, "%.900s", err.message);

    const char longer[] = "\"abcdef\"";
    json_cursor_init(&json, longer, sizeof longer - 1, "inline");
    CHECK(json_read_string(&json, out, 4, NULL, &err) != 0 && strstr(err.message, "at most 3 bytes"), "%.900s",
          err.message);
}

static void json_numbers_and_literals_follow_the_grammar(void) {
    const struct { const char *text; int ok; double value; } numbers[] = {
        {"0", 1, 0}, {"-0", 1, 0}, {"12.5e-1", 1, 1.25}, {"1E2", 1, 100}, {"-", 0, 0}, {"1.", 0, 0}, {".5", 0, 0},
        {"1e", 0, 0}, {"00", 0, 0}, {"+1", 0, 0},
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        JsonCursor json;
        json_cursor_init(&json, numbers[i].text, strlen(numbers[i].text), "n");
        DdError err = {{0}};
        double value = -1;
        int ok = json_read_double(&json, &value, &err) == 0 && json_expect_end(&json, &err) == 0;
        CHECK(ok == numbers[i].ok && (!ok || value == numbers[i].value), "%s: ok %d value %g", numbers[i].text, ok, value);
    }
    const char literals[] = "[true, false, null, nul]";
    JsonCursor json;
    json_cursor_init(&json, literals, sizeof literals - 1, "l");
    DdError err = {{0}};
    int b = -1;
    CHECK(json_array_begin(&json, &err) == 0 && json_array_next(&json, &err) == 1 && json_read_bool(&json, &b, &err) == 0 && b == 1, "true");
    CHECK(json_array_next(&json, &err) == 1 && json_read_bool(&json, &b, &err) == 0 && b == 0, "false");
    CHECK(json_array_next(&json, &err) == 1 && json_skip_value(&json, &err) == 0, "null");
    CHECK(json_array_next(&json, &err) == 1 && json_skip_value(&json, &err) != 0 && strstr(err.message, "'null'"),
          "%.900s", err.message);
    const char trailing[] = "[1,]";
    json_cursor_init(&json, trailing, sizeof trailing - 1, "t");
    CHECK(json_skip_value(&json, &err) != 0 && strstr(err.message, "expected a value, found ']'"), "%.900s", err.message);
}

TEST_MAIN(TEST(f32_round_trip_keeps_every_bit_and_shape), TEST(f16_and_bf16_round_trips_round_to_nearest_even),
          TEST(every_16_bit_pattern_survives_a_round_trip), TEST(conversions_agree_with_torch),
          TEST(each_malformed_file_fails_with_a_clear_message), TEST(deep_nesting_is_refused),
          TEST(truncated_writer_output_is_refused), TEST(a_folder_or_missing_file_is_refused),
          TEST(integer_dtypes_parse_but_do_not_read_as_floats), TEST(the_writer_refuses_bad_input),
          TEST(a_sharded_index_reads_as_one_set), TEST(broken_indexes_are_refused),
          TEST(json_strings_decode_escapes_and_utf8), TEST(json_numbers_and_literals_follow_the_grammar))
