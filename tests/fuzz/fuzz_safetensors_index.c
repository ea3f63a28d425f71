/*
 * fuzz_safetensors_index.c - libFuzzer target: any bytes as the text of a
 * sharded index (model.safetensors.index.json). See fuzz_safetensors.c.
 */
#include <stdint.h>
#include <stdlib.h>

#include "tests/fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_safetensors_index_text(data, size);
    return 0;
}
