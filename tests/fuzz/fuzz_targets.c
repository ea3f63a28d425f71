/*
 * fuzz_targets.c - the work behind each fuzz input (fuzz_targets.h).
 */
#include "tests/fuzz/fuzz_targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/safetensors.h"
#include "nn/safetensors_set.h"

/* A broken invariant of an accepted input: stop loudly so the fuzzer keeps it. */
static void invariant(int holds, const char *what) {
    if (!holds) {
        fprintf(stderr, "fuzz: broken invariant: %s\n", what);
        abort();
    }
}

/* Parses one file image; on success checks the invariants and reads every
 * tensor. Returns 1 accepted, 0 refused. */
static int parse_and_read(const uint8_t *data, size_t size) {
    SafetensorsFile file;
    DdError err;
    memset(&file, 0, sizeof file);
    snprintf(file.path, sizeof file.path, "fuzz.safetensors");
    if (safetensors_parse_header(&file.header, data, size, file.path, &err) != 0) {
        invariant(strncmp(err.message, "fuzz.safetensors: ", 18) == 0, "the message names the file");
        return 0;
    }
    file.map = data;
    file.map_size = size;
    const SafetensorsHeader *h = &file.header;
    uint64_t covered = 0;
    for (int i = 0; i < h->count; i++) {
        const SafetensorsTensor *t = &h->tensors[i];
        invariant(safetensors_find(&file, t->name) == t, "every tensor is found by its name");
        invariant(t->begin <= t->end && t->end <= h->data_size && h->data_start + h->data_size == size,
                  "offsets lie inside the data section");
        covered += t->end - t->begin;
        size_t count = (size_t)tensor_shape_count(&t->shape);
        if (count > (1u << 20)) continue;
        float *out = malloc((count + 1) * sizeof(float));
        if (!out) continue;
        safetensors_read_tensor(&file, t, out, &err);   /* may refuse an integer dtype, never read past the input */
        free(out);
    }
    invariant(covered == h->data_size, "the tensors cover the data section exactly once");
    safetensors_header_free(&file.header);
    return 1;
}

int fuzz_safetensors_bytes(const uint8_t *data, size_t size) {
    int accepted = parse_and_read(data, size);
    /* Again with a header length that fits the input (so that mutations of
     * the JSON are not all stopped by the length check): byte 0 says how
     * many bytes at the end are the data section. */
    if (size > 8) {
        uint8_t *copy = malloc(size);
        if (copy) {
            memcpy(copy, data, size);
            uint64_t tail = data[0] < size - 8 ? data[0] : size - 8, length = size - 8 - tail;
            for (int i = 0; i < 8; i++) copy[i] = (uint8_t)(length >> (8 * i));
            parse_and_read(copy, size);
            free(copy);
        }
    }
    return accepted;
}

int fuzz_safetensors_index_text(const uint8_t *data, size_t size) {
    SafetensorsIndex index;
    DdError err;
    if (safetensors_index_parse(&index, (const char *)data, size, "fuzz.index.json", &err) != 0) return 0;
    for (int i = 0; i < index.weight_count; i++) {
        invariant(index.weights[i].shard >= 0 && index.weights[i].shard < index.shard_count, "shard numbers are valid");
        invariant(i == 0 || strcmp(index.weights[i - 1].name, index.weights[i].name) < 0, "names are sorted and unique");
        invariant(strchr(index.shards[index.weights[i].shard], '/') == NULL, "shard names stay in the folder");
    }
    safetensors_index_free(&index);
    return 1;
}
