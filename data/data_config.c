/*
 * data_config.c - the schemas of the `crops:` and `data:` sections of a run
 * file (see data_config.h): keys, ranges, defaults, and the checks that tie
 * fields together (ranges whose min is at most their max, source kinds).
 */
#include "data/data_config.h"

#include <stddef.h>
#include <string.h>

static const ConfigField crop_fields[] = {
    {CONFIG_MEMBER(CropConfig, global_size), .type = CONFIG_INT, .min = 1, .max = 8192, .fallback = 256},
    {CONFIG_MEMBER(CropConfig, global_count), .type = CONFIG_INT, .min = 1, .max = 64, .fallback = 2},
    {CONFIG_MEMBER(CropConfig, local_size), .type = CONFIG_INT, .min = 1, .max = 8192, .fallback = 112},
    {CONFIG_MEMBER(CropConfig, local_count), .type = CONFIG_INT, .min = 0, .max = 64, .fallback = 8},
};
const ConfigSchema crop_config_schema = CONFIG_SCHEMA("crops", CropConfig, crop_fields, NULL);

/* ---- ranges: one schema per set of defaults and bounds ---------------------- */

static int check_range(const void *object, const ConfigPlaces *places, DdError *err) {
    const DataRange *r = object;
    if (r->min > r->max)
        return CONFIG_FAIL_AT(places, &r->max, err, "expected 'max' at least 'min' (%g), found %g", r->min, r->max);
    return 0;
}

#define RANGE_FIELDS(low, high, default_min, default_max)                                             \
    {                                                                                                 \
        {CONFIG_MEMBER(DataRange, min), .type = CONFIG_FLOAT, .min = (low), .max = (high),            \
         .fallback = (default_min)},                                                                  \
        {CONFIG_MEMBER(DataRange, max), .type = CONFIG_FLOAT, .min = (low), .max = (high),            \
         .fallback = (default_max)},                                                                  \
    }

static const ConfigField global_scale_fields[] = RANGE_FIELDS(1e-4, 1, 0.32, 1.0);
static const ConfigField local_scale_fields[] = RANGE_FIELDS(1e-4, 1, 0.05, 0.32);
static const ConfigField aspect_fields[] = RANGE_FIELDS(0.01, 100, 3.0 / 4.0, 4.0 / 3.0);
static const ConfigField sigma_fields[] = RANGE_FIELDS(1e-3, 100, 0.1, 2.0);
static const ConfigField rope_fields[] = RANGE_FIELDS(1e-3, 1e3, 0.5, 2.0);
static const ConfigSchema global_scale_schema = CONFIG_SCHEMA("range", DataRange, global_scale_fields, check_range);
static const ConfigSchema local_scale_schema = CONFIG_SCHEMA("range", DataRange, local_scale_fields, check_range);
static const ConfigSchema aspect_schema = CONFIG_SCHEMA("range", DataRange, aspect_fields, check_range);
static const ConfigSchema sigma_schema = CONFIG_SCHEMA("range", DataRange, sigma_fields, check_range);
static const ConfigSchema rope_schema = CONFIG_SCHEMA("range", DataRange, rope_fields, check_range);

/* ---- sources ---------------------------------------------------------------------- */

static int check_source(const void *object, const ConfigPlaces *places, DdError *err) {
    const DataSourceConfig *s = object;
    int known = strcmp(s->source, "synthetic") == 0 ||
                (strncmp(s->source, "folder:", 7) == 0 && s->source[7]) ||
                (strncmp(s->source, "hdf5:", 5) == 0 && s->source[5]);
    if (!known)
        return CONFIG_FAIL_AT(places, &s->source, err,
                              "expected 'synthetic', 'folder:PATH' or 'hdf5:PATH-or-glob' for 'source', found '%s'",
                              s->source);
    if (!(s->weight > 0))
        return CONFIG_FAIL_AT(places, &s->weight, err, "expected a positive 'weight', found %g", s->weight);
    return 0;
}

static const ConfigField source_fields[] = {
    {CONFIG_MEMBER(DataSourceConfig, source), .type = CONFIG_STRING, .min = 1, .fallback_text = "synthetic"},
    {CONFIG_MEMBER(DataSourceConfig, weight), .type = CONFIG_DOUBLE, .min = 0, .max = 1e9, .fallback = 1},
    {CONFIG_MEMBER(DataSourceConfig, images), .type = CONFIG_UINT64, .min = 1, .max = 1e12, .fallback = 100000},
    {CONFIG_MEMBER(DataSourceConfig, image_size), .type = CONFIG_INT, .min = 8, .max = 4096, .fallback = 256},
    {CONFIG_MEMBER(DataSourceConfig, classes), .type = CONFIG_INT, .min = 1, .max = 1 << 20, .fallback = 10},
};
const ConfigSchema data_source_config_schema =
    CONFIG_SCHEMA("source", DataSourceConfig, source_fields, check_source);

/* ---- augmentation ----------------------------------------------------------------- */

static const ConfigField jitter_fields[] = {
    {CONFIG_MEMBER(DataJitterConfig, probability), .type = CONFIG_FLOAT, .min = 0, .max = 1, .fallback = 0.8},
    {CONFIG_MEMBER(DataJitterConfig, brightness), .type = CONFIG_FLOAT, .min = 0, .max = 1, .fallback = 0.4},
    {CONFIG_MEMBER(DataJitterConfig, contrast), .type = CONFIG_FLOAT, .min = 0, .max = 1, .fallback = 0.4},
    {CONFIG_MEMBER(DataJitterConfig, saturation), .type = CONFIG_FLOAT, .min = 0, .max = 1, .fallback = 0.2},
    {CONFIG_MEMBER(DataJitterConfig, hue), .type = CONFIG_FLOAT, .min = 0, .max = 0.5, .fallback = 0.1},
};
static const ConfigSchema jitter_schema = CONFIG_SCHEMA("jitter", DataJitterConfig, jitter_fields, NULL);

#define CROP_OPS_FIELDS(blur_default, solarize_default)                                                   \
    {                                                                                                     \
        {CONFIG_MEMBER(DataCropOpsConfig, blur), .type = CONFIG_FLOAT, .min = 0, .max = 1,                \
         .fallback = (blur_default)},                                                                     \
        {CONFIG_MEMBER(DataCropOpsConfig, solarize), .type = CONFIG_FLOAT, .min = 0, .max = 1,            \
         .fallback = (solarize_default)},                                                                 \
    }
static const ConfigField first_global_fields[] = CROP_OPS_FIELDS(1.0, 0.0);
static const ConfigField other_globals_fields[] = CROP_OPS_FIELDS(0.1, 0.2);
static const ConfigField locals_fields[] = CROP_OPS_FIELDS(0.5, 0.0);
static const ConfigSchema first_global_schema = CONFIG_SCHEMA("crop ops", DataCropOpsConfig, first_global_fields, NULL);
static const ConfigSchema other_globals_schema =
    CONFIG_SCHEMA("crop ops", DataCropOpsConfig, other_globals_fields, NULL);
static const ConfigSchema locals_schema = CONFIG_SCHEMA("crop ops", DataCropOpsConfig, locals_fields, NULL);

#define RGB_FIELDS(low, r, g, b)                                                                          \
    {                                                                                                     \
        {CONFIG_MEMBER(DataRgb, red), .type = CONFIG_FLOAT, .min = (low), .max = 1, .fallback = (r)},     \
        {CONFIG_MEMBER(DataRgb, green), .type = CONFIG_FLOAT, .min = (low), .max = 1, .fallback = (g)},   \
        {CONFIG_MEMBER(DataRgb, blue), .type = CONFIG_FLOAT, .min = (low), .max = 1, .fallback = (b)},    \
    }
static const ConfigField mean_fields[] = RGB_FIELDS(0, 0.485, 0.456, 0.406);
static const ConfigField std_fields[] = RGB_FIELDS(1e-3, 0.229, 0.224, 0.225);
static const ConfigSchema mean_schema = CONFIG_SCHEMA("rgb", DataRgb, mean_fields, NULL);
static const ConfigSchema std_schema = CONFIG_SCHEMA("rgb", DataRgb, std_fields, NULL);

static const ConfigField augment_fields[] = {
    {CONFIG_MEMBER(DataAugmentConfig, global_scale), .type = CONFIG_STRUCT, .schema = &global_scale_schema},
    {CONFIG_MEMBER(DataAugmentConfig, local_scale), .type = CONFIG_STRUCT, .schema = &local_scale_schema},
    {CONFIG_MEMBER(DataAugmentConfig, aspect_ratio), .type = CONFIG_STRUCT, .schema = &aspect_schema},
    {CONFIG_MEMBER(DataAugmentConfig, flip), .type = CONFIG_FLOAT, .min = 0, .max = 1, .fallback = 0.5},
    {CONFIG_MEMBER(DataAugmentConfig, jitter), .type = CONFIG_STRUCT, .schema = &jitter_schema},
    {CONFIG_MEMBER(DataAugmentConfig, grayscale), .type = CONFIG_FLOAT, .min = 0, .max = 1, .fallback = 0.2},
    {CONFIG_MEMBER(DataAugmentConfig, blur_sigma), .type = CONFIG_STRUCT, .schema = &sigma_schema},
    {CONFIG_MEMBER(DataAugmentConfig, first_global), .type = CONFIG_STRUCT, .schema = &first_global_schema},
    {CONFIG_MEMBER(DataAugmentConfig, other_globals), .type = CONFIG_STRUCT, .schema = &other_globals_schema},
    {CONFIG_MEMBER(DataAugmentConfig, locals), .type = CONFIG_STRUCT, .schema = &locals_schema},
    {CONFIG_MEMBER(DataAugmentConfig, mean), .type = CONFIG_STRUCT, .schema = &mean_schema},
    {CONFIG_MEMBER(DataAugmentConfig, std), .type = CONFIG_STRUCT, .schema = &std_schema},
};
static const ConfigSchema augment_schema = CONFIG_SCHEMA("augment", DataAugmentConfig, augment_fields, NULL);

static const ConfigField loader_fields[] = {
    {CONFIG_MEMBER(DataLoaderConfig, threads), .type = CONFIG_INT, .min = 1, .max = 256, .fallback = 1},
    {CONFIG_MEMBER(DataLoaderConfig, prefetch), .type = CONFIG_INT, .min = 1, .max = 64, .fallback = 3},
};
static const ConfigSchema loader_schema = CONFIG_SCHEMA("loader", DataLoaderConfig, loader_fields, NULL);

static const ConfigField data_fields[] = {
    {CONFIG_MEMBER(DataConfig, sources), .type = CONFIG_LIST, .min = 0, .schema = &data_source_config_schema,
     .count_offset = offsetof(DataConfig, source_count)},
    {CONFIG_MEMBER(DataConfig, loader), .type = CONFIG_STRUCT, .schema = &loader_schema},
    {CONFIG_MEMBER(DataConfig, augment), .type = CONFIG_STRUCT, .schema = &augment_schema},
    {CONFIG_MEMBER(DataConfig, rope_rescale), .type = CONFIG_STRUCT, .schema = &rope_schema},
};
const ConfigSchema data_config_schema = CONFIG_SCHEMA("data", DataConfig, data_fields, NULL);

int data_config_defaults(DataConfig *config, DdError *err) {
    memset(config, 0, sizeof *config);
    if (config_set_defaults(&data_config_schema, config, err)) return -1;
    /* unlisted entries hold the defaults too, so that code can fill one in */
    for (int i = 0; i < DATA_MAX_SOURCES; i++)
        if (config_set_defaults(&data_source_config_schema, &config->sources[i], err)) return -1;
    return 0;
}

/* The embedded default source: synthetic images with the schema's defaults. */
static const DataSourceConfig default_source = {
    .source = "synthetic", .weight = 1.0, .images = 100000, .image_size = 256, .classes = 10};

int data_config_sources(const DataConfig *config, const DataSourceConfig **sources) {
    if (config->source_count > 0) {
        *sources = config->sources;
        return config->source_count;
    }
    *sources = &default_source;
    return 1;
}
