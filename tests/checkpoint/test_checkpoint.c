/*
 * test_checkpoint.c - checkpoint folders: commit, rotation, verification,
 * falling back past a corrupt or unfinished checkpoint, and a full disk in
 * the middle of a write leaving the previous checkpoint intact.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/checkpoint.h"
#include "nn/tensor_file.h"
#include "tests/test.h"

static char run_dir[256];

static void fresh_run_dir(void) {
    snprintf(run_dir, sizeof run_dir, "/tmp/dd_test_checkpoint_%d", (int)getpid());
    char command[512];
    snprintf(command, sizeof command, "rm -rf %s", run_dir);
    if (system(command) != 0) abort();
}

/* Writes a checkpoint of `iteration` with two small state files. */
static int write_checkpoint(long iteration, int keep, DdError *err) {
    CheckpointWriter writer;
    if (checkpoint_begin(&writer, run_dir, iteration, err) != 0) return -1;
    for (int file = 0; file < 2; file++) {
        char name[32], path[CHECKPOINT_PATH_MAX];
        snprintf(name, sizeof name, "group%d.h5", file);
        if (checkpoint_file_path(&writer, name, path, sizeof path, err) != 0) return -1;
        float values[16];
        for (int i = 0; i < 16; i++) values[i] = (float)(iteration * 100 + file * 16 + i);
        NamedTensor tensor = {"weights", {1, {16}}, values};
        if (tensor_file_write(path, &tensor, 1, err) != 0) return -1;
    }
    return checkpoint_commit(&writer, keep, err);
}

static char last_warning[2048];
static void remember_warning(void *ctx, const char *message) {
    (void)ctx;
    snprintf(last_warning, sizeof last_warning, "%s", message);
}

static void committed_checkpoints_are_found_newest_first(void) {
    fresh_run_dir();
    DdError err;
    char folder[CHECKPOINT_PATH_MAX];
    long iteration = -1;
    CHECK(checkpoint_find_latest(run_dir, folder, sizeof folder, &iteration, NULL, NULL, &err) == 0,
          "a fresh run has no checkpoint");
    CHECK(write_checkpoint(10, 3, &err) == 0, "%s", err.message);
    CHECK(write_checkpoint(20, 3, &err) == 0, "%s", err.message);
    CHECK(checkpoint_find_latest(run_dir, folder, sizeof folder, &iteration, NULL, NULL, &err) == 1, "found");
    CHECK(iteration == 20, "newest is %ld", iteration);
    CHECK(strstr(folder, "checkpoints/iter_000000020") != NULL, "folder %.900s", folder);
    CHECK(checkpoint_verify(folder, &err) == 0, "%s", err.message);
}

static void only_the_newest_k_are_kept(void) {
    fresh_run_dir();
    DdError err;
    for (long i = 1; i <= 5; i++) CHECK(write_checkpoint(i * 10, 2, &err) == 0, "%s", err.message);
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/checkpoints/iter_000000040", run_dir);
    CHECK(stat(path, &st) == 0, "iteration 40 kept");
    snprintf(path, sizeof path, "%s/checkpoints/iter_000000030", run_dir);
    CHECK(stat(path, &st) != 0, "iteration 30 removed");
}

static void a_corrupt_checkpoint_falls_back_to_the_one_before(void) {
    fresh_run_dir();
    DdError err;
    CHECK(write_checkpoint(10, 3, &err) == 0, "%s", err.message);
    CHECK(write_checkpoint(20, 3, &err) == 0, "%s", err.message);
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoints/iter_000000020/group1.h5", run_dir);
    FILE *file = fopen(path, "r+b");
    CHECK(file != NULL, "open %s", path);
    if (!file) return;
    fseek(file, -8, SEEK_END);   /* flip a byte of the data */
    int byte = fgetc(file);
    fseek(file, -8, SEEK_END);
    fputc(byte ^ 0x5A, file);
    fclose(file);
    char folder[CHECKPOINT_PATH_MAX];
    long iteration = -1;
    last_warning[0] = 0;
    CHECK(checkpoint_find_latest(run_dir, folder, sizeof folder, &iteration, remember_warning, NULL, &err) == 1,
          "found");
    CHECK(iteration == 10, "fell back to %ld", iteration);
    CHECK(strstr(last_warning, "skipping checkpoint of iteration 20:") && strstr(last_warning, "group1.h5: expected") &&
          strstr(last_warning, "CRC-32"), "warning: %s", last_warning);
}

static void a_truncated_manifest_or_partial_folder_is_ignored(void) {
    fresh_run_dir();
    DdError err;
    CHECK(write_checkpoint(10, 3, &err) == 0, "%s", err.message);
    CHECK(write_checkpoint(20, 3, &err) == 0, "%s", err.message);
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoints/iter_000000020/MANIFEST", run_dir);
    CHECK(truncate(path, 40) == 0, "truncate");
    CheckpointWriter unfinished;   /* begun, never committed: a rank died mid-checkpoint */
    CHECK(checkpoint_begin(&unfinished, run_dir, 30, &err) == 0, "%s", err.message);
    char folder[CHECKPOINT_PATH_MAX];
    long iteration = -1;
    last_warning[0] = 0;
    CHECK(checkpoint_find_latest(run_dir, folder, sizeof folder, &iteration, remember_warning, NULL, &err) == 1,
          "found");
    CHECK(iteration == 10, "fell back to %ld", iteration);
    CHECK(strstr(last_warning, "MANIFEST") != NULL, "warning: %s", last_warning);
}

static void a_full_disk_during_a_checkpoint_keeps_the_previous_one(void) {
    fresh_run_dir();
    DdError err;
    CHECK(write_checkpoint(10, 3, &err) == 0, "%s", err.message);
    /* a file-size limit makes writes fail as on a full disk */
    struct rlimit saved, tiny = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &saved);
    tiny.rlim_max = saved.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    CheckpointWriter writer;
    CHECK(checkpoint_begin(&writer, run_dir, 20, &err) == 0, "%s", err.message);
    char path[CHECKPOINT_PATH_MAX];
    CHECK(checkpoint_file_path(&writer, "big.h5", path, sizeof path, &err) == 0, "%s", err.message);
    static float big[1 << 16];
    NamedTensor tensor = {"weights", {1, {1 << 16}}, big};
    setrlimit(RLIMIT_FSIZE, &tiny);
    int written = tensor_file_write(path, &tensor, 1, &err);
    setrlimit(RLIMIT_FSIZE, &saved);
    CHECK(written != 0, "a 256 KiB write under a 4 KiB limit succeeded");
    CHECK(strstr(err.message, "big.h5: tensor 'weights': file size limit: expected room for") != NULL,
          "message: %s", err.message);
    checkpoint_abandon(&writer);
    char folder[CHECKPOINT_PATH_MAX];
    long iteration = -1;
    CHECK(checkpoint_find_latest(run_dir, folder, sizeof folder, &iteration, NULL, NULL, &err) == 1, "found");
    CHECK(iteration == 10, "latest is %ld", iteration);
    CHECK(checkpoint_verify(folder, &err) == 0, "previous checkpoint damaged: %s", err.message);
    char command[512];
    snprintf(command, sizeof command, "rm -rf %s", run_dir);
    CHECK(system(command) == 0, "cleanup");
}

static void bad_file_names_are_refused(void) {
    fresh_run_dir();
    DdError err;
    CheckpointWriter writer;
    CHECK(checkpoint_begin(&writer, run_dir, 1, &err) == 0, "%s", err.message);
    char path[CHECKPOINT_PATH_MAX];
    CHECK(checkpoint_file_path(&writer, "../escape.h5", path, sizeof path, &err) != 0, "a path was accepted");
    CHECK(checkpoint_file_path(&writer, "MANIFEST", path, sizeof path, &err) != 0, "MANIFEST was accepted");
    checkpoint_abandon(&writer);
}

TEST_MAIN(TEST(committed_checkpoints_are_found_newest_first), TEST(only_the_newest_k_are_kept),
          TEST(a_corrupt_checkpoint_falls_back_to_the_one_before),
          TEST(a_truncated_manifest_or_partial_folder_is_ignored),
          TEST(a_full_disk_during_a_checkpoint_keeps_the_previous_one), TEST(bad_file_names_are_refused))
