/*
 * test_bad_input.c - every kind of bad input the data issue lists: a
 * truncated JPEG, a PNG with a bad CRC, a zero-byte file, a text file named
 * .jpg, a shard missing a dataset, a file that is not HDF5. Each is
 * reported (file and sample id), counted, and replaced deterministically by
 * the next valid sample; a loader over bad files runs on.
 */
#include <hdf5.h>
#include <stdlib.h>

#include "data/data.h"
#include "tests/data/image_files.h"
#include "tests/test.h"

enum { IMAGES = 6, BAD = 2 };

/* root/a/img0..5: JPEGs except img2, which `damage` writes. */
static void write_class(const char *root, const char *bad_name, void (*damage)(const char *path, const DataImage *image)) {
    char path[256];
    DataImage image = {0};
    snprintf(path, sizeof path, "%s/a", root);
    make_folder(path);
    for (int i = 0; i < IMAGES; i++) {
        test_pixels(&image, 32, 24, (uint64_t)i);
        if (i == BAD) {
            snprintf(path, sizeof path, "%s/a/%s", root, bad_name);
            damage(path, &image);
        } else {
            snprintf(path, sizeof path, "%s/a/img%d.jpg", root, i);
            write_jpeg(path, &image);
        }
    }
    data_image_free(&image);
}

static void truncated_jpeg(const char *path, const DataImage *image) {
    size_t size;
    write_jpeg(path, image);
    free(read_bytes(path, &size));
    truncate_file(path, size / 2);
}
static void png_with_bad_crc(const char *path, const DataImage *image) {
    write_png(path, image);
    corrupt_png_idat(path);
}
static void zero_bytes(const char *path, const DataImage *image) {
    (void)image;
    write_bytes(path, "", 0);
}
static void text_named_jpg(const char *path, const DataImage *image) {
    (void)image;
    const char text[] = "hello, I am a text file with a .jpg name\n";
    write_bytes(path, text, sizeof text - 1);
}

static DataSet *open_set(const char *spec, LogLines *log, DdError *err) {
    DataConfig config;
    if (data_config_defaults(&config, err) != 0) abort();
    snprintf(config.sources[0].source, sizeof config.sources[0].source, "%s", spec);
    config.source_count = 1;
    DataSet *set = NULL;
    return data_set_open(&set, &config, keep_log_line, log, err) == 0 ? set : NULL;
}

/* Loading bad_id gives good_id's pixels, one problem of `kind` is counted,
 * and the report names `file` and the sample id. */
static void check_replaced(DataSet *set, uint64_t bad_id, uint64_t good_id, DataProblemKind kind, const char *file,
                           const LogLines *log, uint64_t problems_before) {
    DataScratch a, b;
    data_scratch_init(&a, NULL);
    data_scratch_init(&b, NULL);
    DataSample replaced, direct;
    DdError err;
    CHECK(data_set_load(set, bad_id, &a, &replaced, &err) == 0, "the run must go on: %s", err.message);
    CHECK(replaced.sample_id == bad_id && replaced.loaded_id == good_id, "sample %llu replaced by %llu, expected %llu",
          (unsigned long long)bad_id, (unsigned long long)replaced.loaded_id, (unsigned long long)good_id);
    CHECK(data_set_load(set, good_id, &b, &direct, &err) == 0, "%s", err.message);
    CHECK(replaced.label == direct.label && a.image.width == b.image.width && a.image.height == b.image.height &&
              memcmp(a.image.pixels, b.image.pixels, (size_t)a.image.width * a.image.height * 3) == 0,
          "the replacement is not sample %llu", (unsigned long long)good_id);
    uint64_t counts[DATA_PROBLEM_KIND_COUNT];
    uint64_t total = data_problems_snapshot(&set->problems, counts);
    CHECK(total == problems_before + 1 && counts[kind] >= 1, "%llu problems (%llu before), %llu of kind '%s'",
          (unsigned long long)total, (unsigned long long)problems_before, (unsigned long long)counts[kind],
          data_problem_name(kind));
    char id_text[48];
    snprintf(id_text, sizeof id_text, "(sample id %llu)", (unsigned long long)bad_id);
    CHECK(log_has(log, file, id_text, NULL), "no report naming %s and %s; last: '%s'", file, id_text,
          log->count ? log->lines[log->count - 1] : "");
    /* the same again: the same replacement (deterministic) */
    CHECK(data_set_load(set, bad_id, &a, &replaced, &err) == 0 && replaced.loaded_id == good_id, "second load");
    data_scratch_free(&a);
    data_scratch_free(&b);
}

static void folder_case(const char *bad_name, void (*damage)(const char *, const DataImage *), DataProblemKind kind) {
    char root[64], spec[128];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    write_class(root, bad_name, damage);
    snprintf(spec, sizeof spec, "folder:%s", root);
    LogLines log = {0};
    DdError err;
    DataSet *set = open_set(spec, &log, &err);
    CHECK(set != NULL, "%s", err.message);
    if (set) {
        CHECK(data_set_count(set) == IMAGES, "%llu images", (unsigned long long)data_set_count(set));
        check_replaced(set, BAD, BAD + 1, kind, bad_name, &log, 0);
        data_set_close(set);
    }
    remove_tree(root);
}

static void a_truncated_jpeg_is_replaced(void) { folder_case("img2.jpg", truncated_jpeg, DATA_PROBLEM_BAD_JPEG); }
static void a_png_with_a_bad_crc_is_replaced(void) { folder_case("img2.png", png_with_bad_crc, DATA_PROBLEM_BAD_PNG); }
static void a_zero_byte_file_is_replaced(void) { folder_case("img2.jpg", zero_bytes, DATA_PROBLEM_EMPTY); }
static void a_text_file_named_jpg_is_replaced(void) {
    folder_case("img2.jpg", text_named_jpg, DATA_PROBLEM_NOT_AN_IMAGE);
}

static void the_last_bad_sample_wraps_to_the_first(void) {
    char root[64], spec[128], path[256];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    write_class(root, "img2.jpg", zero_bytes);
    snprintf(path, sizeof path, "%s/a/img5.jpg", root);
    truncate_file(path, 100);
    snprintf(spec, sizeof spec, "folder:%s", root);
    LogLines log = {0};
    DdError err;
    DataSet *set = open_set(spec, &log, &err);
    if (set) {
        check_replaced(set, IMAGES - 1, 0, DATA_PROBLEM_BAD_JPEG, "img5.jpg", &log, 0);
        data_set_close(set);
    }
    remove_tree(root);
}

/* Packs root/a (6 JPEGs) into root/shards in two shards of 3. */
static void pack_two_shards(const char *root, char *shards) {
    char folder[128];
    snprintf(folder, sizeof folder, "%s/images", root);
    make_folder(folder);
    write_class(folder, "img2.jpg", truncated_jpeg);
    char path[256];
    DataImage image = {0};
    test_pixels(&image, 32, 24, 2);
    snprintf(path, sizeof path, "%s/a/img2.jpg", folder);
    write_jpeg(path, &image);   /* all six good for packing */
    data_image_free(&image);
    snprintf(shards, 128, "%s/shards", root);
    DataPackOptions options = {.source = folder, .out = shards, .shard_size = 3, .verify = 1};
    DataPackResult result;
    DdError err;
    CHECK(data_pack(&options, &result, &err) == 0 && result.packed == IMAGES, "pack: %s", err.message);
}

static void a_shard_missing_a_dataset_is_reported_and_replaced(void) {
    char root[64], shards[128], spec[160], path[256];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    pack_two_shards(root, shards);
    snprintf(path, sizeof path, "%s/shard-00000.h5", shards);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(file >= 0 && H5Ldelete(file, "images", H5P_DEFAULT) >= 0, "cannot delete 'images'");
    if (file >= 0) H5Fclose(file);
    snprintf(spec, sizeof spec, "hdf5:%s", shards);
    LogLines log = {0};
    DdError err;
    DataSet *set = open_set(spec, &log, &err);
    CHECK(set != NULL, "%s", err.message);
    if (set) {
        CHECK(data_set_count(set) == IMAGES, "the broken shard keeps its ids: %llu", (unsigned long long)data_set_count(set));
        CHECK(log_has(&log, "shard-00000.h5", "missing dataset 'images'", NULL), "not reported at open");
        uint64_t before = data_problems_snapshot(&set->problems, NULL);
        /* sample 1 lives in the broken shard: the next valid sample is the next shard's first */
        check_replaced(set, 1, 3, DATA_PROBLEM_BAD_SHARD, "shard-00000.h5", &log, before);
        data_set_close(set);
    }
    remove_tree(root);
}

static void a_file_that_is_not_hdf5_is_reported_and_left_out(void) {
    char root[64], shards[128], spec[160], path[256];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    pack_two_shards(root, shards);
    /* a stray text file among the shards, and a shard overwritten by text */
    snprintf(path, sizeof path, "%s/shard-00002.h5", shards);
    write_bytes(path, "not hdf5 at all\n", 16);
    snprintf(path, sizeof path, "%s/shard-00000.h5", shards);
    static const char truncated_hdf5[] = "\x89HDF\r\n\x1a\n but truncated";
    write_bytes(path, truncated_hdf5, sizeof truncated_hdf5 - 1);
    snprintf(spec, sizeof spec, "hdf5:%s", shards);
    LogLines log = {0};
    DdError err;
    DataSet *set = open_set(spec, &log, &err);
    CHECK(set != NULL, "the run must go on: %s", err.message);
    if (set) {
        uint64_t counts[DATA_PROBLEM_KIND_COUNT];
        CHECK(data_problems_snapshot(&set->problems, counts) == 2 && counts[DATA_PROBLEM_BAD_SHARD] == 2,
              "two bad shards counted");
        CHECK(log_has(&log, "shard-00002.h5", "not an HDF5 file", NULL), "the text file is not reported");
        CHECK(log_has(&log, "shard-00000.h5", "damaged or truncated", NULL), "the truncated shard is not reported");
        CHECK(data_set_count(set) == 3, "%llu samples left", (unsigned long long)data_set_count(set));
        DataScratch scratch;
        data_scratch_init(&scratch, NULL);
        for (uint64_t id = 0; id < 3; id++) {
            DataSample s;
            CHECK(data_set_load(set, id, &scratch, &s, &err) == 0 && s.loaded_id == id, "load %llu",
                  (unsigned long long)id);
        }
        data_scratch_free(&scratch);
        data_set_close(set);
    }
    /* nothing readable at all is an error, not a crash */
    snprintf(spec, sizeof spec, "hdf5:%s/shard-00002.h5", shards);
    DataSet *none = open_set(spec, &log, &err);
    CHECK(none == NULL && strstr(err.message, "no readable samples"), "'%s'", err.message);
    data_set_close(none);
    remove_tree(root);
}

static void a_loader_runs_on_over_bad_files(void) {
    char root[64], path[256];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    write_class(root, "img2.jpg", text_named_jpg);
    snprintf(path, sizeof path, "%s/a/img4.jpg", root);
    truncate_file(path, 0);
    DataConfig config;
    DdError err;
    data_config_defaults(&config, &err);
    snprintf(config.sources[0].source, sizeof config.sources[0].source, "folder:%s", root);
    config.source_count = 1;
    config.loader.threads = 2;
    CropConfig crops = {.global_size = 32, .global_count = 2, .local_size = 16, .local_count = 2};
    LogLines log = {0};
    DataLoaderOptions options = {.data = &config, .crops = &crops, .seed = 1, .global_batch = 4, .begin = 0,
                                 .end = 4, .build_locals = 1, .log = keep_log_line, .log_context = &log};
    DataLoader *loader = NULL;
    CHECK(data_loader_open(&loader, &options, &err) == 0, "%s", err.message);
    int replaced = 0;
    for (int k = 0; loader && k < 6; k++) {
        const DataBatch *batch;
        CHECK(data_loader_next(loader, &batch, &err) == 0, "batch %d: %s", k, err.message);
        if (test_state.failed_checks) break;
        for (int i = 0; i < batch->count; i++) {
            replaced += batch->samples[i].loaded_id != batch->samples[i].sample_id;
            CHECK(batch->samples[i].loaded_id != 2 && batch->samples[i].loaded_id != 4, "a bad sample was used");
        }
        data_loader_release(loader, batch);
    }
    if (loader) {
        CHECK(replaced == 8, "%d samples replaced in 24 (4 epochs of 6 with 2 bad)", replaced);
        CHECK(data_problems_snapshot(&data_loader_data_set(loader)->problems, NULL) >= 8, "problems not counted");
    }
    data_loader_close(loader);
    remove_tree(root);
}

TEST_MAIN(TEST(a_truncated_jpeg_is_replaced), TEST(a_png_with_a_bad_crc_is_replaced), TEST(a_zero_byte_file_is_replaced),
          TEST(a_text_file_named_jpg_is_replaced), TEST(the_last_bad_sample_wraps_to_the_first),
          TEST(a_shard_missing_a_dataset_is_reported_and_replaced),
          TEST(a_file_that_is_not_hdf5_is_reported_and_left_out), TEST(a_loader_runs_on_over_bad_files))
