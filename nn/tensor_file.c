/*
 * tensor_file.c - named fp32 tensors in HDF5 files (see tensor_file.h for
 * the format and the guarantees).
 *
 * Every public function silences HDF5's automatic error printing on entry
 * and restores it on exit (hdf5_silence / hdf5_restore), so a failure deep
 * in libhdf5 reaches the caller as one DdError sentence built from the
 * innermost entry of HDF5's error stack (hdf5_reason).
 */
#include "nn/tensor_file.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "nn/hdf5_util.h"

_Static_assert(sizeof(hid_t) == sizeof(int64_t), "TensorFile.handle holds an hid_t");

/* ---- shapes ----------------------------------------------------------------- */

int64_t tensor_shape_count(const TensorShape *shape) {
    int64_t count = 1;
    for (int i = 0; i < shape->ndim; i++) count *= shape->dims[i];
    return count;
}

int tensor_shape_equal(const TensorShape *a, const TensorShape *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] != b->dims[i]) return 0;
    return 1;
}

char *tensor_shape_format(const TensorShape *shape, char text[TENSOR_SHAPE_TEXT_MAX]) {
    size_t used = (size_t)snprintf(text, TENSOR_SHAPE_TEXT_MAX, "[");
    for (int i = 0; i < shape->ndim && used < TENSOR_SHAPE_TEXT_MAX; i++)
        used += (size_t)snprintf(text + used, TENSOR_SHAPE_TEXT_MAX - used, "%s%" PRId64,
                                 i ? ", " : "", shape->dims[i]);
    if (used < TENSOR_SHAPE_TEXT_MAX) snprintf(text + used, TENSOR_SHAPE_TEXT_MAX - used, "]");
    return text;
}

/* Checks that shape is one this module can store: 0..TENSOR_MAX_DIMS dims, none negative. */
static int shape_is_valid(const TensorShape *shape) {
    if (shape->ndim < 0 || shape->ndim > TENSOR_MAX_DIMS) return 0;
    for (int i = 0; i < shape->ndim; i++)
        if (shape->dims[i] < 0) return 0;
    return 1;
}

/* ---- HDF5 error handling ------------------------------------------------------ */

/* Tensor names are flat dataset names in the root group: non-empty, no '/',
 * shorter than TENSOR_NAME_MAX. */
static int check_name(const char *path, const char *name, DdError *err) {
    if (!name || !name[0]) return dd_fail(err, "%s: empty tensor name", path);
    if (strlen(name) >= TENSOR_NAME_MAX)
        return dd_fail(err, "%s: tensor name '%.40s...' has %zu bytes, expected fewer than %d", path,
                       name, strlen(name), TENSOR_NAME_MAX);
    if (strchr(name, '/'))
        return dd_fail(err, "%s: tensor name '%s' contains '/', expected a flat name", path, name);
    return 0;
}

/* The shape of an open dataset; -1 if it has more than TENSOR_MAX_DIMS dims. */
static int dataset_shape(hid_t dataset, TensorShape *shape) {
    hid_t space = H5Dget_space(dataset);
    if (space < 0) return -1;
    int ndim = H5Sget_simple_extent_ndims(space);
    hsize_t dims[H5S_MAX_RANK];
    int ok = ndim >= 0 && ndim <= TENSOR_MAX_DIMS && H5Sget_simple_extent_dims(space, dims, NULL) >= 0;
    H5Sclose(space);
    if (!ok) return -1;
    shape->ndim = ndim;
    for (int i = 0; i < ndim; i++) shape->dims[i] = (int64_t)dims[i];
    return 0;
}

/* 1 if the dataset's element type is a floating-point type. */
static int dataset_is_float(hid_t dataset) {
    hid_t type = H5Dget_type(dataset);
    if (type < 0) return 0;
    int is_float = H5Tget_class(type) == H5T_FLOAT;
    H5Tclose(type);
    return is_float;
}

/* ---- reading -------------------------------------------------------------------- */

static int open_file(TensorFile *file, const char *path, DdError *err) {
    file->handle = -1;
    if (strlen(path) >= sizeof file->path)
        return dd_fail(err, "%.100s...: path longer than %d bytes", path, TENSOR_FILE_PATH_MAX - 1);
    snprintf(file->path, sizeof file->path, "%s", path);
    if (access(path, R_OK) != 0) return dd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (!hdf5_looks_like_file(path))
        return dd_fail(err, "%s: not an HDF5 file (no HDF5 signature at its start)", path);
    hid_t handle = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (handle < 0) {
        char reason[512];
        return dd_fail(err, "%s: cannot open HDF5 file, damaged or truncated (%s)", path,
                       hdf5_reason(reason, sizeof reason));
    }
    file->handle = handle;
    return 0;
}

int tensor_file_open(TensorFile *file, const char *path, DdError *err) {
    Hdf5Quiet saved = hdf5_quiet();
    int status = open_file(file, path, err);
    hdf5_restore(saved);
    return status;
}

void tensor_file_close(TensorFile *file) {
    if (file->handle < 0) return;
    Hdf5Quiet saved = hdf5_quiet();
    H5Fclose(file->handle);
    hdf5_restore(saved);
    file->handle = -1;
}

int tensor_file_contains(const TensorFile *file, const char *name) {
    if (file->handle < 0 || check_name(file->path, name, NULL) != 0) return 0;
    Hdf5Quiet saved = hdf5_quiet();
    int exists = H5Lexists(file->handle, name, H5P_DEFAULT) > 0;
    if (exists) {
        hid_t object = H5Oopen(file->handle, name, H5P_DEFAULT);
        exists = object >= 0 && H5Iget_type(object) == H5I_DATASET;
        if (object >= 0) H5Oclose(object);
    }
    H5Eclear2(H5E_DEFAULT);
    hdf5_restore(saved);
    return exists;
}

/* Opens tensor name as a float dataset and reads its shape. `expected`
 * (may be NULL) only enriches the message when the tensor is missing. */
static hid_t open_tensor(const TensorFile *file, const char *name, const TensorShape *expected,
                         TensorShape *shape, DdError *err) {
    if (file->handle < 0) return dd_fail(err, "%s: tensor '%s': file is not open", file->path, name);
    if (check_name(file->path, name, err) != 0) return -1;
    if (!tensor_file_contains(file, name)) {
        char text[TENSOR_SHAPE_TEXT_MAX];
        if (expected)
            return dd_fail(err, "%s: tensor '%s' (expected shape %s) not found", file->path, name,
                           tensor_shape_format(expected, text));
        return dd_fail(err, "%s: tensor '%s' not found", file->path, name);
    }
    hid_t dataset = H5Dopen2(file->handle, name, H5P_DEFAULT);
    if (dataset < 0) {
        char reason[512];
        return dd_fail(err, "%s: tensor '%s': cannot open (%s)", file->path, name,
                       hdf5_reason(reason, sizeof reason));
    }
    if (!dataset_is_float(dataset)) {
        H5Dclose(dataset);
        return dd_fail(err, "%s: tensor '%s': expected floating-point data, found another type",
                       file->path, name);
    }
    if (dataset_shape(dataset, shape) != 0) {
        H5Dclose(dataset);
        return dd_fail(err, "%s: tensor '%s': expected at most %d dimensions, found more",
                       file->path, name, TENSOR_MAX_DIMS);
    }
    return dataset;
}

int tensor_file_shape(const TensorFile *file, const char *name, TensorShape *shape, DdError *err) {
    Hdf5Quiet saved = hdf5_quiet();
    hid_t dataset = open_tensor(file, name, NULL, shape, err);
    if (dataset >= 0) H5Dclose(dataset);
    hdf5_restore(saved);
    return dataset >= 0 ? 0 : -1;
}

static int read_tensor(const TensorFile *file, const char *name, const TensorShape *expected,
                       float *out, DdError *err) {
    TensorShape found;
    hid_t dataset = open_tensor(file, name, expected, &found, err);
    if (dataset < 0) return -1;
    char expected_text[TENSOR_SHAPE_TEXT_MAX], found_text[TENSOR_SHAPE_TEXT_MAX];
    int status = 0;
    if (!tensor_shape_equal(expected, &found)) {
        status = dd_fail(err, "%s: tensor '%s': expected shape %s, found %s", file->path, name,
                         tensor_shape_format(expected, expected_text),
                         tensor_shape_format(&found, found_text));
    } else if (tensor_shape_count(&found) > 0 &&
               H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        char reason[512];
        status = dd_fail(err, "%s: tensor '%s' (shape %s): cannot read its data, file damaged (%s)",
                         file->path, name, tensor_shape_format(&found, found_text),
                         hdf5_reason(reason, sizeof reason));
    }
    H5Dclose(dataset);
    return status;
}

int tensor_file_read(const TensorFile *file, const char *name, const TensorShape *expected,
                     float *out, DdError *err) {
    Hdf5Quiet saved = hdf5_quiet();
    int status = read_tensor(file, name, expected, out, err);
    hdf5_restore(saved);
    return status;
}

/* Fills entry from link number index of the root group (names sorted);
 * returns 1 for a float dataset, 0 for anything to skip, -1 on error. */
static int list_entry(const TensorFile *file, hsize_t index, TensorFileEntry *entry, DdError *err) {
    ssize_t length = H5Lget_name_by_idx(file->handle, ".", H5_INDEX_NAME, H5_ITER_INC, index, NULL,
                                        0, H5P_DEFAULT);
    if (length < 0) {
        char reason[512];
        return dd_fail(err, "%s: cannot read the name of dataset %llu (%s)", file->path,
                       (unsigned long long)index, hdf5_reason(reason, sizeof reason));
    }
    if (length >= TENSOR_NAME_MAX)
        return dd_fail(err, "%s: dataset %llu has a name of %zd bytes, expected fewer than %d",
                       file->path, (unsigned long long)index, length, TENSOR_NAME_MAX);
    H5Lget_name_by_idx(file->handle, ".", H5_INDEX_NAME, H5_ITER_INC, index, entry->name,
                       sizeof entry->name, H5P_DEFAULT);
    hid_t object = H5Oopen(file->handle, entry->name, H5P_DEFAULT);
    if (object < 0) {
        H5Eclear2(H5E_DEFAULT);
        return 0;  /* e.g. a dangling soft link: not a tensor */
    }
    int kind = 0;
    if (H5Iget_type(object) == H5I_DATASET && dataset_is_float(object)) {
        kind = dataset_shape(object, &entry->shape) == 0
                   ? 1
                   : dd_fail(err, "%s: tensor '%s': expected at most %d dimensions, found more",
                             file->path, entry->name, TENSOR_MAX_DIMS);
    }
    H5Oclose(object);
    return kind;
}

static int list_tensors(const TensorFile *file, TensorFileEntry **entries, int *count, DdError *err) {
    *entries = NULL;
    *count = 0;
    if (file->handle < 0) return dd_fail(err, "%s: file is not open", file->path);
    H5G_info_t root;
    if (H5Gget_info(file->handle, &root) < 0) {
        char reason[512];
        return dd_fail(err, "%s: cannot list the root group (%s)", file->path,
                       hdf5_reason(reason, sizeof reason));
    }
    TensorFileEntry *list = calloc(root.nlinks ? root.nlinks : 1, sizeof *list);
    if (!list) return dd_fail(err, "%s: out of memory listing %llu tensors", file->path,
                              (unsigned long long)root.nlinks);
    int listed = 0;
    for (hsize_t i = 0; i < root.nlinks; i++) {
        int kind = list_entry(file, i, &list[listed], err);
        if (kind < 0) {
            free(list);
            return -1;
        }
        listed += kind;
    }
    *entries = list;
    *count = listed;
    return 0;
}

int tensor_file_list(const TensorFile *file, TensorFileEntry **entries, int *count, DdError *err) {
    Hdf5Quiet saved = hdf5_quiet();
    int status = list_tensors(file, entries, count, err);
    hdf5_restore(saved);
    return status;
}

/* ---- writing ---------------------------------------------------------------------- */

static int open_writer(TensorFileWriter *writer, const char *path, DdError *err) {
    writer->handle = -1;
    writer->temp_path[0] = '\0';
    if (strlen(path) >= sizeof writer->path)
        return dd_fail(err, "%.100s...: path longer than %d bytes", path, TENSOR_FILE_PATH_MAX - 1);
    snprintf(writer->path, sizeof writer->path, "%s", path);
    int length = snprintf(writer->temp_path, sizeof writer->temp_path, "%s.tmp.%ld", path,
                          (long)getpid());
    if (length < 0 || (size_t)length >= sizeof writer->temp_path)
        return dd_fail(err, "%s: path too long for a temporary name", path);
    hid_t handle = H5Fcreate(writer->temp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (handle < 0) {
        char reason[512];
        return dd_fail(err, "%s: cannot create temporary file %s (%s)", path, writer->temp_path,
                       hdf5_reason(reason, sizeof reason));
    }
    writer->handle = handle;
    return 0;
}

int tensor_writer_open(TensorFileWriter *writer, const char *path, DdError *err) {
    Hdf5Quiet saved = hdf5_quiet();
    int status = open_writer(writer, path, err);
    hdf5_restore(saved);
    return status;
}

/* Room for `bytes` more in the file, checked before HDF5 writes them: HDF5
 * 1.10 does not survive a write that fails half-way (a full disk leaves the
 * file in a state that crashes the library when it shuts down), so a full
 * disk or a file-size limit is reported here instead, cleanly. The margin
 * covers the metadata HDF5 writes when the file closes. */
static int check_room(TensorFileWriter *writer, const char *name, long long bytes, DdError *err) {
    const long long margin = 1 << 20;
    hsize_t current = 0;
    H5Fget_filesize(writer->handle, &current);
    struct statvfs fs;
    if (statvfs(writer->temp_path, &fs) == 0) {
        long long free_bytes = (long long)fs.f_bavail * (long long)fs.f_frsize;
        if (bytes + margin > free_bytes)
            return dd_fail(err, "%s: tensor '%s': disk full: expected room for %lld bytes, found %lld free",
                           writer->path, name, bytes + margin, free_bytes);
    }
    struct rlimit limit;
    if (getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
        (long long)current + bytes + margin > (long long)limit.rlim_cur)
        return dd_fail(err, "%s: tensor '%s': file size limit: expected room for %lld bytes, found a limit of "
                       "%lld bytes", writer->path, name, (long long)current + bytes + margin,
                       (long long)limit.rlim_cur);
    return 0;
}

static int add_tensor(TensorFileWriter *writer, const char *name, const TensorShape *shape,
                      const float *data, DdError *err) {
    const char *path = writer->path;
    if (writer->handle < 0) return dd_fail(err, "%s: tensor '%s': writer is not open", path, name);
    if (check_name(path, name, err) != 0) return -1;
    char text[TENSOR_SHAPE_TEXT_MAX];
    if (!shape_is_valid(shape))
        return dd_fail(err, "%s: tensor '%s': expected 0 to %d non-negative dims, found ndim %d",
                       path, name, TENSOR_MAX_DIMS, shape->ndim);
    if (!data && tensor_shape_count(shape) > 0)
        return dd_fail(err, "%s: tensor '%s' (shape %s): no data given", path, name,
                       tensor_shape_format(shape, text));
    if (H5Lexists(writer->handle, name, H5P_DEFAULT) > 0)
        return dd_fail(err, "%s: tensor '%s' written twice", path, name);
    if (check_room(writer, name, (long long)tensor_shape_count(shape) * (long long)sizeof(float), err) != 0)
        return -1;

    hsize_t dims[TENSOR_MAX_DIMS];
    for (int i = 0; i < shape->ndim; i++) dims[i] = (hsize_t)shape->dims[i];
    hid_t space = shape->ndim ? H5Screate_simple(shape->ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t dataset = space < 0 ? -1
                              : H5Dcreate2(writer->handle, name, H5T_IEEE_F32LE, space,
                                           H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = dataset >= 0 &&
             (tensor_shape_count(shape) == 0 ||
              H5Dwrite(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    char reason[512];
    if (!ok) hdf5_reason(reason, sizeof reason);
    if (dataset >= 0) H5Dclose(dataset);
    if (space >= 0) H5Sclose(space);
    if (!ok)
        return dd_fail(err, "%s: tensor '%s' (shape %s): cannot write (%s)", path, name,
                       tensor_shape_format(shape, text), reason);
    return 0;
}

int tensor_writer_add(TensorFileWriter *writer, const char *name, const TensorShape *shape,
                      const float *data, DdError *err) {
    Hdf5Quiet saved = hdf5_quiet();
    int status = add_tensor(writer, name, shape, data, err);
    hdf5_restore(saved);
    return status;
}

/* fsync of a file or a folder, by path; 0 or -1 with errno set. */
static int sync_path(const char *path, int is_folder) {
    int fd = open(path, O_RDONLY | (is_folder ? O_DIRECTORY : 0));
    if (fd < 0) return -1;
    int status = fsync(fd);
    int saved_errno = errno;
    close(fd);
    errno = saved_errno;
    return status;
}

static int commit_writer(TensorFileWriter *writer, DdError *err) {
    if (writer->handle < 0) return dd_fail(err, "%s: writer is not open", writer->path);
    herr_t closed = H5Fclose(writer->handle);
    writer->handle = -1;
    if (closed < 0) {
        char reason[512];
        return dd_fail(err, "%s: cannot finish writing %s (%s)", writer->path, writer->temp_path,
                       hdf5_reason(reason, sizeof reason));
    }
    if (sync_path(writer->temp_path, 0) != 0)
        return dd_fail(err, "%s: cannot sync %s to disk: %s", writer->path, writer->temp_path,
                       strerror(errno));
    if (rename(writer->temp_path, writer->path) != 0)
        return dd_fail(err, "%s: cannot rename %s into place: %s", writer->path, writer->temp_path,
                       strerror(errno));
    char folder[TENSOR_FILE_PATH_MAX];
    snprintf(folder, sizeof folder, "%s", writer->path);
    if (sync_path(dirname(folder), 1) != 0)
        return dd_fail(err, "%s: written, but cannot sync its folder to disk: %s", writer->path,
                       strerror(errno));
    return 0;
}

int tensor_writer_commit(TensorFileWriter *writer, DdError *err) {
    Hdf5Quiet saved = hdf5_quiet();
    int status = commit_writer(writer, err);
    hdf5_restore(saved);
    if (status != 0) remove(writer->temp_path);  /* after a rename this is a no-op */
    return status;
}

void tensor_writer_abort(TensorFileWriter *writer) {
    if (writer->handle >= 0) {
        Hdf5Quiet saved = hdf5_quiet();
        H5Fclose(writer->handle);
        hdf5_restore(saved);
        writer->handle = -1;
    }
    if (writer->temp_path[0]) remove(writer->temp_path);
}

int tensor_file_write(const char *path, const NamedTensor *tensors, int count, DdError *err) {
    TensorFileWriter writer;
    if (tensor_writer_open(&writer, path, err) != 0) return -1;
    for (int i = 0; i < count; i++) {
        if (tensor_writer_add(&writer, tensors[i].name, &tensors[i].shape, tensors[i].data, err) != 0) {
            tensor_writer_abort(&writer);
            return -1;
        }
    }
    return tensor_writer_commit(&writer, err);
}

/* ---- ViT parameters ---------------------------------------------------------------- */

/* The layout of cfg (malloc'ed into *layout, *count entries), after checking
 * that params holds enough floats for it. */
static int vit_layout_for(const ViTConfig *cfg, const ViTParams *params, const char *path,
                          ViTTensorInfo **layout, int *count, DdError *err) {
    *count = vit_tensor_count(cfg);
    *layout = calloc((size_t)*count, sizeof **layout);
    if (!*layout) return dd_fail(err, "%s: out of memory for a layout of %d tensors", path, *count);
    size_t needed = vit_tensor_layout(cfg, *layout);
    if (!params->memory || params->count < needed) {
        free(*layout);
        *layout = NULL;
        return dd_fail(err, "%s: ViT parameters of model '%s': expected a host buffer of %zu floats, found %zu",
                       path, cfg->name, needed, params->memory ? params->count : 0);
    }
    return 0;
}

/* The file name (prefix + layout name) and shape of one layout tensor. */
static int vit_tensor_name_and_shape(const ViTTensorInfo *info, const char *prefix, const char *path,
                                     char name[TENSOR_NAME_MAX], TensorShape *shape, DdError *err) {
    int length = snprintf(name, TENSOR_NAME_MAX, "%s%s", prefix, info->name);
    if (length < 0 || length >= TENSOR_NAME_MAX)
        return dd_fail(err, "%s: tensor name '%s%s' longer than %d bytes", path, prefix, info->name,
                       TENSOR_NAME_MAX - 1);
    shape->ndim = info->ndim;
    for (int d = 0; d < info->ndim; d++) shape->dims[d] = info->shape[d];
    return 0;
}

int tensor_writer_add_vit_params(TensorFileWriter *writer, const char *prefix,
                                 const ViTConfig *cfg, const ViTParams *params, DdError *err) {
    ViTTensorInfo *layout;
    int count;
    if (vit_layout_for(cfg, params, writer->path, &layout, &count, err) != 0) return -1;
    int status = 0;
    for (int i = 0; i < count && status == 0; i++) {
        char name[TENSOR_NAME_MAX];
        TensorShape shape;
        status = vit_tensor_name_and_shape(&layout[i], prefix, writer->path, name, &shape, err);
        if (status == 0)
            status = tensor_writer_add(writer, name, &shape, params->memory + layout[i].offset, err);
    }
    free(layout);
    return status;
}

int tensor_file_read_vit_params(const TensorFile *file, const char *prefix,
                                const ViTConfig *cfg, ViTParams *params, DdError *err) {
    ViTTensorInfo *layout;
    int count;
    if (vit_layout_for(cfg, params, file->path, &layout, &count, err) != 0) return -1;
    int status = 0;
    for (int i = 0; i < count && status == 0; i++) {
        char name[TENSOR_NAME_MAX];
        TensorShape shape;
        status = vit_tensor_name_and_shape(&layout[i], prefix, file->path, name, &shape, err);
        if (status == 0)
            status = tensor_file_read(file, name, &shape, params->memory + layout[i].offset, err);
    }
    free(layout);
    if (status != 0) dd_fail_context(err, "loading model '%s'", cfg->name);
    return status;
}

int vit_params_save(const char *path, const ViTConfig *cfg, const ViTParams *params, DdError *err) {
    TensorFileWriter writer;
    if (tensor_writer_open(&writer, path, err) != 0) return -1;
    if (tensor_writer_add_vit_params(&writer, "", cfg, params, err) != 0) {
        tensor_writer_abort(&writer);
        return -1;
    }
    return tensor_writer_commit(&writer, err);
}

int vit_params_load(const char *path, const ViTConfig *cfg, ViTParams *params, DdError *err) {
    TensorFile file;
    if (tensor_file_open(&file, path, err) != 0) return -1;
    int status = tensor_file_read_vit_params(&file, "", cfg, params, err);
    tensor_file_close(&file);
    return status;
}
