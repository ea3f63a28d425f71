/*
 * source_hdf5.c - `hdf5:PATH-or-glob`: shards written by `distill pack`
 * (format in shard.h), in sorted glob order; a folder means every FOLDER/NAME.h5.
 * Sample ids run through the shards in order.
 *
 * Opening reads each shard's index (offsets, labels) into memory; a source
 * of 1.3M images holds 16 MB of it. Up to HDF5_KEEP_OPEN shards stay open
 * between reads; with more, each read opens its shard (about 0.07 ms here),
 * so a source of 100,000 shards does not hold 100,000 descriptors. A shard that cannot give its sample
 * count (not HDF5, no labels or offsets) is reported and left out; a shard
 * whose count is known but which lacks another dataset, or whose offsets do
 * not fit its images, keeps its ids, and every read of them fails with a
 * report naming the shard and sample (the loader then takes the first
 * sample of the next shard).
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/hdf5_util.h"
#include "data/shard.h"
#include "data/source.h"

enum { HDF5_KEEP_OPEN = 256 };

typedef struct Shard {
    char path[SHARD_PATH_MAX];
    hid_t file, images;          /* -1 when missing, or when the shard is opened per read */
    uint64_t first_id, count;
    uint64_t *offsets;           /* [count + 1], NULL when broken */
    int32_t *labels;             /* [count], NULL when broken */
    char broken[160];            /* why every read fails, "" when it does not */
} Shard;

typedef struct Hdf5Source {
    DataSource base;
    Shard *shards;
    int shard_count;
} Hdf5Source;

static int compare_first_ids(const void *key, const void *element) {
    uint64_t id = *(const uint64_t *)key;
    const Shard *s = element;
    return id < s->first_id ? -1 : id >= s->first_id + s->count ? 1 : 0;
}

/* Appends " (packed from CLASS/FILE)" to err when the shard (open as file) can say. */
static void add_name(hid_t file, uint64_t entry, DdError *err) {
    if (!data_hdf5_has_dataset(file, "names") || !data_hdf5_has_dataset(file, "name_offsets")) return;
    uint64_t bounds[2];
    hsize_t start[1] = {entry}, count[1] = {2};
    hid_t d = H5Dopen2(file, "name_offsets", H5P_DEFAULT);
    hid_t space = d >= 0 ? H5Dget_space(d) : -1, memory = H5Screate_simple(1, count, NULL);
    int ok = space >= 0 && H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
             H5Dread(d, H5T_NATIVE_UINT64, memory, space, H5P_DEFAULT, bounds) >= 0;
    if (space >= 0) H5Sclose(space);
    if (d >= 0) H5Dclose(d);
    H5Sclose(memory);
    char name[512] = "";
    if (ok && bounds[1] > bounds[0] && bounds[1] - bounds[0] < sizeof name) {
        hsize_t name_start[1] = {bounds[0]}, name_count[1] = {bounds[1] - bounds[0]};
        d = H5Dopen2(file, "names", H5P_DEFAULT);
        space = d >= 0 ? H5Dget_space(d) : -1;
        memory = H5Screate_simple(1, name_count, NULL);
        ok = space >= 0 && H5Sselect_hyperslab(space, H5S_SELECT_SET, name_start, NULL, name_count, NULL) >= 0 &&
             H5Dread(d, H5T_NATIVE_UINT8, memory, space, H5P_DEFAULT, name) >= 0;
        if (space >= 0) H5Sclose(space);
        if (d >= 0) H5Dclose(d);
        H5Sclose(memory);
        name[sizeof name - 1] = 0;
        if (ok && name[0]) {
            size_t used = strlen(err->message);
            snprintf(err->message + used, sizeof err->message - used, " (packed from %s)", name);
        }
    }
    H5Eclear2(H5E_DEFAULT);
}

/* The images dataset, without a chunk cache: a read takes each chunk once,
 * straight to the caller. */
static hid_t open_images(hid_t file) {
    hid_t access = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(access, 0, 0, 1.0);
    hid_t images = H5Dopen2(file, "images", access);
    H5Pclose(access);
    return images;
}

static int hdf5_load(DataSource *source, uint64_t id, DataScratch *scratch, DataImage *image, int32_t *label,
                     DataProblemKind *kind, uint64_t *next, DdError *err) {
    const Hdf5Source *s = (const Hdf5Source *)source;
    const Shard *shard = bsearch(&id, s->shards, (size_t)s->shard_count, sizeof *s->shards, compare_first_ids);
    *next = id + 1;
    *kind = DATA_PROBLEM_BAD_SHARD;
    if (!shard) return dd_fail(err, "%s: no shard holds sample id %llu", source->spec, (unsigned long long)id);
    const uint64_t entry = id - shard->first_id;
    if (shard->broken[0]) {
        *next = shard->first_id + shard->count;
        return dd_fail(err, "%s: %s (entry %llu)", shard->path, shard->broken, (unsigned long long)entry);
    }
    uint64_t begin = shard->offsets[entry], end = shard->offsets[entry + 1];
    *label = shard->labels[entry];
    char where[SHARD_PATH_MAX + 48];
    snprintf(where, sizeof where, "%s entry %llu", shard->path, (unsigned long long)entry);
    if (end - begin > (uint64_t)DATA_MAX_FILE_BYTES) {
        *kind = DATA_PROBLEM_TOO_LARGE;
        return dd_fail(err, "%s: %llu bytes, expected at most %d", where, (unsigned long long)(end - begin),
                       DATA_MAX_FILE_BYTES);
    }
    if (data_bytes_reserve(&scratch->bytes, (size_t)(end - begin), err)) return dd_fail_context(err, "%s", where);
    Hdf5Quiet quiet = hdf5_quiet();
    int status = 0;
    hid_t file = shard->file, images = shard->images;
    if (file < 0) {   /* opened per read */
        file = H5Fopen(shard->path, H5F_ACC_RDONLY, H5P_DEFAULT);
        images = file >= 0 ? open_images(file) : -1;
        if (images < 0) {
            char reason[256];
            status = dd_fail(err, "%s: cannot open the shard's images (%s)", where, hdf5_reason(reason, sizeof reason));
        }
    }
    if (status == 0 && end > begin) {
        hsize_t start[1] = {begin}, count[1] = {end - begin};
        hid_t space = H5Dget_space(images), memory = H5Screate_simple(1, count, NULL);
        if (space < 0 || H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(images, H5T_NATIVE_UINT8, memory, space, H5P_DEFAULT, scratch->bytes.data) < 0) {
            char reason[256];
            status = dd_fail(err, "%s: cannot read bytes %llu..%llu of 'images' (%s)", where,
                             (unsigned long long)begin, (unsigned long long)end, hdf5_reason(reason, sizeof reason));
        }
        if (space >= 0) H5Sclose(space);
        H5Sclose(memory);
    }
    if (status == 0)
        status = data_decode_image(&scratch->decoder, scratch->bytes.data, scratch->bytes.size, image, where, kind, err);
    if (status && file >= 0) add_name(file, entry, err);
    if (shard->file < 0) {
        if (images >= 0) H5Dclose(images);
        if (file >= 0) H5Fclose(file);
        H5Eclear2(H5E_DEFAULT);
    }
    hdf5_restore(quiet);
    return status;
}

static void close_shard(Shard *shard) {
    if (shard->images >= 0) H5Dclose(shard->images);
    if (shard->file >= 0) H5Fclose(shard->file);
    free(shard->offsets);
    free(shard->labels);
    shard->images = shard->file = -1;
    shard->offsets = NULL;
    shard->labels = NULL;
}

static void hdf5_close(DataSource *source) {
    Hdf5Source *s = (Hdf5Source *)source;
    Hdf5Quiet quiet = hdf5_quiet();
    for (int i = 0; i < s->shard_count; i++) close_shard(&s->shards[i]);
    H5Eclear2(H5E_DEFAULT);
    hdf5_restore(quiet);
    free(s->shards);
    free(s);
}

static const DataSourceOps hdf5_ops = {hdf5_load, hdf5_close};

/* Opens one shard and reads its index. Returns -1 (err set) when its sample
 * count cannot be known; 0 otherwise, with shard->broken set when its
 * samples cannot be read. */
static int open_shard(Shard *shard, const char *path, int keep_open, uint64_t *classes, DdError *err) {
    *shard = (Shard){.file = -1, .images = -1};
    snprintf(shard->path, sizeof shard->path, "%s", path);
    if (!hdf5_looks_like_file(path)) return dd_fail(err, "%s: not an HDF5 file (no HDF5 signature)", path);
    shard->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (shard->file < 0) {
        char reason[256];
        return dd_fail(err, "%s: cannot open HDF5 file, damaged or truncated (%s)", path,
                       hdf5_reason(reason, sizeof reason));
    }
    int64_t labels = data_hdf5_length(shard->file, "labels"), offsets = data_hdf5_length(shard->file, "offsets");
    int64_t count = labels >= 0 ? labels : offsets > 0 ? offsets - 1 : -1;
    if (count < 0) {
        close_shard(shard);
        return dd_fail(err, "%s: missing datasets 'labels' and 'offsets', cannot tell its samples", path);
    }
    shard->count = (uint64_t)count;
    int64_t bytes = data_hdf5_length(shard->file, "images");
    const char *missing = bytes < 0 ? "images" : labels < 0 ? "labels" : offsets < 0 ? "offsets" : NULL;
    if (missing) {
        snprintf(shard->broken, sizeof shard->broken, "missing dataset '%s'", missing);
        return 0;
    }
    if (offsets != count + 1) {
        snprintf(shard->broken, sizeof shard->broken, "%lld offsets for %lld labels, expected one more",
                 (long long)offsets, (long long)count);
        return 0;
    }
    shard->offsets = malloc((size_t)(count + 1) * sizeof *shard->offsets);
    shard->labels = malloc((size_t)(count ? count : 1) * sizeof *shard->labels);
    if (!shard->offsets || !shard->labels) {
        close_shard(shard);
        return dd_fail(err, "%s: out of memory for the index of %lld images", path, (long long)count);
    }
    DdError why;
    if (data_hdf5_read_all(shard->file, "offsets", H5T_NATIVE_UINT64, count + 1, shard->offsets, path, &why) ||
        data_hdf5_read_all(shard->file, "labels", H5T_NATIVE_INT32, count, shard->labels, path, &why)) {
        snprintf(shard->broken, sizeof shard->broken, "unreadable index");
        return 0;
    }
    for (int64_t i = 0; i < count; i++)
        if (shard->offsets[i] > shard->offsets[i + 1] || shard->labels[i] < 0) {
            snprintf(shard->broken, sizeof shard->broken, "offsets or labels out of order at entry %lld", (long long)i);
            return 0;
        }
    if (shard->offsets[count] > (uint64_t)bytes) {
        snprintf(shard->broken, sizeof shard->broken, "offsets reach byte %llu of %lld in 'images'",
                 (unsigned long long)shard->offsets[count], (long long)bytes);
        return 0;
    }
    shard->images = open_images(shard->file);
    if (shard->images < 0) {
        snprintf(shard->broken, sizeof shard->broken, "cannot open dataset 'images'");
        return 0;
    }
    uint64_t class_count = 0;
    if (data_hdf5_get_u64(shard->file, "class_count", &class_count) != 0)
        for (int64_t i = 0; i < count; i++)
            if ((uint64_t)shard->labels[i] + 1 > class_count) class_count = (uint64_t)shard->labels[i] + 1;
    if (class_count > *classes) *classes = class_count;
    if (!keep_open) {   /* the index is in memory; reads open the file */
        H5Dclose(shard->images);
        H5Fclose(shard->file);
        shard->images = shard->file = -1;
    }
    return 0;
}

int data_source_open_hdf5(DataSource **source, const char *pattern, DataProblems *problems, DdError *err) {
    char expanded[SHARD_PATH_MAX];
    struct stat st;
    if (stat(pattern, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(expanded, sizeof expanded, "%s/*.h5", pattern);
    else snprintf(expanded, sizeof expanded, "%s", pattern);
    glob_t found;
    int rc = glob(expanded, 0, NULL, &found);
    if (rc != 0 || found.gl_pathc == 0) {
        if (rc == 0) globfree(&found);
        return dd_fail(err, "hdf5:%s: no shard matches '%s'", pattern, expanded);
    }
    Hdf5Source *s = calloc(1, sizeof *s);
    Shard *shards = s ? calloc(found.gl_pathc, sizeof *shards) : NULL;
    if (!shards) {
        free(s);
        globfree(&found);
        return dd_fail(err, "hdf5:%s: out of memory for %zu shards", pattern, found.gl_pathc);
    }
    s->shards = shards;
    Hdf5Quiet quiet = hdf5_quiet();
    uint64_t total = 0, classes = 0;
    for (size_t i = 0; i < found.gl_pathc; i++) {
        Shard *shard = &s->shards[s->shard_count];
        DdError why;
        if (open_shard(shard, found.gl_pathv[i], found.gl_pathc <= HDF5_KEEP_OPEN, &classes, &why) != 0) {
            if (problems)
                data_problems_report(problems, DATA_PROBLEM_BAD_SHARD, "%s; its samples are left out", why.message);
            continue;
        }
        if (shard->broken[0] && problems)
            data_problems_report(problems, DATA_PROBLEM_BAD_SHARD, "%s: %s; its %llu samples will be replaced",
                                 shard->path, shard->broken, (unsigned long long)shard->count);
        if (shard->count == 0) {   /* nothing to read: no id of its own */
            close_shard(shard);
            continue;
        }
        shard->first_id = total;
        total += shard->count;
        s->shard_count++;
    }
    hdf5_restore(quiet);
    globfree(&found);
    if (total == 0) {
        hdf5_close(&s->base);
        return dd_fail(err, "hdf5:%s: no readable samples in the shards matching '%s'", pattern, expanded);
    }
    s->base = (DataSource){.ops = &hdf5_ops, .kind = "hdf5", .count = total,
                           .class_count = classes > 0 ? (int)classes : 1};
    *source = &s->base;
    return 0;
}
