/*
 * cmd_bench_data.c - `distill bench data`: how fast one core loads data.
 * Times, on one thread, reading + decoding an image and building 256 px and
 * 112 px crops, from JPEG files (a folder source) and from HDF5 shards of
 * the same files; then runs a one-thread loader end to end. Prints crops/s
 * per core and student / teacher images/s per core, and says whether one
 * loading core keeps up with a student training step.
 *
 * Without --folder it generates its own JPEGs (synthetic images with a fine
 * noise texture, 500 x 375 px at quality 90: about ImageNet's typical size
 * and bytes per file) in a temporary folder, packs them, and removes both
 * afterwards.
 */
#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "data/data.h"
#include "nn/clock.h"
#include "tools/commands.h"

typedef struct BenchDataOptions {
    const char *folder;           /* NULL: generate */
    int images;                   /* generated images */
    int width, height;            /* of generated images */
    double seconds;               /* per measurement, at least */
    double student_images_per_s;  /* the training step to compare with */
    int keep;
} BenchDataOptions;

static void print_help(FILE *out) {
    fprintf(out,
            "usage: distill bench data [--folder PATH] [--images N] [--size WxH] [--seconds S]\n"
            "                          [--student-images-per-s X] [--keep]\n\n"
            "Times one core of data loading: read + decode of an image, a 256 px and a\n"
            "112 px crop (random-resized bicubic crop, flip, colour jitter, grayscale,\n"
            "blur, solarise, normalise), from JPEG files and from HDF5 shards of the same\n"
            "files, then a one-thread loader building 2 x 256 + 8 x 112 crops per image.\n"
            "Prints crops/s per core, images/s per core, and whether one loading core\n"
            "keeps up with a student step of X images/s.\n\n"
            "  --folder PATH    an image folder (CLASS/IMAGE.jpg) to read; default: generate JPEGs\n"
            "  --images N       how many to generate (default 48)\n"
            "  --size WxH       their size (default 500x375, ImageNet's most common)\n"
            "  --seconds S      least time per measurement (default 1.5)\n"
            "  --student-images-per-s X  the student step to compare with (default 7.9: ViT-S/16,\n"
            "                   batch 16, 224 px on this 2-core machine, the foundation issue)\n"
            "  --keep           keep the generated folder and shards\n");
}

static int parse_options(BenchDataOptions *o, int argc, char **argv) {
    static const struct option long_options[] = {
        {"folder", required_argument, 0, 'f'},  {"images", required_argument, 0, 'n'},
        {"size", required_argument, 0, 'z'},    {"seconds", required_argument, 0, 't'},
        {"student-images-per-s", required_argument, 0, 'r'}, {"keep", no_argument, 0, 'k'},
        {0, 0, 0, 0}};
    *o = (BenchDataOptions){.images = 48, .width = 500, .height = 375, .seconds = 1.5, .student_images_per_s = 7.9};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'f': o->folder = optarg; break;
        case 'n':
            o->images = (int)strtol(optarg, &end, 10);
            if (*end || o->images < 1 || o->images > 100000) goto bad;
            break;
        case 'z':
            if (sscanf(optarg, "%dx%d", &o->width, &o->height) != 2 || o->width < 16 || o->height < 16 ||
                o->width > 8192 || o->height > 8192)
                goto bad;
            break;
        case 't':
            o->seconds = strtod(optarg, &end);
            if (*end || !(o->seconds > 0) || o->seconds > 600) goto bad;
            break;
        case 'r':
            o->student_images_per_s = strtod(optarg, &end);
            if (*end || !(o->student_images_per_s > 0)) goto bad;
            break;
        case 'k': o->keep = 1; break;
        default: return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "distill bench data: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "distill bench data: bad value '%s'\n", optarg);
    return -1;
}

/* Generated JPEGs: synthetic images cut to width x height, four classes. */
static int generate_jpegs(const BenchDataOptions *o, const char *root, double *mean_bytes, DdError *err) {
    if (mkdir(root, 0755) != 0) return dd_fail(err, "%s: cannot create", root);
    tjhandle encoder = tjInitCompress();
    if (!encoder) return dd_fail(err, "cannot create a JPEG encoder");
    DataImage image = {0};
    unsigned char *rgb = malloc((size_t)o->width * o->height * 3);
    int status = rgb ? 0 : dd_fail(err, "out of memory");
    const int side = o->width > o->height ? o->width : o->height;
    double total = 0;
    for (int i = 0; i < o->images && status == 0; i++) {
        int32_t label;
        if ((status = data_synthetic_image(0, (uint64_t)i, side, 4, &image, &label, err))) break;
        /* photo-like fine texture on top, so the files cost what ImageNet's do to decode (about 110 KB) */
        uint64_t h = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        for (int y = 0; y < o->height; y++)
            for (int x = 0; x < o->width * 3; x++) {
                h ^= h << 13, h ^= h >> 7, h ^= h << 17;
                int v = image.pixels[(size_t)y * side * 3 + x] + (int)(h % 61) - 30;
                rgb[(size_t)y * o->width * 3 + x] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        unsigned char *jpeg = NULL;
        unsigned long size = 0;
        if (tjCompress2(encoder, rgb, o->width, 0, o->height, TJPF_RGB, &jpeg, &size, TJSAMP_420, 90, 0) != 0) {
            status = dd_fail(err, "JPEG encoding failed: %s", tjGetErrorStr2(encoder));
            break;
        }
        char path[1100];
        if (snprintf(path, sizeof path, "%s/class%d", root, i % 4) >= (int)sizeof path - 20) {
            tjFree(jpeg);
            status = dd_fail(err, "%s: path too long", root);
            break;
        }
        mkdir(path, 0755);
        snprintf(path + strlen(path), 20, "/image%06d.jpg", i % 1000000);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(jpeg, 1, size, f) != size) status = dd_fail(err, "%s: cannot write", path);
        if (f) fclose(f);
        tjFree(jpeg);
        total += (double)size;
    }
    *mean_bytes = total / o->images;
    free(rgb);
    data_image_free(&image);
    tjDestroy(encoder);
    return status;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

typedef struct Timing {
    double decode_ms;        /* read + decode, per image */
    double global_ms;        /* one 256 px crop */
    double local_ms;         /* one 112 px crop */
    int width, height;       /* of the last image */
} Timing;

/* Times read + decode, then 256 px and 112 px crops (images decoded once, untimed). */
static int time_source(const char *spec, const BenchDataOptions *o, const CropConfig *crops, Timing *t, DdError *err) {
    DataConfig config;
    if (data_config_defaults(&config, err)) return -1;
    if (snprintf(config.sources[0].source, sizeof config.sources[0].source, "%s", spec) >=
        (int)sizeof config.sources[0].source)
        return dd_fail(err, "%.80s...: source longer than %d bytes", spec, DATA_SOURCE_SPEC_MAX - 1);
    config.source_count = 1;
    DataSet *set;
    if (data_set_open(&set, &config, NULL, NULL, err)) return -1;
    DataScratch scratch;
    if (data_scratch_init(&scratch, err)) {
        data_set_close(set);
        return -1;
    }
    const uint64_t n = data_set_count(set);
    const int crop_count = crops->global_count + crops->local_count;
    float *out = malloc((size_t)3 * crops->global_size * crops->global_size * sizeof(float));
    int status = out ? 0 : dd_fail(err, "out of memory");
    DataSample sample;
    /* read + decode */
    uint64_t done = 0;
    double start = dd_now_seconds(), elapsed = 0;
    while (status == 0 && (elapsed < o->seconds || done < n)) {
        status = data_set_load(set, done % n, &scratch, &sample, err);
        done++;
        elapsed = dd_now_seconds() - start;
    }
    t->decode_ms = 1e3 * elapsed / (double)done;
    /* crops of each kind, round-robin over the images */
    for (int kind = 0; kind < 2 && status == 0; kind++) {
        const int first = kind == 0 ? 0 : crops->global_count;
        const int count = kind == 0 ? crops->global_count : crops->local_count;
        double spent = 0;
        uint64_t built = 0;
        for (uint64_t id = 0; status == 0 && (spent < o->seconds || id < n); id++) {
            if ((status = data_set_load(set, id % n, &scratch, &sample, err))) break;
            double t0 = dd_now_seconds();
            for (int k = 0; k < count && status == 0; k++)
                status = data_build_crop(&config.augment, crops, 0, id / n, id % n, first + k, &scratch.image, out,
                                         &scratch.crop, err);
            spent += dd_now_seconds() - t0;
            built += (uint64_t)count;
        }
        if (kind == 0) t->global_ms = 1e3 * spent / (double)built;
        else t->local_ms = 1e3 * spent / (double)built;
    }
    (void)crop_count;
    t->width = scratch.image.width;
    t->height = scratch.image.height;
    free(out);
    data_scratch_free(&scratch);
    data_set_close(set);
    return status;
}

/* A one-thread loader building full student batches: images/s. */
static int time_loader(const char *spec, const BenchDataOptions *o, const CropConfig *crops, double *images_per_s,
                       DdError *err) {
    DataConfig config;
    if (data_config_defaults(&config, err)) return -1;
    if (snprintf(config.sources[0].source, sizeof config.sources[0].source, "%s", spec) >=
        (int)sizeof config.sources[0].source)
        return dd_fail(err, "%.80s...: source longer than %d bytes", spec, DATA_SOURCE_SPEC_MAX - 1);
    config.source_count = 1;
    config.loader.threads = 1;
    config.loader.prefetch = 2;
    DataLoaderOptions options = {.data = &config, .crops = crops, .seed = 0, .global_batch = 16, .begin = 0,
                                 .end = 16, .build_locals = 1};
    DataLoader *loader;
    if (data_loader_open(&loader, &options, err)) return -1;
    const DataBatch *batch;
    int status = data_loader_next(loader, &batch, err);   /* the first batch warms the buffers up */
    if (status == 0) data_loader_release(loader, batch);
    double start = dd_now_seconds();
    int images = 0;
    while (status == 0 && dd_now_seconds() - start < 2 * o->seconds) {
        if ((status = data_loader_next(loader, &batch, err))) break;
        images += batch->count;
        data_loader_release(loader, batch);
    }
    *images_per_s = images / (dd_now_seconds() - start);
    data_loader_close(loader);
    return status;
}

static void print_row(const char *name, const Timing *t, const CropConfig *c) {
    double student_ms = t->decode_ms + c->global_count * t->global_ms + c->local_count * t->local_ms;
    double teacher_ms = t->decode_ms + c->global_count * t->global_ms;
    printf("  %-12s %9.2f %11.2f %11.2f %12.0f %12.0f %12.1f %12.1f\n", name, t->decode_ms, t->global_ms,
           t->local_ms, 1e3 / t->global_ms, 1e3 / t->local_ms, 1e3 / student_ms, 1e3 / teacher_ms);
}

int cmd_bench_data(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        print_help(stdout);
        return 0;
    }
    BenchDataOptions o;
    if (parse_options(&o, argc, argv)) {
        print_help(stderr);
        return 2;
    }
    DdError err;
    CropConfig crops;
    if (config_set_defaults(&crop_config_schema, &crops, &err)) {
        fprintf(stderr, "distill bench data: %s\n", err.message);
        return 1;
    }
    char work[] = "/tmp/distill-bench-data-XXXXXX";
    char folder[1024], shards[1024], spec[1100];
    double mean_bytes = 0;
    int status = 1;
    if (!mkdtemp(work)) {
        fprintf(stderr, "distill bench data: cannot create a temporary folder\n");
        return 1;
    }
    snprintf(shards, sizeof shards, "%s/shards", work);
    if (o.folder) {
        snprintf(folder, sizeof folder, "%s", o.folder);
    } else {
        snprintf(folder, sizeof folder, "%s/images", work);
        fprintf(stderr, "generating %d JPEGs of %d x %d px in %s ...\n", o.images, o.width, o.height, folder);
        if (generate_jpegs(&o, folder, &mean_bytes, &err)) goto done;
    }
    DataPackOptions pack = {.source = folder, .out = shards, .shard_size = 1000, .verify = 1};
    DataPackResult packed;
    if (data_pack(&pack, &packed, &err)) goto done;
    if (!mean_bytes && packed.packed) mean_bytes = (double)packed.bytes / packed.packed;

    Timing jpeg, hdf5;
    snprintf(spec, sizeof spec, "folder:%s", folder);
    if (time_source(spec, &o, &crops, &jpeg, &err)) goto done;
    snprintf(spec, sizeof spec, "hdf5:%s", shards);
    if (time_source(spec, &o, &crops, &hdf5, &err)) goto done;
    double loader_images_per_s = 0;
    if (time_loader(spec, &o, &crops, &loader_images_per_s, &err)) goto done;

    printf("data loading on one core: %llu images of about %d x %d px, %.0f KB each on average\n",
           (unsigned long long)packed.packed, jpeg.width, jpeg.height, mean_bytes / 1e3);
    printf("  %-12s %9s %11s %11s %12s %12s %12s %12s\n", "", "decode", "crop", "crop", "crops/s", "crops/s",
           "student", "teacher");
    printf("  %-12s %9s %11s %11s %12s %12s %12s %12s\n", "source", "ms/image", "ms @256px", "ms @112px",
           "@256px/core", "@112px/core", "images/s", "images/s");
    print_row("JPEG files", &jpeg, &crops);
    print_row("HDF5 shards", &hdf5, &crops);
    printf("  (student image: read + decode + %d x %d px + %d x %d px crops; teacher image: + %d x %d px only)\n",
           crops.global_count, crops.global_size, crops.local_count, crops.local_size, crops.global_count,
           crops.global_size);
    printf("  loader, 1 thread, HDF5 shards, batches of 16 student images: %.1f images/s\n", loader_images_per_s);
    double student_ms = hdf5.decode_ms + crops.global_count * hdf5.global_ms + crops.local_count * hdf5.local_ms;
    double per_core = 1e3 / student_ms;
    double margin = per_core / o.student_images_per_s;
    if (margin >= 1)
        printf("one loading core keeps up: it builds %.1f student images/s, %.1fx the %.1f images/s of the student step\n",
               per_core, margin, o.student_images_per_s);
    else
        printf("one loading core does NOT keep up: %.1f student images/s against %.1f images/s of the student step; "
               "use %d loader threads\n",
               per_core, o.student_images_per_s, (int)(o.student_images_per_s / per_core) + 1);
    printf("bench_data images=%llu jpeg_decode_ms=%.3f jpeg_crop256_per_s=%.1f jpeg_crop112_per_s=%.1f "
           "hdf5_decode_ms=%.3f hdf5_crop256_per_s=%.1f hdf5_crop112_per_s=%.1f student_images_per_s_per_core=%.2f "
           "loader_images_per_s=%.2f\n",
           (unsigned long long)packed.packed, jpeg.decode_ms, 1e3 / jpeg.global_ms, 1e3 / jpeg.local_ms,
           hdf5.decode_ms, 1e3 / hdf5.global_ms, 1e3 / hdf5.local_ms, per_core, loader_images_per_s);
    status = 0;
done:
    if (status) fprintf(stderr, "distill bench data: %s\n", err.message);
    if (o.keep) fprintf(stderr, "kept %s\n", work);
    else nftw(work, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return status;
}
