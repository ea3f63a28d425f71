/*
 * shard_write.c - writing one HDF5 shard (format in shard.h): the images
 * dataset grows 4 MiB at a time, the index is kept in memory and written at
 * commit, then flush, fsync, rename, fsync of the folder.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/hdf5_util.h"
#include "data/shard.h"

enum { PENDING_BYTES = 4 << 20 };

static int writer_fail(ShardWriter *w, DdError *err, const char *what) {
    char reason[256];
    return dd_fail(err, "%s: cannot %s (%s)", w->temp_path, what, hdf5_reason(reason, sizeof reason));
}

int shard_writer_open(ShardWriter *w, const char *path, DdError *err) {
    *w = (ShardWriter){.file = -1, .images = -1};
    if (strlen(path) >= sizeof w->path) return dd_fail(err, "%.80s...: path too long", path);
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->temp_path, sizeof w->temp_path, "%s.tmp.%ld", path, (long)getpid());
    Hdf5Quiet quiet = hdf5_quiet();
    int status = -1;
    hid_t file = H5Fcreate(w->temp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        writer_fail(w, err, "create the shard");
        goto done;
    }
    w->file = file;
    hsize_t dims[1] = {0}, max_dims[1] = {H5S_UNLIMITED}, chunk[1] = {SHARD_CHUNK_BYTES};
    hid_t space = H5Screate_simple(1, dims, max_dims);
    hid_t properties = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(properties, 1, chunk);
    w->images = H5Dcreate2(file, "images", H5T_STD_U8LE, space, H5P_DEFAULT, properties, H5P_DEFAULT);
    H5Pclose(properties);
    H5Sclose(space);
    if (w->images < 0) {
        writer_fail(w, err, "create dataset 'images'");
        goto done;
    }
    w->offsets = calloc(1, sizeof *w->offsets);
    w->name_offsets = calloc(1, sizeof *w->name_offsets);
    if (!w->offsets || !w->name_offsets) {
        dd_fail(err, "%s: out of memory", w->temp_path);
        goto done;
    }
    status = 0;
done:
    hdf5_restore(quiet);
    if (status) shard_writer_abort(w);
    return status;
}

/* Appends the pending bytes to the images dataset. */
static int flush_pending(ShardWriter *w, DdError *err) {
    if (w->pending_size == 0) return 0;
    hsize_t size[1] = {w->written + w->pending_size}, start[1] = {w->written}, count[1] = {w->pending_size};
    if (H5Dset_extent(w->images, size) < 0) return writer_fail(w, err, "extend dataset 'images'");
    hid_t file_space = H5Dget_space(w->images);
    hid_t memory_space = H5Screate_simple(1, count, NULL);
    herr_t status = H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, count, NULL);
    if (status >= 0) status = H5Dwrite(w->images, H5T_NATIVE_UINT8, memory_space, file_space, H5P_DEFAULT, w->pending);
    H5Sclose(memory_space);
    H5Sclose(file_space);
    if (status < 0) return writer_fail(w, err, "write dataset 'images'");
    w->written += w->pending_size;
    w->pending_size = 0;
    return 0;
}

static int grow(void **p, size_t *capacity, size_t need, size_t elem, DdError *err) {
    if (need <= *capacity) return 0;
    size_t next = *capacity ? *capacity : 256;
    while (next < need) next *= 2;
    void *q = realloc(*p, next * elem);
    if (!q) return dd_fail(err, "out of memory for %zu bytes of a shard", next * elem);
    *p = q;
    *capacity = next;
    return 0;
}

int shard_writer_add(ShardWriter *w, const unsigned char *bytes, size_t size, int32_t label, const char *name,
                     DdError *err) {
    size_t name_size = strlen(name) + 1, capacity = w->capacity, old_capacity = w->capacity;
    if (w->count + 2 > capacity) {
        if (grow((void **)&w->labels, &capacity, w->count + 2, sizeof *w->labels, err)) return -1;
        capacity = old_capacity;
        if (grow((void **)&w->offsets, &capacity, w->count + 2, sizeof *w->offsets, err)) return -1;
        capacity = old_capacity;
        if (grow((void **)&w->name_offsets, &capacity, w->count + 2, sizeof *w->name_offsets, err)) return -1;
        w->capacity = capacity;
    }
    if (grow((void **)&w->names, &w->names_capacity, w->names_size + name_size, 1, err)) return -1;
    Hdf5Quiet quiet = hdf5_quiet();
    int status = 0;
    if (w->pending_size + size > PENDING_BYTES) status = flush_pending(w, err);
    if (status == 0 && size > PENDING_BYTES) {   /* a huge file goes straight through */
        w->pending_size = 0;
        unsigned char *saved = w->pending;
        size_t saved_capacity = w->pending_capacity;
        w->pending = (unsigned char *)bytes;
        w->pending_size = size;
        status = flush_pending(w, err);
        w->pending = saved;
        w->pending_capacity = saved_capacity;
        w->pending_size = 0;
    } else if (status == 0) {
        status = grow((void **)&w->pending, &w->pending_capacity, w->pending_size + size, 1, err);
        if (status == 0) {
            memcpy(w->pending + w->pending_size, bytes, size);
            w->pending_size += size;
        }
    }
    hdf5_restore(quiet);
    if (status) return -1;
    memcpy(w->names + w->names_size, name, name_size);
    w->names_size += name_size;
    w->labels[w->count] = label;
    w->offsets[w->count + 1] = w->offsets[w->count] + size;
    w->name_offsets[w->count + 1] = w->names_size;
    w->count++;
    return 0;
}

static int write_index(ShardWriter *w, const ShardInfo *info, const char *class_names, size_t class_names_bytes,
                       DdError *err) {
    hid_t f = (hid_t)w->file;
    if (flush_pending(w, err) ||
        data_hdf5_write_1d(f, "offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, w->offsets, w->count + 1, 0, w->temp_path,
                           err) ||
        data_hdf5_write_1d(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, w->labels, w->count, 0, w->temp_path, err) ||
        data_hdf5_write_1d(f, "names", H5T_STD_U8LE, H5T_NATIVE_UINT8, w->names, w->names_size, SHARD_CHUNK_BYTES,
                           w->temp_path, err) ||
        data_hdf5_write_1d(f, "name_offsets", H5T_STD_U64LE, H5T_NATIVE_UINT64, w->name_offsets, w->count + 1, 0,
                           w->temp_path, err) ||
        data_hdf5_write_1d(f, "class_names", H5T_STD_U8LE, H5T_NATIVE_UINT8, class_names, class_names_bytes, 0,
                           w->temp_path, err))
        return -1;
    if (data_hdf5_set_text(f, "format", SHARD_FORMAT) || data_hdf5_set_u64(f, "version", SHARD_VERSION) ||
        data_hdf5_set_u64(f, "class_count", info->class_count) ||
        data_hdf5_set_u64(f, "first_file", info->first_file) ||
        data_hdf5_set_u64(f, "file_count", info->file_count) ||
        data_hdf5_set_u64(f, "total_files", info->total_files))
        return writer_fail(w, err, "write the shard's attributes");
    return 0;
}

static void free_buffers(ShardWriter *w) {
    free(w->pending);
    free(w->offsets);
    free(w->labels);
    free(w->name_offsets);
    free(w->names);
    w->pending = NULL;
    w->offsets = w->name_offsets = NULL;
    w->labels = NULL;
    w->names = NULL;
}

int shard_writer_commit(ShardWriter *w, const ShardInfo *info, const char *class_names, size_t class_names_bytes,
                        DdError *err) {
    Hdf5Quiet quiet = hdf5_quiet();
    int status = write_index(w, info, class_names, class_names_bytes, err);
    H5Dclose((hid_t)w->images);
    w->images = -1;
    if (status == 0 && H5Fflush((hid_t)w->file, H5F_SCOPE_GLOBAL) < 0) status = writer_fail(w, err, "flush the shard");
    if (H5Fclose((hid_t)w->file) < 0 && status == 0) status = writer_fail(w, err, "close the shard");
    w->file = -1;
    hdf5_restore(quiet);
    free_buffers(w);
    if (status == 0) {
        int fd = open(w->temp_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0) status = dd_fail(err, "%s: cannot sync: %s", w->temp_path, strerror(errno));
        if (fd >= 0) close(fd);
    }
    if (status == 0 && rename(w->temp_path, w->path) != 0)
        status = dd_fail(err, "%s: cannot rename to %s: %s", w->temp_path, w->path, strerror(errno));
    if (status) {
        unlink(w->temp_path);
        return -1;
    }
    char folder[SHARD_PATH_MAX];
    snprintf(folder, sizeof folder, "%s", w->path);
    int dir = open(dirname(folder), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
    return 0;
}

void shard_writer_abort(ShardWriter *w) {
    Hdf5Quiet quiet = hdf5_quiet();
    if (w->images >= 0) H5Dclose((hid_t)w->images);
    if (w->file >= 0) H5Fclose((hid_t)w->file);
    H5Eclear2(H5E_DEFAULT);
    hdf5_restore(quiet);
    w->images = w->file = -1;
    free_buffers(w);
    if (w->temp_path[0]) unlink(w->temp_path);
}

int shard_read_info(const char *path, ShardInfo *info, DdError *err) {
    *info = (ShardInfo){0};
    if (!hdf5_looks_like_file(path)) return dd_fail(err, "%s: not an HDF5 file", path);
    Hdf5Quiet quiet = hdf5_quiet();
    int status = -1;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    char format[64] = "";
    uint64_t version = 0;
    int64_t labels = -1;
    if (f < 0) {
        char reason[256];
        dd_fail(err, "%s: cannot open (%s)", path, hdf5_reason(reason, sizeof reason));
    } else if (data_hdf5_get_text(f, "format", format, sizeof format) != 0 || strcmp(format, SHARD_FORMAT) != 0 ||
               data_hdf5_get_u64(f, "version", &version) != 0 || version != SHARD_VERSION) {
        dd_fail(err, "%s: not a %s version %d file", path, SHARD_FORMAT, SHARD_VERSION);
    } else if (data_hdf5_get_u64(f, "first_file", &info->first_file) || data_hdf5_get_u64(f, "file_count", &info->file_count) ||
               data_hdf5_get_u64(f, "total_files", &info->total_files) ||
               data_hdf5_get_u64(f, "class_count", &info->class_count) ||
               (labels = data_hdf5_length(f, "labels")) < 0 || data_hdf5_length(f, "images") < 0 ||
               data_hdf5_length(f, "offsets") != labels + 1) {
        dd_fail(err, "%s: shard attributes or datasets missing", path);
    } else {
        info->images = (uint64_t)labels;
        status = 0;
    }
    if (f >= 0) H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    hdf5_restore(quiet);
    return status;
}
