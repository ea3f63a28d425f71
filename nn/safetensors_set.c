/*
 * safetensors_set.c - one file, a sharded index or a model folder, opened
 * as one collection of named tensors (safetensors_set.h).
 */
#include "nn/safetensors_set.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/json.h"

/* ---- the index ------------------------------------------------------------------------ */

static int compare_weight_names(const void *a, const void *b) {
    return strcmp(((const SafetensorsIndexWeight *)a)->name, ((const SafetensorsIndexWeight *)b)->name);
}

/* A shard file name that stays inside the index's folder. */
static int shard_name_is_safe(const char *name) {
    return name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* The shard number of file name, adding it when new. */
static int shard_number(SafetensorsIndex *index, const char *name, const char *path, DdError *err) {
    for (int i = index->shard_count - 1; i >= 0; i--)   /* shards are mostly listed in runs */
        if (strcmp(index->shards[i], name) == 0) return i;
    if (index->shard_count >= SAFETENSORS_MAX_SHARDS)
        return dd_fail(err, "%s: expected at most %d shard files, found more", path, SAFETENSORS_MAX_SHARDS);
    char **shards = realloc(index->shards, (size_t)(index->shard_count + 1) * sizeof *shards);
    if (!shards) return dd_fail(err, "%s: out of memory", path);
    index->shards = shards;
    if (!(shards[index->shard_count] = strdup(name))) return dd_fail(err, "%s: out of memory", path);
    return index->shard_count++;
}

static int parse_weight_map(SafetensorsIndex *index, JsonCursor *json, const char *path, DdError *err) {
    char name[TENSOR_NAME_MAX], shard[256];
    int capacity = 0, more;
    if (json_object_begin(json, err) != 0) return -1;
    while ((more = json_object_next(json, name, sizeof name, err)) == 1) {
        if (json_read_string(json, shard, sizeof shard, NULL, err) != 0) return -1;
        if (!shard_name_is_safe(shard))
            return dd_fail(err, "%s: tensor '%s': expected a shard file name in the index's folder, found '%s'",
                           path, name, shard);
        if (index->weight_count >= SAFETENSORS_MAX_TENSORS)
            return dd_fail(err, "%s: expected at most %d tensors, found more", path, SAFETENSORS_MAX_TENSORS);
        if (index->weight_count == capacity) {
            capacity = capacity ? 2 * capacity : 256;
            SafetensorsIndexWeight *weights = realloc(index->weights, (size_t)capacity * sizeof *weights);
            if (!weights) return dd_fail(err, "%s: out of memory", path);
            index->weights = weights;
        }
        int number = shard_number(index, shard, path, err);
        if (number < 0) return -1;
        SafetensorsIndexWeight *w = &index->weights[index->weight_count];
        if (!(w->name = strdup(name))) return dd_fail(err, "%s: out of memory", path);
        w->shard = number;
        index->weight_count++;
    }
    return more;
}

int safetensors_index_parse(SafetensorsIndex *index, const char *text, size_t length, const char *path,
                            DdError *err) {
    memset(index, 0, sizeof *index);
    JsonCursor json;
    json_cursor_init(&json, text, length, path);
    char key[64];
    int more, seen_map = 0, status = json_object_begin(&json, err);
    while (status == 0 && (more = json_object_next(&json, key, sizeof key, err)) == 1) {
        if (strcmp(key, "weight_map") == 0) {
            status = seen_map++ ? dd_fail(err, "%s: expected weight_map once, found it twice", path)
                                : parse_weight_map(index, &json, path, err);
        } else {
            status = json_skip_value(&json, err);
        }
    }
    if (status == 0 && more < 0) status = -1;
    if (status == 0) status = json_expect_end(&json, err);
    if (status == 0 && !seen_map) status = dd_fail(err, "%s: expected a weight_map, found none", path);
    if (status == 0 && index->weight_count > 1) {
        qsort(index->weights, (size_t)index->weight_count, sizeof *index->weights, compare_weight_names);
        for (int i = 1; i < index->weight_count && status == 0; i++)
            if (strcmp(index->weights[i - 1].name, index->weights[i].name) == 0)
                status = dd_fail(err, "%s: expected each tensor once in weight_map, found '%s' twice", path,
                                 index->weights[i].name);
    }
    if (status != 0) safetensors_index_free(index);
    return status;
}

void safetensors_index_free(SafetensorsIndex *index) {
    for (int i = 0; i < index->shard_count; i++) free(index->shards[i]);
    for (int i = 0; i < index->weight_count; i++) free(index->weights[i].name);
    free(index->shards);
    free(index->weights);
    memset(index, 0, sizeof *index);
}

/* The whole of a small text file (at most SAFETENSORS_MAX_HEADER_BYTES). */
static int read_text_file(const char *path, char **text, size_t *length, DdError *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);   /* a FIFO must not block the open */
    if (fd < 0) return dd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat info;
    int status = 0;
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode))
        status = dd_fail(err, "%s: expected a regular file", path);
    else if ((unsigned long long)info.st_size > SAFETENSORS_MAX_HEADER_BYTES)
        status = dd_fail(err, "%s: expected an index of at most %llu bytes, found %lld", path,
                         SAFETENSORS_MAX_HEADER_BYTES, (long long)info.st_size);
    else if (!(*text = malloc((size_t)info.st_size + 1)))
        status = dd_fail(err, "%s: out of memory", path);
    size_t done = 0;
    while (status == 0 && done < (size_t)info.st_size) {
        ssize_t n = read(fd, *text + done, (size_t)info.st_size - done);
        if (n <= 0) status = dd_fail(err, "%s: cannot read: %s", path, n < 0 ? strerror(errno) : "file shrank");
        else done += (size_t)n;
    }
    close(fd);
    if (status != 0) {
        free(*text);
        *text = NULL;
        return -1;
    }
    *length = done;
    return 0;
}

/* ---- the set ---------------------------------------------------------------------------- */

static int compare_entry_names(const void *a, const void *b) {
    return strcmp(((const SafetensorsEntry *)a)->tensor->name, ((const SafetensorsEntry *)b)->tensor->name);
}

static int allocate_files(SafetensorsSet *set, int count, DdError *err) {
    set->files = calloc((size_t)count, sizeof *set->files);
    if (!set->files) return dd_fail(err, "%s: out of memory", set->path);
    return 0;
}

/* One file: every tensor is an entry. */
static int open_single(SafetensorsSet *set, const char *path, DdError *err) {
    if (allocate_files(set, 1, err) != 0) return -1;
    if (safetensors_open(&set->files[0], path, err) != 0) return -1;
    set->file_count = 1;
    const SafetensorsHeader *h = &set->files[0].header;
    set->entries = malloc((size_t)(h->count ? h->count : 1) * sizeof *set->entries);
    if (!set->entries) return dd_fail(err, "%s: out of memory", path);
    for (int i = 0; i < h->count; i++) set->entries[i] = (SafetensorsEntry){&h->tensors[i], &set->files[0]};
    set->count = h->count;   /* the header is sorted by name already */
    return 0;
}

/* The shards an index names, and the entries it lists. */
static int open_index(SafetensorsSet *set, const char *path, DdError *err) {
    char *text = NULL;
    size_t length = 0;
    SafetensorsIndex index;
    if (read_text_file(path, &text, &length, err) != 0) return -1;
    int status = safetensors_index_parse(&index, text, length, path, err);
    free(text);
    if (status != 0) return -1;

    char folder[TENSOR_FILE_PATH_MAX];
    const char *slash = strrchr(path, '/');
    snprintf(folder, sizeof folder, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    status = allocate_files(set, index.shard_count ? index.shard_count : 1, err);
    for (int i = 0; i < index.shard_count && status == 0; i++) {
        char shard_path[TENSOR_FILE_PATH_MAX];
        if ((size_t)snprintf(shard_path, sizeof shard_path, "%s/%s", folder, index.shards[i]) >= sizeof shard_path)
            status = dd_fail(err, "%s: shard path %s/%s is too long", path, folder, index.shards[i]);
        else if ((status = safetensors_open(&set->files[i], shard_path, err)) != 0)
            dd_fail_context(err, "%s: shard '%s'", path, index.shards[i]);
        else
            set->file_count++;
    }
    if (status == 0 && !(set->entries = malloc((size_t)(index.weight_count ? index.weight_count : 1) *
                                               sizeof *set->entries)))
        status = dd_fail(err, "%s: out of memory", path);
    for (int i = 0; i < index.weight_count && status == 0; i++) {
        const SafetensorsIndexWeight *w = &index.weights[i];
        const SafetensorsFile *shard = &set->files[w->shard];
        const SafetensorsTensor *tensor = safetensors_find(shard, w->name);
        if (!tensor)
            status = dd_fail(err, "%s: tensor '%s' is listed in shard '%s', but that file does not hold it", path,
                             w->name, index.shards[w->shard]);
        else
            set->entries[set->count++] = (SafetensorsEntry){tensor, shard};
    }
    safetensors_index_free(&index);
    return status;   /* entries are sorted: the index's weights were */
}

int safetensors_set_open(SafetensorsSet *set, const char *path, DdError *err) {
    memset(set, 0, sizeof *set);
    if (strlen(path) + 40 >= sizeof set->path)
        return dd_fail(err, "%.200s...: expected a shorter path", path);
    snprintf(set->path, sizeof set->path, "%s", path);
    struct stat info;
    if (stat(path, &info) != 0) return dd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    int status;
    size_t length = strlen(path);
    if (S_ISDIR(info.st_mode)) {
        char candidate[TENSOR_FILE_PATH_MAX];
        snprintf(candidate, sizeof candidate, "%s/model.safetensors.index.json", path);
        if (access(candidate, F_OK) == 0) {
            status = open_index(set, candidate, err);
        } else {
            snprintf(candidate, sizeof candidate, "%s/model.safetensors", path);
            status = access(candidate, F_OK) == 0
                ? open_single(set, candidate, err)
                : dd_fail(err, "%s: expected a folder holding model.safetensors.index.json or model.safetensors, "
                          "found neither", path);
        }
    } else if (length >= 5 && strcmp(path + length - 5, ".json") == 0) {
        status = open_index(set, path, err);
    } else {
        status = open_single(set, path, err);
    }
    if (status != 0) safetensors_set_close(set);
    return status;
}

void safetensors_set_close(SafetensorsSet *set) {
    for (int i = 0; i < set->file_count; i++) safetensors_close(&set->files[i]);
    free(set->files);
    free(set->entries);
    set->files = NULL;
    set->entries = NULL;
    set->file_count = set->count = 0;
}

const SafetensorsEntry *safetensors_set_find(const SafetensorsSet *set, const char *name) {
    if (set->count == 0) return NULL;
    SafetensorsTensor tensor = {.name = name};
    SafetensorsEntry key = {.tensor = &tensor};
    return bsearch(&key, set->entries, (size_t)set->count, sizeof *set->entries, compare_entry_names);
}

int safetensors_set_read(const SafetensorsSet *set, const char *name, const TensorShape *expected, float *out,
                         DdError *err) {
    const SafetensorsEntry *entry = safetensors_set_find(set, name);
    if (!entry) {
        char want[TENSOR_SHAPE_TEXT_MAX];
        return dd_fail(err, "%s: tensor '%s' of shape %s is missing", set->path, name,
                       tensor_shape_format(expected, want));
    }
    return safetensors_read(entry->file, name, expected, out, err);
}
