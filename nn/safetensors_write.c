/*
 * safetensors_write.c - safetensors_write of safetensors.h: the header in
 * memory first (its length goes in front of it), then the data, converted
 * from fp32 in blocks, into an atomic file.
 */
#include "nn/safetensors.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "nn/atomic_file.h"
#include "nn/half_float.h"
#include "nn/json.h"

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names present, short enough, unique; shapes valid. */
static int check_tensors(const char *path, const NamedTensor *tensors, int count, DdError *err) {
    const char **names = malloc((size_t)(count ? count : 1) * sizeof *names);
    if (!names) return dd_fail(err, "%s: out of memory", path);
    int status = 0;
    for (int i = 0; i < count && status == 0; i++) {
        const NamedTensor *t = &tensors[i];
        names[i] = t->name;
        if (!t->name || !t->name[0] || strlen(t->name) >= TENSOR_NAME_MAX || strcmp(t->name, "__metadata__") == 0)
            status = dd_fail(err, "%s: tensor %d: expected a name of 1 to %d bytes other than __metadata__, found "
                             "'%.64s'", path, i, TENSOR_NAME_MAX - 1, t->name ? t->name : "(null)");
        else if (t->shape.ndim < 0 || t->shape.ndim > TENSOR_MAX_DIMS)
            status = dd_fail(err, "%s: tensor '%s': expected 0 to %d dims, found %d", path, t->name,
                             TENSOR_MAX_DIMS, t->shape.ndim);
        for (int d = 0; status == 0 && d < t->shape.ndim; d++)
            if (t->shape.dims[d] < 0)
                status = dd_fail(err, "%s: tensor '%s': expected dims >= 0, found %" PRId64, path, t->name,
                                 t->shape.dims[d]);
    }
    if (status == 0 && count > 1) {
        qsort(names, (size_t)count, sizeof *names, compare_names);
        for (int i = 1; i < count && status == 0; i++)
            if (strcmp(names[i - 1], names[i]) == 0)
                status = dd_fail(err, "%s: expected each tensor name once, found '%s' twice", path, names[i]);
    }
    free(names);
    return status;
}

/* The JSON header, padded with spaces to a multiple of 8 bytes. */
static int build_header(const NamedTensor *tensors, int count, SafetensorsDtype dtype, char **text,
                        size_t *length) {
    FILE *out = open_memstream(text, length);
    if (!out) return -1;
    fputs("{\"__metadata__\":{\"format\":\"pt\"}", out);
    uint64_t offset = 0, element = safetensors_dtype_size(dtype);
    for (int i = 0; i < count; i++) {
        const NamedTensor *t = &tensors[i];
        uint64_t bytes = (uint64_t)tensor_shape_count(&t->shape) * element;
        fputc(',', out);
        json_write_string(out, t->name);
        fprintf(out, ":{\"dtype\":\"%s\",\"shape\":[", safetensors_dtype_name(dtype));
        for (int d = 0; d < t->shape.ndim; d++) fprintf(out, "%s%" PRId64, d ? "," : "", t->shape.dims[d]);
        fprintf(out, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + bytes);
        offset += bytes;
    }
    fputc('}', out);
    while (ftell(out) % 8 != 0) fputc(' ', out);
    return fclose(out) == 0 ? 0 : -1;
}

/* The values of one tensor in dtype, a block at a time. */
static void write_data(FILE *out, const float *data, size_t count, SafetensorsDtype dtype) {
    if (count == 0) return;   /* data may be NULL */
    if (dtype == SAFETENSORS_F32) {
        fwrite(data, sizeof(float), count, out);
        return;
    }
    uint16_t block[4096];
    for (size_t start = 0; start < count; start += 4096) {
        size_t n = count - start < 4096 ? count - start : 4096;
        for (size_t i = 0; i < n; i++)
            block[i] = dtype == SAFETENSORS_F16 ? float_to_half(data[start + i]) : float_to_bfloat16(data[start + i]);
        fwrite(block, sizeof(uint16_t), n, out);
    }
}

int safetensors_write(const char *path, const NamedTensor *tensors, int count, SafetensorsDtype dtype,
                      DdError *err) {
    if (dtype != SAFETENSORS_F32 && dtype != SAFETENSORS_F16 && dtype != SAFETENSORS_BF16)
        return dd_fail(err, "%s: expected to write F32, F16 or BF16, found %s", path, safetensors_dtype_name(dtype));
    if (count < 0) return dd_fail(err, "%s: expected a tensor count >= 0, found %d", path, count);
    if (check_tensors(path, tensors, count, err) != 0) return -1;
    char *header = NULL;
    size_t header_length = 0;
    if (build_header(tensors, count, dtype, &header, &header_length) != 0) {
        free(header);
        return dd_fail(err, "%s: out of memory for the header", path);
    }
    AtomicFile file;
    if (atomic_file_open(&file, path, err) != 0) {
        free(header);
        return -1;
    }
    uint8_t length_bytes[8];
    for (int i = 0; i < 8; i++) length_bytes[i] = (uint8_t)((uint64_t)header_length >> (8 * i));
    fwrite(length_bytes, 1, sizeof length_bytes, file.stream);
    fwrite(header, 1, header_length, file.stream);
    free(header);
    for (int i = 0; i < count; i++)
        write_data(file.stream, tensors[i].data, (size_t)tensor_shape_count(&tensors[i].shape), dtype);
    return atomic_file_commit(&file, err);
}
