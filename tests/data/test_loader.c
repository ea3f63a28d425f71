/*
 * test_loader.c - the loading threads: a teacher loader and a student
 * loader (other slices, other thread counts, separate instances) build
 * bit-identical global crops of the same samples; batches hold exactly what
 * building each sample by hand gives; batches come in iteration order and a
 * loader started at iteration k resumes the same sequence; the mask hook
 * runs once per batch before it is handed out; three threads reading HDF5
 * shards build what one thread reading the JPEG files builds.
 */
#include <stdlib.h>

#include "data/data.h"
#include "tests/data/image_files.h"
#include "tests/test.h"

static DataConfig synthetic_config(int threads, int prefetch) {
    DataConfig config;
    DdError err;
    if (data_config_defaults(&config, &err) != 0) abort();
    config.source_count = 1;
    snprintf(config.sources[0].source, sizeof config.sources[0].source, "synthetic");
    config.sources[0].weight = 1;
    config.sources[0].images = 50;
    config.sources[0].image_size = 72;
    config.sources[0].classes = 5;
    config.loader.threads = threads;
    config.loader.prefetch = prefetch;
    return config;
}

static const CropConfig small_crops = {.global_size = 48, .global_count = 2, .local_size = 24, .local_count = 4};

static DataLoader *open_loader(const DataConfig *config, int begin, int end, int locals, uint64_t first) {
    DataLoaderOptions options = {.data = config, .crops = &small_crops, .seed = 1234, .global_batch = 8,
                                 .begin = begin, .end = end, .build_locals = locals, .first_iteration = first};
    DataLoader *loader = NULL;
    DdError err;
    CHECK(data_loader_open(&loader, &options, &err) == 0, "%s", err.message);
    return loader;
}

static const float *global_crop(const DataBatch *b, int g, int i) {
    return b->global_crops + ((size_t)g * b->count + i) * 3 * b->global_size * b->global_size;
}

static void teacher_and_student_global_crops_are_bit_identical(void) {
    DataConfig one = synthetic_config(1, 2), two = synthetic_config(2, 3), three = synthetic_config(3, 1);
    DataLoader *teacher = open_loader(&one, 0, 8, 0, 0);          /* the whole batch, global crops only */
    DataLoader *student_a = open_loader(&two, 0, 3, 1, 0);        /* ranks of a student group */
    DataLoader *student_b = open_loader(&three, 3, 8, 1, 0);
    if (!teacher || !student_a || !student_b) goto done;
    const size_t crop_bytes = (size_t)3 * 48 * 48 * sizeof(float);
    for (int k = 0; k < 12; k++) {   /* 96 samples: the 50-image set wraps into epoch 1 */
        const DataBatch *t, *a, *b;
        DdError err;
        CHECK(data_loader_next(teacher, &t, &err) == 0 && data_loader_next(student_a, &a, &err) == 0 &&
                  data_loader_next(student_b, &b, &err) == 0,
              "%s", err.message);
        if (test_state.failed_checks) break;
        CHECK(t->iteration == (uint64_t)k && a->iteration == (uint64_t)k && b->iteration == (uint64_t)k, "order");
        CHECK(t->local_crops == NULL && t->local_count == 0 && a->local_count == 4, "locals");
        for (int i = 0; i < 8; i++) {
            const DataBatch *s = i < 3 ? a : b;
            int j = i < 3 ? i : i - 3;
            CHECK(s->samples[j].sample_id == t->samples[i].sample_id && s->samples[j].epoch == t->samples[i].epoch,
                  "iteration %d sample %d: ids differ", k, i);
            for (int g = 0; g < 2; g++)
                CHECK(memcmp(global_crop(t, g, i), global_crop(s, g, j), crop_bytes) == 0,
                      "iteration %d sample %d crop %d: teacher and student differ", k, i, g);
        }
        data_loader_release(teacher, t);
        data_loader_release(student_a, a);
        data_loader_release(student_b, b);
    }
done:
    data_loader_close(teacher);
    data_loader_close(student_a);
    data_loader_close(student_b);
}

static void batches_hold_what_building_each_sample_gives(void) {
    DataConfig config = synthetic_config(2, 2);
    DataLoader *loader = open_loader(&config, 2, 7, 1, 0);
    if (!loader) return;
    DataSet *set = NULL;
    DdError err;
    CHECK(data_set_open(&set, &config, NULL, NULL, &err) == 0, "%s", err.message);
    DataScratch scratch;
    data_scratch_init(&scratch, NULL);
    float *crops[6];
    for (int c = 0; c < 6; c++) crops[c] = malloc((size_t)3 * 48 * 48 * sizeof(float));
    for (int k = 0; k < 3 && set; k++) {
        const DataBatch *b;
        CHECK(data_loader_next(loader, &b, &err) == 0, "%s", err.message);
        if (test_state.failed_checks) break;
        CHECK(b->count == 5 && b->first == 2, "slice");
        for (int i = 0; i < b->count; i++) {
            DataSample sample;
            CHECK(data_build_sample(set, &config.augment, &small_crops, 1234, b->samples[i].epoch,
                                    b->samples[i].sample_id, 0, 6, crops, &scratch, &sample, &err) == 0,
                  "%s", err.message);
            CHECK(sample.label == b->samples[i].label, "label");
            for (int g = 0; g < 2; g++)
                CHECK(memcmp(crops[g], global_crop(b, g, i), (size_t)3 * 48 * 48 * sizeof(float)) == 0, "global %d", g);
            for (int l = 0; l < 4; l++)
                CHECK(memcmp(crops[2 + l], b->local_crops + ((size_t)l * b->count + i) * 3 * 24 * 24,
                             (size_t)3 * 24 * 24 * sizeof(float)) == 0,
                      "local %d", l);
        }
        data_loader_release(loader, b);
    }
    for (int c = 0; c < 6; c++) free(crops[c]);
    data_scratch_free(&scratch);
    data_set_close(set);
    data_loader_close(loader);
}

static void a_loader_started_at_k_resumes_the_sequence(void) {
    DataConfig config = synthetic_config(2, 2);
    DataLoader *from_zero = open_loader(&config, 0, 8, 0, 0), *from_five = open_loader(&config, 0, 8, 0, 5);
    if (!from_zero || !from_five) goto done;
    DdError err;
    const DataBatch *b;
    for (int k = 0; k < 5; k++) {
        CHECK(data_loader_next(from_zero, &b, &err) == 0, "%s", err.message);
        data_loader_release(from_zero, b);
    }
    for (int k = 5; k < 8; k++) {
        const DataBatch *x, *y;
        CHECK(data_loader_next(from_zero, &x, &err) == 0 && data_loader_next(from_five, &y, &err) == 0, "%s",
              err.message);
        CHECK(x->iteration == (uint64_t)k && y->iteration == (uint64_t)k, "iterations %llu %llu",
              (unsigned long long)x->iteration, (unsigned long long)y->iteration);
        CHECK(memcmp(x->samples, y->samples, 8 * sizeof *x->samples) == 0 &&
                  memcmp(x->global_crops, y->global_crops, (size_t)2 * 8 * 3 * 48 * 48 * sizeof(float)) == 0,
              "iteration %d differs after a resume", k);
        data_loader_release(from_zero, x);
        data_loader_release(from_five, y);
    }
done:
    data_loader_close(from_zero);
    data_loader_close(from_five);
}

typedef struct HookLog {
    int calls;
} HookLog;

static int write_ids(void *context, uint64_t seed, DataBatch *batch, DdError *err) {
    (void)err;
    ((HookLog *)context)->calls++;   /* one loading thread at a time runs it here: 1 thread */
    uint64_t *masks = batch->masks;
    for (int i = 0; i < batch->count; i++) masks[i] = batch->samples[i].sample_id ^ seed;
    return 0;
}

static int failing_hook(void *context, uint64_t seed, DataBatch *batch, DdError *err) {
    (void)context, (void)seed, (void)batch;
    return dd_fail(err, "no masks today");
}

static void the_mask_hook_fills_each_batch_before_it_is_handed_out(void) {
    DataConfig config = synthetic_config(1, 2);
    HookLog log = {0};
    DataLoaderOptions options = {.data = &config, .crops = &small_crops, .seed = 77, .global_batch = 8, .begin = 0,
                                 .end = 8, .mask_hook = write_ids, .mask_context = &log,
                                 .mask_bytes = 8 * sizeof(uint64_t)};
    DataLoader *loader = NULL;
    DdError err;
    CHECK(data_loader_open(&loader, &options, &err) == 0, "%s", err.message);
    for (int k = 0; loader && k < 4; k++) {
        const DataBatch *b;
        CHECK(data_loader_next(loader, &b, &err) == 0, "%s", err.message);
        if (test_state.failed_checks) break;
        const uint64_t *masks = b->masks;
        CHECK(b->mask_bytes == 8 * sizeof(uint64_t), "mask bytes");
        for (int i = 0; i < 8; i++) CHECK(masks[i] == (b->samples[i].sample_id ^ 77), "mask of sample %d", i);
        data_loader_release(loader, b);
    }
    data_loader_close(loader);
    CHECK(log.calls >= 4, "%d hook calls", log.calls);

    options.mask_hook = failing_hook;
    CHECK(data_loader_open(&loader, &options, &err) == 0, "%s", err.message);
    const DataBatch *b;
    CHECK(loader && data_loader_next(loader, &b, &err) == -1 && strstr(err.message, "no masks today"),
          "a failing hook must fail next: '%s'", err.message);
    data_loader_close(loader);
}

/* Three threads reading shards at once (HDF5 is thread-safe in Debian's
 * build) and one thread reading the files: the same batches. */
static void threads_reading_shards_and_files_build_the_same_batches(void) {
    char root[64], folder[128], shards[128], path[256];
    if (make_temp_folder(root)) SKIP("no temporary folder");
    snprintf(folder, sizeof folder, "%s/images", root);
    snprintf(shards, sizeof shards, "%s/shards", root);
    make_folder(folder);
    DataImage image = {0};
    for (int i = 0; i < 12; i++) {
        snprintf(path, sizeof path, "%s/c%d", folder, i % 3);
        make_folder(path);
        snprintf(path, sizeof path, "%s/c%d/%02d.jpg", folder, i % 3, i);
        test_pixels(&image, 60 + i, 50, (uint64_t)i);
        write_jpeg(path, &image);
    }
    data_image_free(&image);
    DataPackOptions pack = {.source = folder, .out = shards, .shard_size = 5, .verify = 1};
    DataPackResult packed;
    DdError err;
    CHECK(data_pack(&pack, &packed, &err) == 0, "%s", err.message);
    DataConfig from_files = synthetic_config(1, 2), from_shards = synthetic_config(3, 3);
    snprintf(from_files.sources[0].source, sizeof from_files.sources[0].source, "folder:%s", folder);
    snprintf(from_shards.sources[0].source, sizeof from_shards.sources[0].source, "hdf5:%s", shards);
    DataLoader *a = open_loader(&from_files, 0, 8, 1, 0), *b = open_loader(&from_shards, 0, 8, 1, 0);
    const size_t global_bytes = (size_t)2 * 8 * 3 * 48 * 48 * sizeof(float);
    const size_t local_bytes = (size_t)4 * 8 * 3 * 24 * 24 * sizeof(float);
    for (int k = 0; a && b && k < 6; k++) {
        const DataBatch *x, *y;
        CHECK(data_loader_next(a, &x, &err) == 0 && data_loader_next(b, &y, &err) == 0, "%s", err.message);
        if (test_state.failed_checks) break;
        CHECK(memcmp(x->samples, y->samples, 8 * sizeof *x->samples) == 0 &&
                  memcmp(x->global_crops, y->global_crops, global_bytes) == 0 &&
                  memcmp(x->local_crops, y->local_crops, local_bytes) == 0,
              "iteration %d: files and shards differ", k);
        data_loader_release(a, x);
        data_loader_release(b, y);
    }
    data_loader_close(a);
    data_loader_close(b);
    remove_tree(root);
}

static void an_empty_slice_and_bad_options(void) {
    DataConfig config = synthetic_config(1, 1);
    DataLoader *loader = open_loader(&config, 4, 4, 1, 0);
    const DataBatch *b;
    DdError err;
    CHECK(loader && data_loader_next(loader, &b, &err) == 0 && b->count == 0, "an empty slice");
    if (loader) data_loader_release(loader, b);
    data_loader_close(loader);
    DataLoaderOptions bad = {.data = &config, .crops = &small_crops, .global_batch = 8, .begin = 5, .end = 9};
    CHECK(data_loader_open(&loader, &bad, &err) == -1 && strstr(err.message, "slice"), "'%s'", err.message);
    snprintf(config.sources[0].source, sizeof config.sources[0].source, "folder:/nonexistent/dd-data");
    bad.begin = 0;
    bad.end = 8;
    CHECK(data_loader_open(&loader, &bad, &err) == -1 && strstr(err.message, "/nonexistent/dd-data"), "'%s'",
          err.message);
}

TEST_MAIN(TEST(teacher_and_student_global_crops_are_bit_identical), TEST(batches_hold_what_building_each_sample_gives),
          TEST(a_loader_started_at_k_resumes_the_sequence), TEST(the_mask_hook_fills_each_batch_before_it_is_handed_out),
          TEST(threads_reading_shards_and_files_build_the_same_batches),
          TEST(an_empty_slice_and_bad_options))
