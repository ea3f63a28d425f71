/*
 * test_fuzz_corpus.c - the committed fuzz corpus (tests/fuzz/corpus/ for the
 * safetensors header, corpus_index/ for the sharded index) through the same
 * code the fuzzers drive, once, in CI. Files named ok_* must be accepted,
 * bad_* refused; any other (inputs the fuzzer found) may go either way but
 * must not crash. Run from the source root (meson sets workdir); with
 * -Db_sanitize=address,undefined this is the regression test of every
 * crash the fuzzer ever found.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_targets.h"
#include "tests/test.h"
#include "tests/weights/scratch.h"

static void run_folder(const char *folder, int (*target)(const uint8_t *, size_t)) {
    DIR *dir = opendir(folder);
    CHECK(dir != NULL, "cannot open %s", folder);
    if (!dir) return;
    int files = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", folder, entry->d_name);
        size_t size = 0;
        uint8_t *bytes = read_bytes(path, &size);
        CHECK(bytes != NULL, "cannot read %s", path);
        if (!bytes) continue;
        int accepted = target(bytes, size);
        if (strncmp(entry->d_name, "ok_", 3) == 0) CHECK(accepted == 1, "%s: expected it to be accepted", path);
        if (strncmp(entry->d_name, "bad_", 4) == 0) CHECK(accepted == 0, "%s: expected it to be refused", path);
        free(bytes);
        files++;
    }
    closedir(dir);
    printf("  %s: %d inputs\n", folder, files);
    CHECK(files > 0, "%s is empty", folder);
}

static void header_corpus(void) {
    run_folder("tests/fuzz/corpus", fuzz_safetensors_bytes);
}

static void index_corpus(void) {
    run_folder("tests/fuzz/corpus_index", fuzz_safetensors_index_text);
}

TEST_MAIN(TEST(header_corpus), TEST(index_corpus))
