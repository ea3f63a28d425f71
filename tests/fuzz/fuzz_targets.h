/*
 * fuzz_targets.h - what one fuzz input exercises, shared by the libFuzzer
 * targets (fuzz_safetensors*.c) and the corpus test CI runs
 * (test_fuzz_corpus.c). Each returns 1 when the input was accepted, 0 when
 * it was refused with a message; anything else (a crash, a sanitizer
 * report, an abort on a broken invariant) is a bug.
 */
#ifndef DD_TESTS_FUZZ_TARGETS_H
#define DD_TESTS_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

int fuzz_safetensors_bytes(const uint8_t *data, size_t size);
int fuzz_safetensors_index_text(const uint8_t *data, size_t size);

#endif
