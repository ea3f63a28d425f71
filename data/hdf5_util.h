/*
 * hdf5_util.h - what the shard writer and the shard source share around
 * libhdf5: small readers and writers of 1-D datasets and scalar attributes
 * (errors quieted and turned into sentences by nn/hdf5_util.h).
 *
 * Debian's libhdf5 is built thread-safe (one lock inside the library), so
 * loading threads may call these at once.
 */
#ifndef DD_DATA_HDF5_UTIL_H
#define DD_DATA_HDF5_UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/error.h"
#include "nn/hdf5_util.h"

/* 1 if the root group has a dataset called name. */
int data_hdf5_has_dataset(hid_t file, const char *name);
/* The length of 1-D dataset name, -1 if it is missing or not 1-D. */
int64_t data_hdf5_length(hid_t file, const char *name);
/* Reads all of 1-D dataset name (length elements of type memory_type). */
int data_hdf5_read_all(hid_t file, const char *name, hid_t memory_type, int64_t length, void *out,
                       const char *path, DdError *err);
/* Writes data as a new 1-D dataset (chunked when chunk > 0). */
int data_hdf5_write_1d(hid_t file, const char *name, hid_t file_type, hid_t memory_type, const void *data,
                       uint64_t length, uint64_t chunk, const char *path, DdError *err);

/* Scalar attributes of the root group. */
int data_hdf5_set_u64(hid_t file, const char *name, uint64_t value);
int data_hdf5_get_u64(hid_t file, const char *name, uint64_t *value);
int data_hdf5_set_text(hid_t file, const char *name, const char *text);
/* -1 if missing or not a string; text is NUL-terminated, cut to cap. */
int data_hdf5_get_text(hid_t file, const char *name, char *text, size_t cap);

#endif
