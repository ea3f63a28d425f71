/*
 * safetensors.c - the header checks and the memory-mapped reading of
 * safetensors.h. Writing is in safetensors_write.c.
 */
#include "nn/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/half_float.h"
#include "nn/json.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader copies it as it is"
#endif

static const struct {
    const char *name;
    size_t size;
} dtypes[SAFETENSORS_DTYPE_COUNT] = {
    [SAFETENSORS_BOOL] = {"BOOL", 1}, [SAFETENSORS_U8] = {"U8", 1}, [SAFETENSORS_I8] = {"I8", 1},
    [SAFETENSORS_F8_E5M2] = {"F8_E5M2", 1}, [SAFETENSORS_F8_E4M3] = {"F8_E4M3", 1},
    [SAFETENSORS_I16] = {"I16", 2}, [SAFETENSORS_U16] = {"U16", 2}, [SAFETENSORS_F16] = {"F16", 2},
    [SAFETENSORS_BF16] = {"BF16", 2}, [SAFETENSORS_I32] = {"I32", 4}, [SAFETENSORS_U32] = {"U32", 4},
    [SAFETENSORS_F32] = {"F32", 4}, [SAFETENSORS_F64] = {"F64", 8}, [SAFETENSORS_I64] = {"I64", 8},
    [SAFETENSORS_U64] = {"U64", 8},
};

const char *safetensors_dtype_name(SafetensorsDtype dtype) {
    return (unsigned)dtype < SAFETENSORS_DTYPE_COUNT ? dtypes[dtype].name : "?";
}

size_t safetensors_dtype_size(SafetensorsDtype dtype) {
    return (unsigned)dtype < SAFETENSORS_DTYPE_COUNT ? dtypes[dtype].size : 0;
}

static int dtype_from_name(const char *name, SafetensorsDtype *dtype) {
    for (int i = 0; i < SAFETENSORS_DTYPE_COUNT; i++)
        if (strcmp(name, dtypes[i].name) == 0) {
            *dtype = (SafetensorsDtype)i;
            return 0;
        }
    return -1;
}

/* ---- parsing the header ------------------------------------------------------------- */

/* Tensors as they are parsed: names are offsets into a growing pool until
 * the pool stops moving. */
typedef struct HeaderBuilder {
    SafetensorsHeader *header;
    size_t *name_offsets;
    int capacity;
    size_t pool_used, pool_capacity;
    const char *path;
} HeaderBuilder;

static int builder_add(HeaderBuilder *b, const char *name, size_t name_length, DdError *err) {
    SafetensorsHeader *h = b->header;
    if (h->count >= SAFETENSORS_MAX_TENSORS)
        return dd_fail(err, "%s: expected at most %d tensors, found more", b->path, SAFETENSORS_MAX_TENSORS);
    if (h->count == b->capacity) {
        int capacity = b->capacity ? 2 * b->capacity : 64;
        SafetensorsTensor *tensors = realloc(h->tensors, (size_t)capacity * sizeof *tensors);
        if (tensors) h->tensors = tensors;
        size_t *offsets = realloc(b->name_offsets, (size_t)capacity * sizeof *offsets);
        if (offsets) b->name_offsets = offsets;
        if (!tensors || !offsets) return dd_fail(err, "%s: out of memory for %d tensors", b->path, capacity);
        b->capacity = capacity;
    }
    if (b->pool_used + name_length + 1 > b->pool_capacity) {
        size_t capacity = 2 * (b->pool_used + name_length + 1) + 4096;
        char *pool = realloc(h->names, capacity);
        if (!pool) return dd_fail(err, "%s: out of memory for tensor names", b->path);
        h->names = pool;
        b->pool_capacity = capacity;
    }
    memcpy(h->names + b->pool_used, name, name_length + 1);
    b->name_offsets[h->count] = b->pool_used;
    b->pool_used += name_length + 1;
    memset(&h->tensors[h->count], 0, sizeof h->tensors[h->count]);
    h->count++;
    return 0;
}

/* "__metadata__": an object whose values are strings. */
static int parse_metadata(JsonCursor *json, DdError *err) {
    if (json_object_begin(json, err) != 0) return -1;
    int more;
    while ((more = json_object_next(json, NULL, 0, err)) == 1) {
        if (json_peek(json) != JSON_STRING)
            return dd_fail(err, "%s: byte %zu: expected a string value in __metadata__", json->source,
                           json->position);
        if (json_skip_value(json, err) != 0) return -1;
    }
    return more;
}

/* A JSON array of at most max_count integers <= maximum into values. */
static int parse_integers(JsonCursor *json, uint64_t *values, int max_count, uint64_t maximum, int *count,
                          const char *what, DdError *err) {
    if (json_array_begin(json, err) != 0) return -1;
    int n = 0, more;
    while ((more = json_array_next(json, err)) == 1) {
        if (n == max_count)
            return dd_fail(err, "%s: expected at most %d entries in %s, found more", json->source, max_count, what);
        if (json_read_uint64(json, maximum, &values[n++], err) != 0) return -1;
    }
    if (more < 0) return -1;
    *count = n;
    return 0;
}

/* The value of one tensor entry: {"dtype", "shape", "data_offsets"} (each
 * once; other keys are skipped, as the reference implementation does).
 * json->source names the tensor. */
static int parse_tensor_entry(JsonCursor *json, SafetensorsTensor *tensor, DdError *err) {
    int seen_dtype = 0, seen_shape = 0, seen_offsets = 0, more;
    char key[32];
    if (json_object_begin(json, err) != 0) return -1;
    while ((more = json_object_next(json, key, sizeof key, err)) == 1) {
        int *seen = strcmp(key, "dtype") == 0 ? &seen_dtype
                    : strcmp(key, "shape") == 0 ? &seen_shape
                    : strcmp(key, "data_offsets") == 0 ? &seen_offsets : NULL;
        if (seen && (*seen)++)
            return dd_fail(err, "%s: expected '%s' once, found it twice", json->source, key);
        if (seen == &seen_dtype) {
            char dtype[16];
            if (json_read_string(json, dtype, sizeof dtype, NULL, err) != 0) return -1;
            if (dtype_from_name(dtype, &tensor->dtype) != 0)
                return dd_fail(err, "%s: expected a dtype of BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, "
                               "BF16, I32, U32, F32, F64, I64 or U64, found '%s'", json->source, dtype);
        } else if (seen == &seen_shape) {
            uint64_t dims[TENSOR_MAX_DIMS];
            if (parse_integers(json, dims, TENSOR_MAX_DIMS, INT64_MAX, &tensor->shape.ndim, "shape", err) != 0)
                return -1;
            for (int i = 0; i < tensor->shape.ndim; i++) tensor->shape.dims[i] = (int64_t)dims[i];
        } else if (seen == &seen_offsets) {
            uint64_t offsets[2];
            int n = 0;
            if (parse_integers(json, offsets, 2, UINT64_MAX, &n, "data_offsets", err) != 0) return -1;
            if (n != 2)
                return dd_fail(err, "%s: expected 2 data_offsets [begin, end], found %d", json->source, n);
            tensor->begin = offsets[0];
            tensor->end = offsets[1];
        } else if (json_skip_value(json, err) != 0) {
            return -1;
        }
    }
    if (more < 0) return -1;
    if (!seen_dtype || !seen_shape || !seen_offsets)
        return dd_fail(err, "%s: expected the keys dtype, shape and data_offsets, found no '%s'", json->source,
                       !seen_dtype ? "dtype" : !seen_shape ? "shape" : "data_offsets");
    return 0;
}

/* Bytes a tensor must span: product of its shape times the dtype size;
 * -1 when that overflows 64 bits. */
static int tensor_byte_count(const SafetensorsTensor *t, uint64_t *bytes) {
    uint64_t n = safetensors_dtype_size(t->dtype);
    for (int i = 0; i < t->shape.ndim; i++)
        if (__builtin_mul_overflow(n, (uint64_t)t->shape.dims[i], &n)) return -1;
    *bytes = n;
    return 0;
}

static int compare_by_name(const void *a, const void *b) {
    return strcmp(((const SafetensorsTensor *)a)->name, ((const SafetensorsTensor *)b)->name);
}

static int compare_by_offset(const void *a, const void *b) {
    const SafetensorsTensor *x = *(const SafetensorsTensor *const *)a, *y = *(const SafetensorsTensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Offsets inside the data section, sizes that match the shapes, and data
 * covered exactly once in offset order. */
static int check_layout(const SafetensorsHeader *h, const char *path, DdError *err) {
    char shape_text[TENSOR_SHAPE_TEXT_MAX];
    for (int i = 0; i < h->count; i++) {
        const SafetensorsTensor *t = &h->tensors[i];
        uint64_t bytes;
        if (t->begin > t->end)
            return dd_fail(err, "%s: tensor '%s': expected data_offsets begin <= end, found [%" PRIu64 ", %" PRIu64 "]",
                           path, t->name, t->begin, t->end);
        if (t->end > h->data_size)
            return dd_fail(err, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] reach past the end of "
                           "the data section (%" PRIu64 " bytes): the file is truncated or the header is wrong",
                           path, t->name, t->begin, t->end, h->data_size);
        if (tensor_byte_count(t, &bytes) != 0 || bytes != t->end - t->begin)
            return dd_fail(err, "%s: tensor '%s': shape %s of %s needs %s bytes, but data_offsets [%" PRIu64
                           ", %" PRIu64 "] span %" PRIu64, path, t->name, tensor_shape_format(&t->shape, shape_text),
                           safetensors_dtype_name(t->dtype),
                           tensor_byte_count(t, &bytes) != 0 ? "more than 2^64" : "a different number of",
                           t->begin, t->end, t->end - t->begin);
    }
    const SafetensorsTensor **order = malloc((size_t)(h->count ? h->count : 1) * sizeof *order);
    if (!order) return dd_fail(err, "%s: out of memory", path);
    for (int i = 0; i < h->count; i++) order[i] = &h->tensors[i];
    qsort(order, (size_t)h->count, sizeof *order, compare_by_offset);
    uint64_t covered = 0;
    int status = 0;
    for (int i = 0; i < h->count && status == 0; i++) {
        const SafetensorsTensor *t = order[i];
        if (t->begin < covered)
            status = dd_fail(err, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] overlap those of "
                             "tensor '%s' (which end at %" PRIu64 ")", path, t->name, t->begin, t->end,
                             order[i - 1]->name, covered);
        else if (t->begin > covered)
            status = dd_fail(err, "%s: tensor '%s': expected its data to start at byte %" PRIu64 " of the data "
                             "section, right after the previous tensor, found %" PRIu64 " (a gap)", path, t->name,
                             covered, t->begin);
        covered = t->end;
    }
    if (status == 0 && covered != h->data_size)
        status = dd_fail(err, "%s: expected the tensors to cover the %" PRIu64 " bytes of the data section, found "
                         "%" PRIu64 " bytes covered (trailing bytes)", path, h->data_size, covered);
    free(order);
    return status;
}

/* Walks the top-level object: every member is __metadata__ or a tensor. */
static int parse_members(HeaderBuilder *b, JsonCursor *json, DdError *err) {
    SafetensorsHeader *h = b->header;
    char name[TENSOR_NAME_MAX];
    size_t name_length;
    int seen_metadata = 0, more;
    if (json_object_begin(json, err) != 0) return -1;
    for (;;) {
        more = json_object_next(json, name, sizeof name, err);
        if (more <= 0) break;
        name_length = strlen(name);
        if (strcmp(name, "__metadata__") == 0) {
            if (seen_metadata++)
                return dd_fail(err, "%s: expected __metadata__ once, found it twice", b->path);
            if (parse_metadata(json, err) != 0) return -1;
            continue;
        }
        if (name_length == 0) return dd_fail(err, "%s: expected a tensor name, found an empty one", b->path);
        if (builder_add(b, name, name_length, err) != 0) return -1;
        const char *header_source = json->source;
        char tensor_source[TENSOR_FILE_PATH_MAX + TENSOR_NAME_MAX + 32];
        snprintf(tensor_source, sizeof tensor_source, "%s: tensor '%s'", header_source, name);
        json->source = tensor_source;
        int status = parse_tensor_entry(json, &h->tensors[h->count - 1], err);
        json->source = header_source;
        if (status != 0) return -1;
    }
    if (more < 0) return -1;
    return json_expect_end(json, err);
}

int safetensors_parse_header(SafetensorsHeader *header, const uint8_t *bytes, uint64_t size, const char *path,
                             DdError *err) {
    memset(header, 0, sizeof *header);
    if (size < 8)
        return dd_fail(err, "%s: expected at least 8 bytes (the header length), found %" PRIu64 ": the file is "
                       "truncated or empty", path, size);
    uint64_t length = 0;
    for (int i = 7; i >= 0; i--) length = length << 8 | bytes[i];
    if (length > SAFETENSORS_MAX_HEADER_BYTES)
        return dd_fail(err, "%s: expected a header of at most %llu bytes, found a header length of %" PRIu64
                       " bytes", path, SAFETENSORS_MAX_HEADER_BYTES, length);
    if (length > size - 8)
        return dd_fail(err, "%s: the header length says %" PRIu64 " bytes, but only %" PRIu64 " bytes follow it: "
                       "the file is truncated or not a safetensors file", path, length, size - 8);
    if (length < 2)
        return dd_fail(err, "%s: expected a header of at least 2 bytes ('{}'), found %" PRIu64, path, length);
    header->data_start = 8 + length;
    header->data_size = size - 8 - length;

    char source[TENSOR_FILE_PATH_MAX + 16];
    snprintf(source, sizeof source, "%s: header", path);
    JsonCursor json;
    json_cursor_init(&json, (const char *)bytes + 8, (size_t)length, source);
    HeaderBuilder builder = {.header = header, .path = path};
    int status = parse_members(&builder, &json, err);
    for (int i = 0; i < header->count; i++) header->tensors[i].name = header->names + builder.name_offsets[i];
    free(builder.name_offsets);
    if (status == 0 && header->count > 0) {
        qsort(header->tensors, (size_t)header->count, sizeof *header->tensors, compare_by_name);
        for (int i = 1; i < header->count && status == 0; i++)
            if (strcmp(header->tensors[i - 1].name, header->tensors[i].name) == 0)
                status = dd_fail(err, "%s: expected each tensor name once, found '%s' twice", path,
                                 header->tensors[i].name);
    }
    if (status == 0) status = check_layout(header, path, err);
    if (status != 0) safetensors_header_free(header);
    return status;
}

void safetensors_header_free(SafetensorsHeader *header) {
    free(header->tensors);
    free(header->names);
    memset(header, 0, sizeof *header);
}

/* ---- reading a file ----------------------------------------------------------------- */

int safetensors_open(SafetensorsFile *file, const char *path, DdError *err) {
    memset(file, 0, sizeof *file);
    if (strlen(path) >= sizeof file->path)
        return dd_fail(err, "%.200s...: expected a path of at most %zu bytes", path, sizeof file->path - 1);
    snprintf(file->path, sizeof file->path, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);   /* a FIFO must not block the open */
    if (fd < 0) return dd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat info;
    if (fstat(fd, &info) != 0) {
        int saved = errno;
        close(fd);
        return dd_fail(err, "%s: cannot stat: %s", path, strerror(saved));
    }
    if (!S_ISREG(info.st_mode)) {
        close(fd);
        return dd_fail(err, "%s: expected a regular file, found %s", path,
                       S_ISDIR(info.st_mode) ? "a folder" : "a special file");
    }
    uint64_t size = (uint64_t)info.st_size;
    if (size >= 8) {
        void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int saved = errno;
            close(fd);
            return dd_fail(err, "%s: cannot map %" PRIu64 " bytes: %s", path, size, strerror(saved));
        }
        file->map = map;
        file->map_size = (size_t)size;
    }
    close(fd);
    if (safetensors_parse_header(&file->header, file->map, size, path, err) != 0) {
        safetensors_close(file);
        return -1;
    }
    return 0;
}

void safetensors_close(SafetensorsFile *file) {
    if (file->map) munmap((void *)file->map, file->map_size);
    safetensors_header_free(&file->header);
    file->map = NULL;
    file->map_size = 0;
}

const SafetensorsTensor *safetensors_find(const SafetensorsFile *file, const char *name) {
    const SafetensorsHeader *h = &file->header;
    SafetensorsTensor key = {.name = name};
    if (h->count == 0) return NULL;
    return bsearch(&key, h->tensors, (size_t)h->count, sizeof *h->tensors, compare_by_name);
}

int safetensors_read_tensor(const SafetensorsFile *file, const SafetensorsTensor *tensor, float *out,
                            DdError *err) {
    const uint8_t *data = file->map + file->header.data_start + tensor->begin;
    size_t count = (size_t)tensor_shape_count(&tensor->shape);
    switch (tensor->dtype) {
    case SAFETENSORS_F32:
        if (count) memcpy(out, data, count * sizeof(float));   /* out may be NULL for an empty tensor */
        return 0;
    case SAFETENSORS_F16:
    case SAFETENSORS_BF16:
        for (size_t i = 0; i < count; i++) {
            uint16_t bits;
            memcpy(&bits, data + 2 * i, sizeof bits);
            out[i] = tensor->dtype == SAFETENSORS_F16 ? half_to_float(bits) : bfloat16_to_float(bits);
        }
        return 0;
    case SAFETENSORS_F64:
        for (size_t i = 0; i < count; i++) {
            double value;
            memcpy(&value, data + 8 * i, sizeof value);
            out[i] = (float)value;
        }
        return 0;
    default:
        return dd_fail(err, "%s: tensor '%s': expected a dtype of F32, F16, BF16 or F64 to read as fp32, "
                       "found %s", file->path, tensor->name, safetensors_dtype_name(tensor->dtype));
    }
}

int safetensors_read(const SafetensorsFile *file, const char *name, const TensorShape *expected, float *out,
                     DdError *err) {
    const SafetensorsTensor *tensor = safetensors_find(file, name);
    char want[TENSOR_SHAPE_TEXT_MAX], found[TENSOR_SHAPE_TEXT_MAX];
    if (!tensor)
        return dd_fail(err, "%s: tensor '%s' of shape %s is missing", file->path, name,
                       tensor_shape_format(expected, want));
    if (!tensor_shape_equal(&tensor->shape, expected))
        return dd_fail(err, "%s: tensor '%s': expected shape %s, found %s", file->path, name,
                       tensor_shape_format(expected, want), tensor_shape_format(&tensor->shape, found));
    return safetensors_read_tensor(file, tensor, out, err);
}
