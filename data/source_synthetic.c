/*
 * source_synthetic.c - the embedded default source: `images` synthetic
 * images of image_size px in `classes` classes (synthetic_image.c). Needs no
 * files and never fails to read.
 */
#include <stdlib.h>

#include "data/source.h"

typedef struct SyntheticSource {
    DataSource base;
    int image_size;
} SyntheticSource;

static int synthetic_load(DataSource *source, uint64_t id, DataScratch *scratch, DataImage *image, int32_t *label,
                          DataProblemKind *kind, uint64_t *next, DdError *err) {
    (void)scratch;
    const SyntheticSource *s = (const SyntheticSource *)source;
    *kind = DATA_PROBLEM_TOO_LARGE;
    *next = id + 1;
    return data_synthetic_image(source->index, id, s->image_size, source->class_count, image, label, err);
}

static void synthetic_close(DataSource *source) { free(source); }

static const DataSourceOps synthetic_ops = {synthetic_load, synthetic_close};

int data_source_open_synthetic(DataSource **source, const DataSourceConfig *config, int index, DdError *err) {
    SyntheticSource *s = calloc(1, sizeof *s);
    if (!s) return dd_fail(err, "out of memory for a synthetic source");
    s->base = (DataSource){.ops = &synthetic_ops, .kind = "synthetic", .count = config->images,
                           .class_count = config->classes, .index = index};
    s->image_size = config->image_size;
    *source = &s->base;
    return 0;
}
