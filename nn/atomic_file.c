/*
 * atomic_file.c - write to a temporary name, sync, rename (atomic_file.h).
 */
#include "nn/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <unistd.h>

int atomic_file_open(AtomicFile *file, const char *path, DdError *err) {
    memset(file, 0, sizeof *file);
    if (strlen(path) >= sizeof file->path)
        return dd_fail(err, "%.200s...: expected a path of at most %zu bytes", path, sizeof file->path - 1);
    snprintf(file->path, sizeof file->path, "%s", path);
    snprintf(file->temp_path, sizeof file->temp_path, "%s.tmp.%ld", path, (long)getpid());
    file->stream = fopen(file->temp_path, "wb");
    if (!file->stream) return dd_fail(err, "%s: cannot create %s: %s", path, file->temp_path, strerror(errno));
    return 0;
}

/* fsync of a folder by path. */
static int sync_folder(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int status = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return status;
}

int atomic_file_commit(AtomicFile *file, DdError *err) {
    if (!file->stream) return dd_fail(err, "%s: not open for writing", file->path);
    int write_error = ferror(file->stream);
    int flushed = fflush(file->stream) == 0 && fsync(fileno(file->stream)) == 0;
    int saved = errno;
    int closed = fclose(file->stream) == 0;
    file->stream = NULL;
    if (write_error || !flushed || !closed) {
        remove(file->temp_path);
        return dd_fail(err, "%s: cannot write %s: %s", file->path, file->temp_path,
                       write_error ? "a write failed" : strerror(saved));
    }
    if (rename(file->temp_path, file->path) != 0) {
        saved = errno;
        remove(file->temp_path);
        return dd_fail(err, "%s: cannot rename %s into place: %s", file->path, file->temp_path, strerror(saved));
    }
    char folder[ATOMIC_FILE_PATH_MAX];
    snprintf(folder, sizeof folder, "%s", file->path);
    if (sync_folder(dirname(folder)) != 0)
        return dd_fail(err, "%s: written, but cannot sync its folder: %s", file->path, strerror(errno));
    return 0;
}

void atomic_file_abort(AtomicFile *file) {
    if (file->stream) {
        fclose(file->stream);
        file->stream = NULL;
        remove(file->temp_path);
    }
}
