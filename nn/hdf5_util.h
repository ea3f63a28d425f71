/*
 * hdf5_util.h - what every user of libhdf5 in the project shares: its
 * automatic error printing silenced for the length of a call (failures
 * become DdError sentences instead), the innermost error text it left, and
 * recognising an HDF5 file by its signature before handing it to the
 * library.
 */
#ifndef DD_NN_HDF5_UTIL_H
#define DD_NN_HDF5_UTIL_H

#include <hdf5.h>
#include <stddef.h>

/* HDF5's automatic error handler, saved while one of our calls runs. */
typedef struct Hdf5Quiet {
    H5E_auto2_t handler;
    void *handler_data;
} Hdf5Quiet;

Hdf5Quiet hdf5_quiet(void);
void hdf5_restore(Hdf5Quiet saved);

/* The most specific description HDF5 left on its error stack for the call
 * that just failed (e.g. "truncated file: eof = 96, ..."); clears the stack. */
const char *hdf5_reason(char *text, size_t size);

/* 1 if path starts with the HDF5 signature (at offset 0 or after a user block). */
int hdf5_looks_like_file(const char *path);

#endif
