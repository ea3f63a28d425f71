/*
 * data_config.h - what a run file says about its data: the multi-crop recipe
 * (`crops:`, top level of a run file) and the `data:` section (the sources
 * and their weights, the augmentation parameters, the loader threads and the
 * RoPE rescale range). Schemas and defaults in data_config.c.
 *
 *     data:
 *       sources:
 *         - {source: "hdf5:/data/lvd/shard-0*.h5", weight: 0.9}
 *         - {source: "folder:/data/imagenet/train", weight: 0.1}
 *       augment:
 *         global_scale: {min: 0.32, max: 1.0}
 *         jitter: {probability: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1}
 *         other_globals: {blur: 0.1, solarize: 0.2}
 *       loader: {threads: 2, prefetch: 4}
 *
 * Every key has a default (the DINOv2/v3 recipe); a run file without a
 * `data:` section trains on the embedded synthetic source.
 */
#ifndef DD_DATA_DATA_CONFIG_H
#define DD_DATA_DATA_CONFIG_H

#include <stdint.h>

#include "nn/error.h"
#include "nn/yaml_config.h"

enum {
    DATA_MAX_SOURCES = 16,
    DATA_SOURCE_SPEC_MAX = 512,   /* bytes of "folder:PATH", NUL included */
};

/* The multi-crop recipe: every image gives global_count crops of
 * global_size px (the teacher sees these) and local_count of local_size. */
typedef struct CropConfig {
    int global_size;
    int global_count;
    int local_size;
    int local_count;
} CropConfig;

/* An inclusive range [min, max]. */
typedef struct DataRange {
    float min, max;
} DataRange;

/* One source of images:
 *   "synthetic"          procedurally drawn images (images, image_size, classes apply);
 *   "folder:PATH"        PATH/CLASS/IMAGE.jpg|jpeg|png;
 *   "hdf5:PATH-or-glob"  shards written by `distill pack` (a folder: every FOLDER/NAME.h5).
 * weight: the share of batches drawn from this source (weights are relative). */
typedef struct DataSourceConfig {
    char source[DATA_SOURCE_SPEC_MAX];
    double weight;
    uint64_t images;      /* synthetic: how many images */
    int image_size;       /* synthetic: side in px */
    int classes;          /* synthetic: how many classes */
} DataSourceConfig;

/* torchvision's ColorJitter, applied with `probability`: brightness and
 * contrast factors in [1 - b, 1 + b], saturation in [1 - s, 1 + s], hue shift
 * in [-h, h] (turns), in a random order. */
typedef struct DataJitterConfig {
    float probability;
    float brightness;
    float contrast;
    float saturation;
    float hue;
} DataJitterConfig;

/* Probabilities of the per-crop operations. */
typedef struct DataCropOpsConfig {
    float blur;
    float solarize;
} DataCropOpsConfig;

typedef struct DataRgb {
    float red, green, blue;
} DataRgb;

typedef struct DataAugmentConfig {
    DataRange global_scale;      /* random-resized crop: area fraction of a global crop */
    DataRange local_scale;       /* ... of a local crop */
    DataRange aspect_ratio;      /* width / height, drawn log-uniformly */
    float flip;                  /* probability of a horizontal flip */
    DataJitterConfig jitter;
    float grayscale;             /* probability */
    DataRange blur_sigma;        /* Gaussian blur (9 taps) sigma in px */
    DataCropOpsConfig first_global;   /* global crop 0 */
    DataCropOpsConfig other_globals;  /* global crops 1.. */
    DataCropOpsConfig locals;
    DataRgb mean;                /* normalisation, on values in [0, 1] */
    DataRgb std;
} DataAugmentConfig;

typedef struct DataLoaderConfig {
    int threads;     /* decoding and augmenting threads per loader */
    int prefetch;    /* batches built ahead of the one in use */
} DataLoaderConfig;

typedef struct DataConfig {
    DataSourceConfig sources[DATA_MAX_SOURCES];
    int source_count;              /* 0: the embedded default, one synthetic source */
    DataLoaderConfig loader;
    DataAugmentConfig augment;
    DataRange rope_rescale;        /* log-uniform RoPE rescale per forward, see data_rope_rescale */
} DataConfig;

extern const ConfigSchema crop_config_schema;
extern const ConfigSchema data_config_schema;
extern const ConfigSchema data_source_config_schema;

/* The defaults of every key: source_count 0 (the synthetic default), and
 * every entry of `sources` holding a source's defaults, so a caller may set
 * sources[0].source and source_count = 1. */
int data_config_defaults(DataConfig *config, DdError *err);

/* The sources a config means: its list, or the embedded synthetic source when
 * the list is empty. *sources points into config or at a static default. */
int data_config_sources(const DataConfig *config, const DataSourceConfig **sources);

#endif
