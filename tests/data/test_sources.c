/*
 * test_sources.c - the three sources and pack: synthetic images are
 * deterministic and structured; a folder of JPEGs and PNGs reads back with
 * its labels; its index is written, reused, rebuilt when a class changes,
 * and moved to the cache folder when ROOT will not take it; an index of
 * 1.3M images opens in well under a second, and so do 130 shards of 1.3M
 * images; shards written by pack read
 * back the same pixels as the folder; pack skips bad files, keeps complete
 * shards on a second run and removes temporaries a killed run left.
 */
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/data.h"
#include "data/folder_index.h"
#include "data/shard.h"
#include "nn/clock.h"
#include "tests/data/image_files.h"
#include "tests/test.h"

static void synthetic_images_are_deterministic_and_structured(void) {
    DataImage a = {0}, b = {0};
    int32_t la, lb;
    int classes_seen[10] = {0}, differ = 0;
    double spread = 0;
    for (uint64_t id = 0; id < 60; id++) {
        CHECK(data_synthetic_image(0, id, 64, 10, &a, &la, NULL) == 0, "draw");
        CHECK(data_synthetic_image(0, id, 64, 10, &b, &lb, NULL) == 0, "draw");
        CHECK(la == lb && memcmp(a.pixels, b.pixels, 64 * 64 * 3) == 0, "image %llu drawn twice differs",
              (unsigned long long)id);
        CHECK(la >= 0 && la < 10, "label %d", la);
        if (la >= 0 && la < 10) classes_seen[la]++;
        CHECK(data_synthetic_image(1, id, 64, 10, &b, &lb, NULL) == 0, "draw");
        differ += memcmp(a.pixels, b.pixels, 64 * 64 * 3) != 0;
        double mean = 0, square = 0;
        for (int i = 0; i < 64 * 64 * 3; i++) mean += a.pixels[i];
        mean /= 64 * 64 * 3;
        for (int i = 0; i < 64 * 64 * 3; i++) square += (a.pixels[i] - mean) * (a.pixels[i] - mean);
        spread += sqrt(square / (64 * 64 * 3)) / 60;
    }
    int classes = 0;
    for (int k = 0; k < 10; k++) classes += classes_seen[k] > 0;
    CHECK(classes >= 8, "only %d of 10 classes in 60 images", classes);
    CHECK(differ == 60, "source index must change the images (%d of 60 differ)", differ);
    CHECK(spread > 20, "images too flat: mean std %g of 255", spread);
    data_image_free(&a);
    data_image_free(&b);
}

static const char *const class_names[] = {"cat", "dog", "emu"};

/* root/cat, dog, emu with 4 images each (JPEG and PNG, one .JPEG), plus
 * files the listing must ignore. */
static void write_folder(const char *root) {
    char path[256];
    DataImage image = {0};
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/%s", root, class_names[c]);
        make_folder(path);
        for (int i = 0; i < 4; i++) {
            test_pixels(&image, 40 + 8 * i, 30 + 4 * c, (uint64_t)(c * 10 + i));
            const char *ext = i == 1 ? "png" : i == 3 && c == 1 ? "JPEG" : "jpg";
            snprintf(path, sizeof path, "%s/%s/img%d.%s", root, class_names[c], i, ext);
            if ((i == 1 ? write_png(path, &image) : write_jpeg(path, &image)) != 0) abort();
        }
    }
    snprintf(path, sizeof path, "%s/cat/notes.txt", root);
    write_bytes(path, "not an image", 12);
    snprintf(path, sizeof path, "%s/cat/.hidden.jpg", root);
    write_bytes(path, "hidden", 6);
    snprintf(path, sizeof path, "%s/.git", root);
    make_folder(path);
    data_image_free(&image);
}

static DataSet *open_set(const char *spec, LogLines *log) {
    DataConfig config;
    DdError err;
    if (data_config_defaults(&config, &err) != 0) abort();
    snprintf(config.sources[0].source, sizeof config.sources[0].source, "%s", spec);
    config.source_count = 1;
    DataSet *set = NULL;
    CHECK(data_set_open(&set, &config, log ? keep_log_line : NULL, log, &err) == 0, "%s: %s", spec, err.message);
    return set;
}

static void a_folder_reads_back_with_its_labels(void) {
    char root[64], spec[128];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    write_folder(root);
    snprintf(spec, sizeof spec, "folder:%s", root);
    DataSet *set = open_set(spec, NULL);
    if (!set) goto done;
    CHECK(data_set_count(set) == 12 && set->sources[0]->class_count == 3, "%llu images, %d classes",
          (unsigned long long)data_set_count(set), set->sources[0]->class_count);
    DataScratch scratch;
    data_scratch_init(&scratch, NULL);
    DataImage want = {0};
    for (uint64_t id = 0; id < data_set_count(set); id++) {
        DataSample sample;
        DdError err;
        CHECK(data_set_load(set, id, &scratch, &sample, &err) == 0, "%s", err.message);
        int c = (int)id / 4, i = (int)id % 4;   /* sorted: img0, img1.png, img2, img3 */
        CHECK(sample.label == c && sample.loaded_id == id, "id %llu: label %d", (unsigned long long)id, sample.label);
        test_pixels(&want, 40 + 8 * i, 30 + 4 * c, (uint64_t)(c * 10 + i));
        CHECK(scratch.image.width == want.width && scratch.image.height == want.height, "id %llu: %d x %d",
              (unsigned long long)id, scratch.image.width, scratch.image.height);
        if (scratch.image.width != want.width || scratch.image.height != want.height) continue;
        double error = 0;
        for (int p = 0; p < want.width * want.height * 3; p++) error += abs(scratch.image.pixels[p] - want.pixels[p]);
        error /= want.width * want.height * 3;
        if (i == 1) CHECK(error == 0, "PNG %llu not exact", (unsigned long long)id);
        else CHECK(error < 10, "JPEG %llu: mean error %g of 255", (unsigned long long)id, error);
    }
    data_image_free(&want);
    data_scratch_free(&scratch);
    data_set_close(set);
done:
    remove_tree(root);
}

static void the_folder_index_is_reused_and_rebuilt_when_a_class_changes(void) {
    char root[64], spec[128], index_path[128], path[256];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    write_folder(root);
    snprintf(spec, sizeof spec, "folder:%s", root);
    snprintf(index_path, sizeof index_path, "%s/.distill-index", root);
    DataSet *set = open_set(spec, NULL);
    data_set_close(set);
    struct stat first, second;
    CHECK(stat(index_path, &first) == 0, "no index at %s", index_path);
    set = open_set(spec, NULL);
    data_set_close(set);
    CHECK(stat(index_path, &second) == 0 && second.st_ino == first.st_ino, "a current index was rewritten");
    /* a new image in dog/: that class's mtime changes, the index is rebuilt */
    DataImage image = {0};
    test_pixels(&image, 20, 20, 99);
    snprintf(path, sizeof path, "%s/dog/new.png", root);
    write_png(path, &image);
    data_image_free(&image);
    set = open_set(spec, NULL);
    CHECK(set && data_set_count(set) == 13, "after adding an image: %llu", set ? (unsigned long long)data_set_count(set) : 0);
    data_set_close(set);
    CHECK(stat(index_path, &second) == 0 && second.st_ino != first.st_ino, "a stale index was kept");
    /* a new class folder: rebuilt too */
    snprintf(path, sizeof path, "%s/fox", root);
    make_folder(path);
    set = open_set(spec, NULL);
    CHECK(set && set->sources[0]->class_count == 4, "a new class was not seen");
    data_set_close(set);
    remove_tree(root);
}

static void an_index_root_will_not_take_goes_to_the_cache_folder(void) {
    char root[64], cache[64], spec[128], path[256];
    if (make_temp_folder(root) || make_temp_folder(cache)) SKIP("no temporary folder");
    write_folder(root);
    /* a folder where the index file would go: the rename onto it fails, even as root */
    snprintf(path, sizeof path, "%s/.distill-index", root);
    make_folder(path);
    const char *saved = getenv("XDG_CACHE_HOME");
    char *saved_copy = saved ? strdup(saved) : NULL;
    setenv("XDG_CACHE_HOME", cache, 1);
    snprintf(spec, sizeof spec, "folder:%s", root);
    DataSet *set = open_set(spec, NULL);
    CHECK(set && data_set_count(set) == 12, "count");
    data_set_close(set);
    char cached[FOLDER_INDEX_PATH_MAX];
    CHECK(folder_index_location(root, 1, cached, sizeof cached) == 0 && access(cached, R_OK) == 0,
          "no index in the cache folder (%.200s)", cached);
    CHECK(strncmp(cached, cache, strlen(cache)) == 0, "cache index at %.200s", cached);
    if (saved_copy) setenv("XDG_CACHE_HOME", saved_copy, 1);
    else unsetenv("XDG_CACHE_HOME");
    free(saved_copy);
    remove_tree(root);
    remove_tree(cache);
}

static void an_index_of_1_3M_images_opens_in_under_a_second(void) {
    enum { CLASSES = 1000, PER_CLASS = 1300 };
    char root[64], path[256];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    for (int c = 0; c < CLASSES; c++) {
        snprintf(path, sizeof path, "%s/n%08d", root, c);
        make_folder(path);
    }
    FolderListing listing;
    DdError err;
    CHECK(folder_listing_scan(&listing, root, 0, &err) == 0, "%s", err.message);
    for (int c = 0; c < CLASSES; c++)
        for (int i = 0; i < PER_CLASS; i++) {
            char name[64];
            snprintf(name, sizeof name, "n%08d_%d.JPEG", c, 10000 + i);
            if (folder_listing_add(&listing, (uint32_t)c, name, &err)) abort();
        }
    FolderIndex index;
    snprintf(path, sizeof path, "%s/.distill-index", root);
    CHECK(folder_index_build(&index, &listing, &err) == 0 && folder_index_write(&index, path, &err) == 0, "%s",
          err.message);
    folder_index_free(&index);
    folder_listing_free(&listing);

    double t0 = dd_now_seconds();
    DataSource *source = NULL;
    CHECK(data_source_open_folder(&source, root, NULL, &err) == 0, "%s", err.message);
    double seconds = dd_now_seconds() - t0;
    if (source) {
        CHECK(source->count == (uint64_t)CLASSES * PER_CLASS && source->class_count == CLASSES, "%llu images",
              (unsigned long long)source->count);
        data_source_close(source);
    }
    struct stat st;
    stat(path, &st);
    printf("    folder source of %d images (index %.1f MB) opened in %.3f s\n", CLASSES * PER_CLASS, st.st_size / 1e6,
           seconds);
    CHECK(seconds < 1.0, "opening took %.3f s", seconds);
    remove_tree(root);
}

static void shards_of_1_3M_images_open_in_under_a_second(void) {
    /* more shards than stay open: reads open their shard */
    enum { SHARDS = 325, PER_SHARD = 4000 };
    char root[64], path[256];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    const char classes[] = "a\0b\0";
    DdError err;
    for (int s = 0; s < SHARDS && !test_state.failed_checks; s++) {
        snprintf(path, sizeof path, "%s/shard-%05d.h5", root, s);
        ShardWriter writer;
        CHECK(shard_writer_open(&writer, path, &err) == 0, "%s", err.message);
        for (int i = 0; i < PER_SHARD && !test_state.failed_checks; i++)
            CHECK(shard_writer_add(&writer, (const unsigned char *)"x", 1, i & 1, "a/x.jpg", &err) == 0, "%s",
                  err.message);
        ShardInfo info = {.first_file = (uint64_t)s * PER_SHARD, .file_count = PER_SHARD,
                          .total_files = (uint64_t)SHARDS * PER_SHARD, .class_count = 2};
        CHECK(shard_writer_commit(&writer, &info, classes, sizeof classes - 1, &err) == 0, "%s", err.message);
    }
    double t0 = dd_now_seconds();
    DataSource *source = NULL;
    CHECK(data_source_open_hdf5(&source, root, NULL, &err) == 0, "%s", err.message);
    double seconds = dd_now_seconds() - t0;
    if (source) {
        CHECK(source->count == (uint64_t)SHARDS * PER_SHARD && source->class_count == 2, "%llu images",
              (unsigned long long)source->count);
        /* the bytes come back (here a one-byte "x", not an image) with the shard and entry named */
        DataScratch scratch;
        data_scratch_init(&scratch, NULL);
        DataProblemKind kind;
        uint64_t next;
        int32_t label;
        CHECK(source->ops->load(source, 1234567, &scratch, &scratch.image, &label, &kind, &next, &err) == -1 &&
                  kind == DATA_PROBLEM_NOT_AN_IMAGE && strstr(err.message, "shard-00308.h5 entry 2567") &&
                  strstr(err.message, "found 'x'") && strstr(err.message, "packed from a/x.jpg") && label == 1,
              "'%s'", err.message);
        data_scratch_free(&scratch);
        data_source_close(source);
    }
    printf("    hdf5 source of %d shards, %d images opened in %.3f s\n", SHARDS, SHARDS * PER_SHARD, seconds);
    CHECK(seconds < 1.0, "opening took %.3f s", seconds);
    remove_tree(root);
}

static void shards_read_back_the_folder_pixels(void) {
    char root[64], folder[128], shards[128], spec[160];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    snprintf(folder, sizeof folder, "%s/images", root);
    snprintf(shards, sizeof shards, "%s/shards", root);
    make_folder(folder);
    write_folder(folder);
    DataPackOptions options = {.source = folder, .out = shards, .shard_size = 5, .verify = 1};
    DataPackResult result;
    DdError err;
    CHECK(data_pack(&options, &result, &err) == 0, "%s", err.message);
    CHECK(result.files == 12 && result.packed == 12 && result.skipped == 0 && result.shards_written == 3,
          "packed %llu of %llu into %d shards", (unsigned long long)result.packed, (unsigned long long)result.files,
          result.shards_written);
    snprintf(spec, sizeof spec, "folder:%s", folder);
    DataSet *from_folder = open_set(spec, NULL);
    snprintf(spec, sizeof spec, "hdf5:%s", shards);
    DataSet *from_shards = open_set(spec, NULL);
    if (from_folder && from_shards) {
        CHECK(data_set_count(from_shards) == 12 && from_shards->sources[0]->class_count == 3, "shards: %llu images",
              (unsigned long long)data_set_count(from_shards));
        DataScratch a, b;
        data_scratch_init(&a, NULL);
        data_scratch_init(&b, NULL);
        for (uint64_t id = 0; id < 12; id++) {
            DataSample sa, sb;
            CHECK(data_set_load(from_folder, id, &a, &sa, &err) == 0 && data_set_load(from_shards, id, &b, &sb, &err) == 0,
                  "%s", err.message);
            CHECK(sa.label == sb.label && a.image.width == b.image.width && a.image.height == b.image.height &&
                      memcmp(a.image.pixels, b.image.pixels, (size_t)a.image.width * a.image.height * 3) == 0,
                  "id %llu differs between folder and shards", (unsigned long long)id);
        }
        data_scratch_free(&a);
        data_scratch_free(&b);
    }
    data_set_close(from_folder);
    data_set_close(from_shards);
    /* a glob works too */
    snprintf(spec, sizeof spec, "hdf5:%s/shard-0000[01].h5", shards);
    DataSet *two = open_set(spec, NULL);
    CHECK(two && data_set_count(two) == 10, "two shards by glob");
    data_set_close(two);
    remove_tree(root);
}

typedef struct PackLog {
    LogLines lines;
    int progress_calls;
} PackLog;

static void on_line(void *context, const char *line) { keep_log_line(&((PackLog *)context)->lines, line); }
static void on_progress(void *context, const DataPackProgress *p) {
    (void)p;
    ((PackLog *)context)->progress_calls++;
}

static void pack_skips_bad_files_and_resumes(void) {
    char root[64], folder[128], shards[128], path[256];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    snprintf(folder, sizeof folder, "%s/images", root);
    snprintf(shards, sizeof shards, "%s/shards", root);
    make_folder(folder);
    write_folder(folder);
    snprintf(path, sizeof path, "%s/dog/img2.jpg", folder);
    truncate_file(path, 200);
    PackLog log = {0};
    DataPackOptions options = {.source = folder, .out = shards, .shard_size = 4, .verify = 1,
                               .progress = on_progress, .log = on_line, .context = &log};
    DataPackResult result;
    DdError err;
    CHECK(data_pack(&options, &result, &err) == 0, "%s", err.message);
    CHECK(result.packed == 11 && result.skipped == 1 && result.shards_written == 3, "packed %llu skipped %llu",
          (unsigned long long)result.packed, (unsigned long long)result.skipped);
    CHECK(log_has(&log.lines, "skipped", "dog/img2.jpg", NULL), "the bad file is not named: '%s'",
          log.lines.count ? log.lines.lines[0] : "");
    CHECK(log.progress_calls == 12, "%d progress calls", log.progress_calls);

    /* an interrupted run: shard 1 missing, a temporary left behind */
    snprintf(path, sizeof path, "%s/shard-00001.h5", shards);
    unlink(path);
    snprintf(path, sizeof path, "%s/shard-00001.h5.tmp.4242", shards);
    write_bytes(path, "partial", 7);
    log = (PackLog){0};
    CHECK(data_pack(&options, &result, &err) == 0, "%s", err.message);
    CHECK(result.shards_kept == 2 && result.shards_written == 1 && result.packed == 11 && result.skipped == 1,
          "second run: kept %d, wrote %d, packed %llu", result.shards_kept, result.shards_written,
          (unsigned long long)result.packed);
    CHECK(access(path, F_OK) != 0, "the stale temporary is still there");
    CHECK(log_has(&log.lines, "removed", "shard-00001.h5.tmp.4242", NULL), "removal not reported");
    /* the same command once more: nothing to do */
    CHECK(data_pack(&options, &result, &err) == 0 && result.shards_kept == 3 && result.shards_written == 0,
          "third run wrote %d", result.shards_written);
    remove_tree(root);
}

TEST_MAIN(TEST(synthetic_images_are_deterministic_and_structured), TEST(a_folder_reads_back_with_its_labels),
          TEST(the_folder_index_is_reused_and_rebuilt_when_a_class_changes),
          TEST(an_index_root_will_not_take_goes_to_the_cache_folder),
          TEST(an_index_of_1_3M_images_opens_in_under_a_second), TEST(shards_of_1_3M_images_open_in_under_a_second),
          TEST(shards_read_back_the_folder_pixels),
          TEST(pack_skips_bad_files_and_resumes))
