/*
 * tensor_file.h - named fp32 tensors in HDF5 files: weights, reference
 * data, exported checkpoints.
 *
 * File format: every tensor is one dataset directly under the root group,
 * named by its full name, dots included ("layer.0.norm1.weight" is one flat
 * name, not a path of groups), so the file reads the same from h5py
 * (f["layer.0.norm1.weight"]) as from here. Names may not contain '/'.
 * Writers store IEEE fp32 little-endian; readers accept any floating-point
 * dataset (fp16, fp32, fp64, any byte order, any HDF5 built-in filter
 * such as gzip) and convert to fp32. A rank-0 dataset is a tensor of shape
 * [] with one value.
 *
 * Writing is atomic: a TensorFileWriter writes PATH.tmp.PID, and only
 * tensor_writer_commit (flush, fsync, rename, fsync of the folder) makes PATH
 * appear; an aborted or failed write leaves any old PATH untouched.
 *
 * Every function returns 0 on success, -1 on failure with a message that
 * names the file and, where one is involved, the tensor, the expected shape
 * and the shape found. HDF5's own error printing is switched off for the
 * duration of each call (and restored after it); its innermost error
 * description is folded into the message instead.
 */
#ifndef DD_NN_TENSOR_FILE_H
#define DD_NN_TENSOR_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "nn/error.h"
#include "nn/vit.h"

enum {
    TENSOR_MAX_DIMS = 8,
    TENSOR_NAME_MAX = 256,        /* bytes, including the terminating NUL */
    TENSOR_SHAPE_TEXT_MAX = 192,  /* room for "[d0, d1, ...]" with 8 dims */
    TENSOR_FILE_PATH_MAX = 1024,
};

/* A shape: ndim dims, the last one fastest. ndim 0 is a single value. */
typedef struct TensorShape {
    int ndim;
    int64_t dims[TENSOR_MAX_DIMS];
} TensorShape;

/* Number of values (1 for ndim 0). */
int64_t tensor_shape_count(const TensorShape *shape);
/* 1 if both have the same rank and dims. */
int tensor_shape_equal(const TensorShape *a, const TensorShape *b);
/* Writes "[32, 192]" (or "[]") into text; returns text. */
char *tensor_shape_format(const TensorShape *shape, char text[TENSOR_SHAPE_TEXT_MAX]);

/* ---- reading -------------------------------------------------------------- */

typedef struct TensorFile {
    int64_t handle;                    /* the HDF5 file id */
    char path[TENSOR_FILE_PATH_MAX];
} TensorFile;

/* One dataset of a file, as tensor_file_list reports it. */
typedef struct TensorFileEntry {
    char name[TENSOR_NAME_MAX];
    TensorShape shape;
} TensorFileEntry;

/* Opens path read-only. A missing file, a file that is not HDF5 and a
 * truncated file each fail with a message saying which. */
int tensor_file_open(TensorFile *file, const char *path, DdError *err);
void tensor_file_close(TensorFile *file);

/* 1 if the file holds a tensor called name, else 0. */
int tensor_file_contains(const TensorFile *file, const char *name);

/* The shape of tensor name; fails if it is missing or not a float dataset. */
int tensor_file_shape(const TensorFile *file, const char *name, TensorShape *shape, DdError *err);

/* Reads tensor name into out[count of expected] (host memory), after
 * checking that its shape is exactly *expected. */
int tensor_file_read(const TensorFile *file, const char *name, const TensorShape *expected,
                     float *out, DdError *err);

/* Every floating-point dataset of the root group, sorted by name:
 * *entries is malloc'ed (free() it), *count its length. Other objects
 * (groups, integer datasets) are skipped. */
int tensor_file_list(const TensorFile *file, TensorFileEntry **entries, int *count, DdError *err);

/* ---- writing -------------------------------------------------------------- */

typedef struct TensorFileWriter {
    int64_t handle;                         /* the HDF5 file id of the temporary file */
    char path[TENSOR_FILE_PATH_MAX];        /* the final name */
    char temp_path[TENSOR_FILE_PATH_MAX];   /* PATH.tmp.PID, renamed to path on commit */
} TensorFileWriter;

/* Creates the temporary file next to path. */
int tensor_writer_open(TensorFileWriter *writer, const char *path, DdError *err);
/* Adds tensor name of the given shape from data (host memory, fp32). A
 * name may be added once. On failure the writer stays open: abort it. */
int tensor_writer_add(TensorFileWriter *writer, const char *name, const TensorShape *shape,
                      const float *data, DdError *err);
/* Closes, syncs and renames the file into place. The writer is finished
 * whether or not this succeeds (on failure the temporary file is removed). */
int tensor_writer_commit(TensorFileWriter *writer, DdError *err);
/* Closes and removes the temporary file; path is left as it was. */
void tensor_writer_abort(TensorFileWriter *writer);

/* A tensor to write with tensor_file_write. */
typedef struct NamedTensor {
    const char *name;
    TensorShape shape;
    const float *data;     /* host memory, tensor_shape_count(&shape) floats */
} NamedTensor;

/* Writes count tensors into path (atomically, as above). */
int tensor_file_write(const char *path, const NamedTensor *tensors, int count, DdError *err);

/* ---- ViT parameters ----------------------------------------------------------
 * The tensors of vit_tensor_layout, named prefix + layout name (prefix ""
 * for weights, e.g. "grad." for a gradient of the same layout). params must
 * be views into host memory (vit_params_view on a host buffer), not into a
 * device allocation. Reading checks every name and shape of the layout and
 * ignores any other tensor of the file. */
int tensor_writer_add_vit_params(TensorFileWriter *writer, const char *prefix,
                                 const ViTConfig *cfg, const ViTParams *params, DdError *err);
int tensor_file_read_vit_params(const TensorFile *file, const char *prefix,
                                const ViTConfig *cfg, ViTParams *params, DdError *err);

/* Whole-file conveniences with prefix "": save writes a file holding only
 * the parameters; load reads them from path. */
int vit_params_save(const char *path, const ViTConfig *cfg, const ViTParams *params, DdError *err);
int vit_params_load(const char *path, const ViTConfig *cfg, ViTParams *params, DdError *err);

#endif
