/*
 * folder_index.c - listing an image folder, and its index file: build,
 * write atomically, map, check, look up (see folder_index.h for the format).
 */
#include "data/folder_index.h"

#include "data/problems.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FOLDER_INDEX_MAGIC "DDFIDX1"
enum { FOLDER_INDEX_VERSION = 1, ENDIAN_CHECK = 0x01020304 };

typedef struct FolderIndexHeader {
    char magic[8];
    uint32_t version;
    uint32_t endian_check;
    uint64_t class_count;
    uint64_t image_count;
    uint64_t blob_bytes;
    uint64_t checksum;       /* of every byte after the header */
    uint64_t reserved[2];
} FolderIndexHeader;

struct FolderIndexClass {
    uint64_t name;           /* offset in the blob */
    uint64_t first_image;
    int64_t mtime_ns;
    uint64_t reserved;
};
typedef struct FolderIndexClass FolderIndexClass;

/* ---- listing ------------------------------------------------------------------- */

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 || strcasecmp(dot, ".png") == 0);
}

static int64_t mtime_ns(const struct stat *st) { return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec; }

/* The sorted names of the entries of dir that are folders (want_dirs) or
 * image files; *names is malloc'ed, each name too. */
static int list_entries(const char *dir, int want_dirs, char ***names, size_t *count, DdError *err) {
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return dd_fail(err, "%s: cannot list: %s", dir, strerror(errno));
    size_t capacity = 0;
    struct dirent *e;
    int status = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int is_dir;
        if (e->d_type == DT_DIR) is_dir = 1;
        else if (e->d_type == DT_REG) is_dir = 0;
        else {   /* symlink or unknown file system: ask */
            char path[FOLDER_INDEX_PATH_MAX];
            struct stat st;
            if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path || stat(path, &st) != 0) {
                if (want_dirs) continue;
                is_dir = 0;   /* a dangling link is listed; reading it is reported then */
            } else {
                is_dir = S_ISDIR(st.st_mode);
            }
        }
        if (want_dirs ? !is_dir : (is_dir || !has_image_extension(e->d_name))) continue;
        if (*count == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            char **grown = realloc(*names, capacity * sizeof *grown);
            if (!grown) {
                status = dd_fail(err, "%s: out of memory listing", dir);
                break;
            }
            *names = grown;
        }
        if (!((*names)[*count] = strdup(e->d_name))) {
            status = dd_fail(err, "%s: out of memory listing", dir);
            break;
        }
        (*count)++;
    }
    closedir(d);
    if (*count) qsort(*names, *count, sizeof **names, compare_names);
    return status;
}

int folder_listing_add(FolderListing *l, uint32_t label, const char *name, DdError *err) {
    if (l->file_count == l->file_capacity) {
        size_t capacity = l->file_capacity ? 2 * l->file_capacity : 1024;
        char **files = realloc(l->files, capacity * sizeof *files);
        if (files) l->files = files;
        uint32_t *labels = files ? realloc(l->file_class, capacity * sizeof *labels) : NULL;
        if (!labels) return dd_fail(err, "out of memory for a listing of %zu files", capacity);
        l->file_class = labels;
        l->file_capacity = capacity;
    }
    if (!(l->files[l->file_count] = strdup(name))) return dd_fail(err, "out of memory for a listing");
    l->file_class[l->file_count++] = label;
    return 0;
}

int folder_listing_scan(FolderListing *l, const char *root, int with_files, DdError *err) {
    *l = (FolderListing){0};
    size_t class_count = 0;
    int listed = list_entries(root, 1, &l->classes, &class_count, err);
    l->class_count = (int)class_count;
    if (listed) goto fail;
    if (class_count > INT32_MAX) {
        dd_fail(err, "%s: %zu class folders, expected fewer", root, class_count);
        goto fail;
    }
    if (!(l->class_mtime_ns = calloc(class_count ? class_count : 1, sizeof *l->class_mtime_ns))) {
        dd_fail(err, "%s: out of memory", root);
        goto fail;
    }
    for (int c = 0; c < l->class_count; c++) {
        char dir[FOLDER_INDEX_PATH_MAX];
        struct stat st;
        snprintf(dir, sizeof dir, "%s/%s", root, l->classes[c]);
        if (stat(dir, &st) != 0) {
            dd_fail(err, "%s: cannot stat: %s", dir, strerror(errno));
            goto fail;
        }
        l->class_mtime_ns[c] = mtime_ns(&st);
        if (!with_files) continue;
        char **files = NULL;
        size_t file_count = 0;
        int status = list_entries(dir, 0, &files, &file_count, err);
        for (size_t i = 0; i < file_count; i++) {
            if (status == 0) status = folder_listing_add(l, (uint32_t)c, files[i], err);
            free(files[i]);
        }
        free(files);
        if (status) goto fail;
    }
    return 0;
fail:
    folder_listing_free(l);
    return -1;
}

void folder_listing_free(FolderListing *l) {
    for (int c = 0; c < l->class_count; c++) free(l->classes[c]);
    free(l->classes);
    free(l->class_mtime_ns);
    for (uint64_t i = 0; i < l->file_count; i++) free(l->files[i]);
    free(l->files);
    free(l->file_class);
    *l = (FolderListing){0};
}

/* ---- the index file -------------------------------------------------------------- */

/* A 64-bit checksum, 8 bytes at a time (not cryptographic: it catches a
 * truncated or damaged file). */
static uint64_t checksum(const unsigned char *p, size_t n) {
    uint64_t h = 0x243F6A8885A308D3ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001B3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h ^ (h >> 32);
}

/* Points the index's views into its memory. */
static void set_views(FolderIndex *index) {
    const FolderIndexHeader *h = (const FolderIndexHeader *)index->memory;
    index->class_count = h->class_count;
    index->image_count = h->image_count;
    index->blob_bytes = h->blob_bytes;
    index->class_table = (const FolderIndexClass *)(index->memory + sizeof *h);
    index->names = (const uint64_t *)(index->class_table + h->class_count);
    index->blob = (const char *)(index->names + h->image_count);
}

int folder_index_build(FolderIndex *index, const FolderListing *l, DdError *err) {
    *index = (FolderIndex){0};
    uint64_t blob = 0;
    for (int c = 0; c < l->class_count; c++) blob += strlen(l->classes[c]) + 1;
    for (uint64_t i = 0; i < l->file_count; i++) blob += strlen(l->files[i]) + 1;
    blob = (blob + 7) & ~(uint64_t)7;
    size_t size = sizeof(FolderIndexHeader) + (size_t)l->class_count * sizeof(FolderIndexClass) +
                  (size_t)l->file_count * sizeof(uint64_t) + blob;
    unsigned char *memory = calloc(1, size);
    if (!memory) return dd_fail(err, "out of memory for an index of %zu bytes", size);
    FolderIndexHeader *h = (FolderIndexHeader *)memory;
    memcpy(h->magic, FOLDER_INDEX_MAGIC, 8);
    h->version = FOLDER_INDEX_VERSION;
    h->endian_check = ENDIAN_CHECK;
    h->class_count = (uint64_t)l->class_count;
    h->image_count = l->file_count;
    h->blob_bytes = blob;
    index->memory = memory;
    index->size = size;
    set_views(index);
    FolderIndexClass *classes = (FolderIndexClass *)index->class_table;
    uint64_t *names = (uint64_t *)index->names;
    char *text = (char *)index->blob;
    uint64_t used = 0, file = 0;
    for (int c = 0; c < l->class_count; c++) {
        size_t n = strlen(l->classes[c]) + 1;
        memcpy(text + used, l->classes[c], n);
        classes[c] = (FolderIndexClass){.name = used, .mtime_ns = l->class_mtime_ns[c]};
        used += n;
        while (file < l->file_count && l->file_class[file] < (uint32_t)c) file++;
        classes[c].first_image = file;
    }
    for (uint64_t i = 0; i < l->file_count; i++) {
        if (i > 0 && l->file_class[i] < l->file_class[i - 1]) {
            folder_index_free(index);
            return dd_fail(err, "listing not sorted by class at file %llu ('%s')", (unsigned long long)i,
                           l->files[i]);
        }
        size_t n = strlen(l->files[i]) + 1;
        memcpy(text + used, l->files[i], n);
        names[i] = used;
        used += n;
    }
    h->checksum = checksum(memory + sizeof *h, size - sizeof *h);
    return 0;
}

int folder_index_write(const FolderIndex *index, const char *path, DdError *err) {
    /* host and pid: ranks on several machines may index a shared folder at once */
    char host[64] = "host", temp[FOLDER_INDEX_PATH_MAX + 96];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    snprintf(temp, sizeof temp, "%s.tmp.%s.%ld", path, host, (long)getpid());
    int fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return dd_fail(err, "%s: cannot create: %s", temp, strerror(errno));
    size_t done = 0;
    while (done < index->size) {
        ssize_t n = write(fd, index->memory + done, index->size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    int saved = errno;
    int ok = done == index->size && fsync(fd) == 0;
    if (!ok && done == index->size) saved = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (ok && rename(temp, path) != 0) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        unlink(temp);
        return dd_fail(err, "%s: cannot write the index: %s", path, strerror(saved));
    }
    char folder[FOLDER_INDEX_PATH_MAX];
    snprintf(folder, sizeof folder, "%s", path);
    int dir = open(dirname(folder), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
    return 0;
}

/* Structure checks of a mapped or built index; the checksum only when asked. */
static int check_index(const FolderIndex *index, const char *path, DdError *err) {
    const FolderIndexHeader *h = (const FolderIndexHeader *)index->memory;
    if (index->size < sizeof *h || memcmp(h->magic, FOLDER_INDEX_MAGIC, 8) != 0)
        return dd_fail(err, "%s: not a folder index (bad magic)", path);
    if (h->version != FOLDER_INDEX_VERSION || h->endian_check != ENDIAN_CHECK)
        return dd_fail(err, "%s: folder index version %u, expected %d", path, h->version, FOLDER_INDEX_VERSION);
    uint64_t room = index->size - sizeof *h;
    if (h->class_count > room / sizeof(FolderIndexClass) ||
        h->image_count > (room - h->class_count * sizeof(FolderIndexClass)) / sizeof(uint64_t) ||
        h->blob_bytes != room - h->class_count * sizeof(FolderIndexClass) - h->image_count * sizeof(uint64_t))
        return dd_fail(err, "%s: folder index of %zu bytes does not hold its %llu classes and %llu images", path,
                       index->size, (unsigned long long)h->class_count, (unsigned long long)h->image_count);
    if (checksum(index->memory + sizeof *h, index->size - sizeof *h) != h->checksum)
        return dd_fail(err, "%s: folder index checksum mismatch (damaged file)", path);
    const FolderIndexClass *classes = (const FolderIndexClass *)(index->memory + sizeof *h);
    for (uint64_t c = 0; c < h->class_count; c++)
        if (classes[c].name >= h->blob_bytes || classes[c].first_image > h->image_count ||
            (c > 0 && classes[c].first_image < classes[c - 1].first_image))
            return dd_fail(err, "%s: folder index class %llu is inconsistent", path, (unsigned long long)c);
    if (h->blob_bytes && index->memory[index->size - 1] != 0)
        return dd_fail(err, "%s: folder index names are not terminated", path);
    return 0;
}

int folder_index_map(FolderIndex *index, const char *path, DdError *err) {
    *index = (FolderIndex){0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof(FolderIndexHeader)) {
        close(fd);
        return dd_fail(err, "%s: not a folder index (too short)", path);
    }
    void *memory = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (memory == MAP_FAILED) return dd_fail(err, "%s: cannot map: %s", path, strerror(errno));
    index->memory = memory;
    index->size = (size_t)st.st_size;
    index->mapped = 1;
    if (check_index(index, path, err)) {
        folder_index_free(index);
        return -1;
    }
    set_views(index);
    return 0;
}

void folder_index_free(FolderIndex *index) {
    if (index->memory) {
        if (index->mapped) munmap((void *)index->memory, index->size);
        else free((void *)index->memory);
    }
    *index = (FolderIndex){0};
}

int folder_index_is_current(const FolderIndex *index, const char *root) {
    char **classes = NULL;
    size_t count = 0;
    DdError ignored;
    if (list_entries(root, 1, &classes, &count, &ignored) != 0) return 0;
    int current = count == index->class_count;
    for (size_t c = 0; c < count; c++) {
        if (current) {
            const char *name = folder_index_class_name(index, c);
            char dir[FOLDER_INDEX_PATH_MAX];
            struct stat st;
            snprintf(dir, sizeof dir, "%s/%s", root, classes[c]);
            current = name && strcmp(name, classes[c]) == 0 && stat(dir, &st) == 0 &&
                      mtime_ns(&st) == index->class_table[c].mtime_ns;
        }
        free(classes[c]);
    }
    free(classes);
    return current;
}

int folder_index_location(const char *root, int candidate, char *path, size_t cap) {
    if (candidate == 0) {
        snprintf(path, cap, "%s/.distill-index", root);
        return 0;
    }
    if (candidate != 1) return -1;
    char resolved[PATH_MAX];
    if (!realpath(root, resolved)) snprintf(resolved, sizeof resolved, "%s", root);
    const char *cache = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char folder[FOLDER_INDEX_PATH_MAX];
    if (cache && cache[0]) snprintf(folder, sizeof folder, "%s/dinodistill", cache);
    else if (home && home[0]) snprintf(folder, sizeof folder, "%s/.cache/dinodistill", home);
    else return -1;
    uint64_t h = checksum((const unsigned char *)resolved, strlen(resolved));
    snprintf(path, cap, "%s/folder-%016llx.index", folder, (unsigned long long)h);
    return 0;
}

const char *folder_index_class_name(const FolderIndex *index, uint64_t label) {
    if (label >= index->class_count) return NULL;
    uint64_t offset = index->class_table[label].name;
    return offset < index->blob_bytes ? index->blob + offset : NULL;
}

const char *folder_index_file(const FolderIndex *index, uint64_t i, uint32_t *label) {
    if (i >= index->image_count) return NULL;
    /* the last class whose first image is at most i */
    uint64_t lo = 0, hi = index->class_count;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (index->class_table[mid].first_image <= i) lo = mid;
        else hi = mid;
    }
    *label = (uint32_t)lo;
    uint64_t offset = index->names[i];
    return offset < index->blob_bytes ? index->blob + offset : NULL;
}

/* ---- opening: the current index, or a fresh one ---------------------------------- */

/* A current index from one of the index locations, if there is one. */
static int map_current_index(FolderIndex *index, const char *root) {
    for (int candidate = 0; candidate < 2; candidate++) {
        char path[FOLDER_INDEX_PATH_MAX];
        DdError ignored;
        if (folder_index_location(root, candidate, path, sizeof path) != 0) continue;
        if (folder_index_map(index, path, &ignored) != 0) continue;
        if (folder_index_is_current(index, root)) return 0;
        folder_index_free(index);
    }
    return -1;
}

/* mkdir -p of the folder that holds path. */
static void make_parent_folders(const char *path) {
    char folder[FOLDER_INDEX_PATH_MAX];
    snprintf(folder, sizeof folder, "%s", path);
    char *slash = strrchr(folder, '/');
    if (!slash || slash == folder) return;
    *slash = 0;
    for (char *p = folder + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(folder, 0755);
            *p = '/';
        }
    mkdir(folder, 0755);
}

/* Lists the folder, builds its index and writes it where it can; an index
 * that cannot be written anywhere is still used from memory. */
static int build_index(FolderIndex *index, const char *root, DataProblems *problems, DdError *err) {
    FolderListing listing;
    if (folder_listing_scan(&listing, root, 1, err)) return -1;
    int status = folder_index_build(index, &listing, err);
    folder_listing_free(&listing);
    if (status) return -1;
    char where[2][FOLDER_INDEX_PATH_MAX] = {{0}};
    DdError why[2] = {{{0}}};
    for (int candidate = 0; candidate < 2; candidate++) {
        if (folder_index_location(root, candidate, where[candidate], sizeof where[candidate]) != 0) {
            snprintf(why[candidate].message, sizeof why[candidate].message, "no cache folder (HOME unset)");
            continue;
        }
        if (candidate == 1) make_parent_folders(where[1]);   /* the cache folder may not exist yet */
        if (folder_index_write(index, where[candidate], &why[candidate]) == 0) return 0;
    }
    if (problems)
        data_problems_note(problems, "%s: index kept in memory only: %s; %s", root, why[0].message, why[1].message);
    return 0;
}

int folder_index_open(FolderIndex *index, const char *root, DataProblems *problems, DdError *err) {
    if (map_current_index(index, root) == 0) return 0;
    return build_index(index, root, problems, err);
}
