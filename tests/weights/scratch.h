/*
 * scratch.h - a per-process scratch folder for the tests of tests/weights and
 * tests/fuzz, removed at exit (kept, and named on stderr, when the
 * environment has DD_KEEP_SCRATCH), and small helpers for files in it.
 */
#ifndef DD_TESTS_WEIGHTS_SCRATCH_H
#define DD_TESTS_WEIGHTS_SCRATCH_H

#include <stddef.h>
#include <stdint.h>

/* scratch folder + "/" + name (a static buffer per call slot: up to 8
 * results may be used at once). */
const char *scratch_path(const char *name);

/* Writes size bytes to path; 0 or -1. */
int write_bytes(const char *path, const void *bytes, size_t size);

/* A safetensors file from its parts: the 8-byte length (header_length, or
 * strlen(header) when it is UINT64_MAX), the header text, data_size zero
 * bytes. */
int write_safetensors_raw(const char *path, const char *header, uint64_t header_length, size_t data_size);

/* The whole of a file, malloc'ed; NULL on failure. */
uint8_t *read_bytes(const char *path, size_t *size);

#endif
