/*
 * checkpoint.c - atomic, checksummed checkpoint folders (see checkpoint.h).
 *
 * MANIFEST format, one line per file, then an end line that proves the
 * manifest itself was written whole:
 *     dinodistill-checkpoint 1 iteration N
 *     file NAME SIZE CRC32(hex)
 *     end FILE_COUNT
 */
#include "nn/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MANIFEST_NAME "MANIFEST"
#define MANIFEST_HEADER "dinodistill-checkpoint 1 iteration"
#define PARTIAL_SUFFIX ".partial"

typedef struct FileSummary {
    char name[256];
    long long size;
    unsigned long crc;
} FileSummary;

static int join(char *out, size_t size, const char *a, const char *b, DdError *err) {
    int n = snprintf(out, size, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= size) return dd_fail(err, "path too long: %s/%s", a, b);
    return 0;
}

static int make_dir(const char *path, DdError *err) {
    if (mkdir(path, 0755) == 0 || errno == EEXIST) return 0;
    return dd_fail(err, "%s: cannot create folder: %s", path, strerror(errno));
}

static int sync_path(const char *path, int directory, DdError *err) {
    int fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return dd_fail(err, "%s: cannot open to sync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc != 0) return dd_fail(err, "%s: fsync failed: %s", path, strerror(saved));
    return 0;
}

/* Removes a folder and the plain files in it (checkpoint folders are flat). */
static void remove_folder(const char *path) {
    DIR *dir = opendir(path);
    if (dir) {
        struct dirent *entry;
        char file[CHECKPOINT_PATH_MAX];
        while ((entry = readdir(dir)) != NULL) {
            if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
            if (join(file, sizeof file, path, entry->d_name, NULL) == 0) unlink(file);
        }
        closedir(dir);
    }
    rmdir(path);
}

static int summarize_file(const char *folder, const char *name, FileSummary *summary, DdError *err) {
    char path[CHECKPOINT_PATH_MAX];
    if (join(path, sizeof path, folder, name, err) != 0) return -1;
    FILE *file = fopen(path, "rb");
    if (!file) return dd_fail(err, "%s: cannot read: %s", path, strerror(errno));
    unsigned char buffer[1 << 16];
    unsigned long crc = crc32(0L, Z_NULL, 0);
    long long size = 0;
    size_t got;
    while ((got = fread(buffer, 1, sizeof buffer, file)) > 0) {
        crc = crc32(crc, buffer, (uInt)got);
        size += (long long)got;
    }
    int failed = ferror(file);
    fclose(file);
    if (failed) return dd_fail(err, "%s: read error", path);
    snprintf(summary->name, sizeof summary->name, "%s", name);
    summary->size = size;
    summary->crc = crc;
    return 0;
}

int checkpoint_begin(CheckpointWriter *writer, const char *run_dir, long iteration, DdError *err) {
    memset(writer, 0, sizeof *writer);
    if (iteration < 0) return dd_fail(err, "checkpoint: expected an iteration >= 0, found %ld", iteration);
    snprintf(writer->run_dir, sizeof writer->run_dir, "%s", run_dir);
    writer->iteration = iteration;
    char checkpoints[CHECKPOINT_PATH_MAX], leaf[64];
    if (make_dir(run_dir, err) != 0) return -1;
    if (join(checkpoints, sizeof checkpoints, run_dir, "checkpoints", err) != 0) return -1;
    if (make_dir(checkpoints, err) != 0) return -1;
    snprintf(leaf, sizeof leaf, "iter_%09ld" PARTIAL_SUFFIX, iteration);
    if (join(writer->partial_dir, sizeof writer->partial_dir, checkpoints, leaf, err) != 0) return -1;
    remove_folder(writer->partial_dir);
    return make_dir(writer->partial_dir, err);
}

int checkpoint_file_path(const CheckpointWriter *writer, const char *name, char *path, size_t size,
                         DdError *err) {
    if (!name[0] || strchr(name, '/') || strcmp(name, MANIFEST_NAME) == 0 || strlen(name) >= 256)
        return dd_fail(err, "checkpoint: expected a plain file name other than %s, found '%s'", MANIFEST_NAME,
                       name);
    return join(path, size, writer->partial_dir, name, err);
}

static int write_manifest(const char *folder, long iteration, const FileSummary *files, int count,
                          DdError *err) {
    char path[CHECKPOINT_PATH_MAX], temporary[CHECKPOINT_PATH_MAX];
    if (join(path, sizeof path, folder, MANIFEST_NAME, err) != 0) return -1;
    if (join(temporary, sizeof temporary, folder, MANIFEST_NAME ".tmp", err) != 0) return -1;
    FILE *out = fopen(temporary, "w");
    if (!out) return dd_fail(err, "%s: cannot write: %s", temporary, strerror(errno));
    fprintf(out, MANIFEST_HEADER " %ld\n", iteration);
    for (int i = 0; i < count; i++)
        fprintf(out, "file %s %lld %08lx\n", files[i].name, files[i].size, files[i].crc);
    fprintf(out, "end %d\n", count);
    int failed = fflush(out) != 0 || fsync(fileno(out)) != 0;
    int saved = errno;
    failed |= fclose(out) != 0;
    if (failed) {
        unlink(temporary);
        return dd_fail(err, "%s: write failed: %s", temporary, strerror(saved));
    }
    if (rename(temporary, path) != 0) return dd_fail(err, "%s: rename failed: %s", path, strerror(errno));
    return 0;
}

/* Newest-first list of complete checkpoint iterations in RUN/checkpoints. */
static int list_iterations(const char *checkpoints, long *iterations, int capacity, DdError *err) {
    DIR *dir = opendir(checkpoints);
    if (!dir) {
        if (errno == ENOENT) return 0;
        return dd_fail(err, "%s: cannot list: %s", checkpoints, strerror(errno));
    }
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        long iteration;
        char tail;
        if (sscanf(entry->d_name, "iter_%ld%c", &iteration, &tail) != 1) continue;
        if (count < capacity) iterations[count++] = iteration;
    }
    closedir(dir);
    for (int i = 1; i < count; i++)   /* insertion sort, newest first */
        for (int j = i; j > 0 && iterations[j] > iterations[j - 1]; j--) {
            long t = iterations[j];
            iterations[j] = iterations[j - 1];
            iterations[j - 1] = t;
        }
    return count;
}

static void prune(const char *checkpoints, int keep) {
    long iterations[1024];
    int count = list_iterations(checkpoints, iterations, 1024, NULL);
    for (int i = keep; i < count; i++) {
        char leaf[64], folder[CHECKPOINT_PATH_MAX];
        snprintf(leaf, sizeof leaf, "iter_%09ld", iterations[i]);
        if (join(folder, sizeof folder, checkpoints, leaf, NULL) == 0) remove_folder(folder);
    }
}

int checkpoint_commit(CheckpointWriter *writer, int keep, DdError *err) {
    if (keep < 1) return dd_fail(err, "checkpoint: expected keep >= 1, found %d", keep);
    FileSummary *files = calloc(CHECKPOINT_MAX_FILES, sizeof *files);
    if (!files) return dd_fail(err, "checkpoint: out of memory");
    int count = 0, status = -1;
    DIR *dir = opendir(writer->partial_dir);
    if (!dir) {
        dd_fail(err, "%s: cannot list: %s", writer->partial_dir, strerror(errno));
        goto done;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        /* skip dot files, the manifest, and temporaries of writers that failed */
        if (entry->d_name[0] == '.' || strcmp(entry->d_name, MANIFEST_NAME) == 0 ||
            strstr(entry->d_name, ".tmp"))
            continue;
        if (count == CHECKPOINT_MAX_FILES) {
            closedir(dir);
            dd_fail(err, "%s: more than %d files", writer->partial_dir, CHECKPOINT_MAX_FILES);
            goto done;
        }
        char path[CHECKPOINT_PATH_MAX];
        if (summarize_file(writer->partial_dir, entry->d_name, &files[count], err) != 0 ||
            join(path, sizeof path, writer->partial_dir, entry->d_name, err) != 0 ||
            sync_path(path, 0, err) != 0) {
            closedir(dir);
            goto done;
        }
        count++;
    }
    closedir(dir);

    char checkpoints[CHECKPOINT_PATH_MAX], leaf[64], final_dir[CHECKPOINT_PATH_MAX];
    if (write_manifest(writer->partial_dir, writer->iteration, files, count, err) != 0 ||
        sync_path(writer->partial_dir, 1, err) != 0 ||
        join(checkpoints, sizeof checkpoints, writer->run_dir, "checkpoints", err) != 0)
        goto done;
    snprintf(leaf, sizeof leaf, "iter_%09ld", writer->iteration);
    if (join(final_dir, sizeof final_dir, checkpoints, leaf, err) != 0) goto done;
    remove_folder(final_dir);   /* an older checkpoint of the same iteration (a re-run) */
    if (rename(writer->partial_dir, final_dir) != 0) {
        dd_fail(err, "%s: rename to %s failed: %s", writer->partial_dir, final_dir, strerror(errno));
        goto done;
    }
    if (sync_path(checkpoints, 1, err) != 0) goto done;
    prune(checkpoints, keep);
    status = 0;
done:
    free(files);
    return status;
}

void checkpoint_abandon(CheckpointWriter *writer) {
    if (writer->partial_dir[0]) remove_folder(writer->partial_dir);
}

int checkpoint_verify(const char *folder, DdError *err) {
    char path[CHECKPOINT_PATH_MAX];
    if (join(path, sizeof path, folder, MANIFEST_NAME, err) != 0) return -1;
    FILE *manifest = fopen(path, "r");
    if (!manifest) return dd_fail(err, "%s: cannot read: %s", path, strerror(errno));
    char line[512];
    int status = -1, files = 0, line_number = 1;
    long iteration;
    if (!fgets(line, sizeof line, manifest) || sscanf(line, MANIFEST_HEADER " %ld", &iteration) != 1) {
        dd_fail(err, "%s:1: expected '" MANIFEST_HEADER " N', found '%.60s'", path, line);
        goto done;
    }
    while (fgets(line, sizeof line, manifest)) {
        line_number++;
        char name[256];
        long long size;
        unsigned long crc;
        int end_count;
        if (sscanf(line, "end %d", &end_count) == 1) {
            if (end_count != files) {
                dd_fail(err, "%s:%d: expected end %d, found end %d", path, line_number, files, end_count);
                goto done;
            }
            status = 0;
            goto done;
        }
        if (sscanf(line, "file %255s %lld %lx", name, &size, &crc) != 3) {
            dd_fail(err, "%s:%d: expected 'file NAME SIZE CRC', found '%.60s'", path, line_number, line);
            goto done;
        }
        FileSummary found;
        if (summarize_file(folder, name, &found, err) != 0) goto done;
        if (found.size != size || found.crc != crc) {
            dd_fail(err, "%s/%s: expected %lld bytes with CRC-32 %08lx as the manifest says, found %lld bytes "
                    "with CRC-32 %08lx", folder, name, size, crc, found.size, found.crc);
            goto done;
        }
        files++;
    }
    dd_fail(err, "%s: expected a final 'end' line, found a truncated manifest", path);
done:
    fclose(manifest);
    return status;
}

int checkpoint_find_latest(const char *run_dir, char *folder, size_t folder_size, long *iteration,
                           CheckpointWarning warn, void *warn_ctx, DdError *err) {
    char checkpoints[CHECKPOINT_PATH_MAX];
    if (join(checkpoints, sizeof checkpoints, run_dir, "checkpoints", err) != 0) return -1;
    long iterations[1024];
    int count = list_iterations(checkpoints, iterations, 1024, err);
    if (count < 0) return -1;
    for (int i = 0; i < count; i++) {
        char leaf[64], candidate[CHECKPOINT_PATH_MAX];
        snprintf(leaf, sizeof leaf, "iter_%09ld", iterations[i]);
        if (join(candidate, sizeof candidate, checkpoints, leaf, err) != 0) return -1;
        DdError why;
        if (checkpoint_verify(candidate, &why) != 0) {
            if (warn) {
                char message[DD_ERROR_MESSAGE_MAX + 128];
                snprintf(message, sizeof message, "skipping checkpoint of iteration %ld: %s", iterations[i],
                         why.message);
                warn(warn_ctx, message);
            }
            continue;
        }
        if ((size_t)snprintf(folder, folder_size, "%s", candidate) >= folder_size)
            return dd_fail(err, "path too long: %s", candidate);
        *iteration = iterations[i];
        return 1;
    }
    return 0;
}
