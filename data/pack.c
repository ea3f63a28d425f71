/*
 * pack.c - image folder to HDF5 shards (see pack.h): the listing comes from
 * the folder's index (folder_index.h), each file is read, checked by
 * decoding it (or its header), and appended to its shard unchanged.
 */
#include "data/pack.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/folder_index.h"
#include "data/image.h"
#include "data/problems.h"
#include "data/shard.h"

static void say(const DataPackOptions *o, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void say(const DataPackOptions *o, const char *format, ...) {
    char line[1400];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    if (o->log) o->log(o->context, line);
    else fprintf(stderr, "pack: %s\n", line);
}

/* Removes shard-*.h5.tmp.* files a killed pack left in out. */
static void remove_stale_temporaries(const DataPackOptions *o) {
    DIR *d = opendir(o->out);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "shard-", 6) != 0 || !strstr(e->d_name, ".h5.tmp.")) continue;
        char path[SHARD_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", o->out, e->d_name);
        if (unlink(path) == 0) say(o, "removed %s, left by an interrupted pack", path);
    }
    closedir(d);
}

/* The class names of the index, NUL-terminated, back to back (malloc'ed). */
static char *class_names_blob(const FolderIndex *index, size_t *bytes) {
    size_t total = 0;
    for (uint64_t c = 0; c < index->class_count; c++) total += strlen(folder_index_class_name(index, c)) + 1;
    char *blob = malloc(total ? total : 1);
    if (!blob) return NULL;
    size_t used = 0;
    for (uint64_t c = 0; c < index->class_count; c++) {
        const char *name = folder_index_class_name(index, c);
        size_t n = strlen(name) + 1;
        memcpy(blob + used, name, n);
        used += n;
    }
    *bytes = total;
    return blob;
}

typedef struct PackState {
    const DataPackOptions *o;
    const FolderIndex *index;
    DataPackResult *result;
    DataPackProgress progress;
    DataBytes bytes;
    DataDecoder decoder;
    DataImage image;
    const char *class_names;
    size_t class_names_bytes;
} PackState;

/* Reads and checks file i; 0 and its bytes in st->bytes if it is good. */
static int check_file(PackState *st, uint64_t i, char *name, size_t name_cap, uint32_t *label) {
    const char *file = folder_index_file(st->index, i, label);
    const char *class_name = file ? folder_index_class_name(st->index, *label) : NULL;
    if (!file || !class_name) {
        say(st->o, "skipped index entry %llu: damaged index", (unsigned long long)i);
        return -1;
    }
    char path[FOLDER_INDEX_PATH_MAX];
    if (snprintf(name, name_cap, "%s/%s", class_name, file) >= (int)name_cap ||
        snprintf(path, sizeof path, "%s/%s", st->o->source, name) >= (int)sizeof path) {
        say(st->o, "skipped %s/%s/%.40s...: path too long", st->o->source, class_name, file);
        return -1;
    }
    DataProblemKind kind;
    DdError why;
    int width, height;
    int status = data_read_file(path, &st->bytes, &kind, &why);
    if (status == 0)
        status = st->o->verify ? data_decode_image(&st->decoder, st->bytes.data, st->bytes.size, &st->image, path,
                                                   &kind, &why)
                               : data_probe_image(&st->decoder, st->bytes.data, st->bytes.size, &width, &height, path,
                                                  &kind, &why);
    if (status) say(st->o, "skipped %s", why.message);
    return status;
}

static int write_shard(PackState *st, int shard, uint64_t first, uint64_t count, const char *path, DdError *err) {
    ShardWriter writer;
    if (shard_writer_open(&writer, path, err)) return -1;
    for (uint64_t i = first; i < first + count; i++) {
        char name[FOLDER_INDEX_PATH_MAX];
        uint32_t label = 0;
        if (check_file(st, i, name, sizeof name, &label) == 0) {
            if (shard_writer_add(&writer, st->bytes.data, st->bytes.size, (int32_t)label, name, err)) {
                shard_writer_abort(&writer);
                return -1;
            }
            st->result->packed++;
            st->progress.bytes += st->bytes.size;
        } else {
            st->result->skipped++;
            st->progress.skipped++;
        }
        st->progress.files_done++;
        if (st->o->progress) st->o->progress(st->o->context, &st->progress);
    }
    ShardInfo info = {.first_file = first, .file_count = count, .total_files = st->index->image_count,
                      .class_count = st->index->class_count};
    (void)shard;
    return shard_writer_commit(&writer, &info, st->class_names, st->class_names_bytes, err);
}

/* 1 if path is a complete shard of exactly these files. */
static int shard_is_done(const char *path, const FolderIndex *index, uint64_t first, uint64_t count, ShardInfo *info) {
    DdError ignored;
    if (access(path, F_OK) != 0 || shard_read_info(path, info, &ignored) != 0) return 0;
    return info->first_file == first && info->file_count == count && info->total_files == index->image_count &&
           info->class_count == index->class_count;
}

int data_pack(const DataPackOptions *o, DataPackResult *result, DdError *err) {
    *result = (DataPackResult){0};
    if (o->shard_size < 1) return dd_fail(err, "pack: shard size %llu, expected at least 1", (unsigned long long)o->shard_size);
    if (mkdir(o->out, 0755) != 0 && errno != EEXIST) return dd_fail(err, "%s: cannot create: %s", o->out, strerror(errno));
    FolderIndex index;
    if (folder_index_open(&index, o->source, NULL, err)) return -1;
    PackState st = {.o = o, .index = &index, .result = result};
    int status = -1;
    char *names = class_names_blob(&index, &st.class_names_bytes);
    st.class_names = names;
    if (!names) {
        dd_fail(err, "pack: out of memory");
        goto done;
    }
    if (data_decoder_init(&st.decoder, err)) goto done;
    remove_stale_temporaries(o);
    result->files = index.image_count;
    const uint64_t shard_count = (index.image_count + o->shard_size - 1) / o->shard_size;
    st.progress = (DataPackProgress){.files_total = index.image_count, .shard_count = (int)shard_count};
    for (uint64_t s = 0; s < shard_count; s++) {
        const uint64_t first = s * o->shard_size;
        const uint64_t count = first + o->shard_size <= index.image_count ? o->shard_size : index.image_count - first;
        char path[SHARD_PATH_MAX];
        snprintf(path, sizeof path, "%s/shard-%05llu.h5", o->out, (unsigned long long)s);
        st.progress.shard = (int)s;
        ShardInfo info;
        if (shard_is_done(path, &index, first, count, &info)) {
            result->shards_kept++;
            result->packed += info.images;
            result->skipped += count - info.images;
            st.progress.skipped += count - info.images;
            st.progress.files_done += count;
            if (o->progress) o->progress(o->context, &st.progress);
            continue;
        }
        if (write_shard(&st, (int)s, first, count, path, err)) goto done;
        result->shards_written++;
    }
    result->bytes = st.progress.bytes;
    status = 0;
done:
    data_decoder_free(&st.decoder);
    data_image_free(&st.image);
    data_bytes_free(&st.bytes);
    free(names);
    folder_index_free(&index);
    return status;
}
