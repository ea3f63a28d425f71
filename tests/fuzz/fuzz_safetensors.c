/*
 * fuzz_safetensors.c - libFuzzer target: any bytes as a whole safetensors
 * file. The header checks of safetensors_parse_header must either refuse the
 * input with a message or accept it; an accepted header must be one every
 * tensor of which can be found by name and read within the input.
 *
 * Not part of the meson build (CI never fuzzes); build and run it as
 * tests/fuzz/README.md says. test_fuzz_corpus.c runs the committed corpus
 * through the same function in CI.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_safetensors_bytes(data, size);
    return 0;
}
