/*
 * source.h - where images come from. A source holds `count` samples with
 * ids 0 .. count-1, each an image and a class label; reading sample `id`
 * always gives the same pixels (ids are sorted file order, or shard order).
 *
 *   synthetic          procedurally drawn images (source_synthetic.c)
 *   folder:PATH        PATH/CLASS/IMAGE.jpg|jpeg|png, listed once into an index
 *                      file (source_folder.c, folder_index.c)
 *   hdf5:PATH-or-glob  shards written by `distill pack` (source_hdf5.c, shard.h)
 *
 * Sources are read by several loading threads at once: `load` is
 * thread-safe, and everything a read needs besides the source's immutable
 * index lives in the caller's DataScratch (one per thread).
 */
#ifndef DD_DATA_SOURCE_H
#define DD_DATA_SOURCE_H

#include <stdint.h>

#include "data/augment.h"
#include "data/data_config.h"
#include "data/image.h"
#include "data/problems.h"
#include "nn/error.h"

/* What one loading thread reuses from sample to sample. */
typedef struct DataScratch {
    DataBytes bytes;          /* encoded bytes of the sample in hand */
    DataDecoder decoder;
    DataImage image;          /* its pixels */
    DataCropScratch crop;
} DataScratch;

int data_scratch_init(DataScratch *scratch, DdError *err);
void data_scratch_free(DataScratch *scratch);

typedef struct DataSource DataSource;

typedef struct DataSourceOps {
    /* Reads sample id (< count) into image and *label. On failure: *kind
     * says what was wrong, err names the file (and shard entry), and *next
     * is the first id worth trying instead (id + 1, or the first id past a
     * broken shard; count wraps to 0). */
    int (*load)(DataSource *source, uint64_t id, DataScratch *scratch, DataImage *image, int32_t *label,
                DataProblemKind *kind, uint64_t *next, DdError *err);
    void (*close)(DataSource *source);
} DataSourceOps;

struct DataSource {
    const DataSourceOps *ops;
    const char *kind;                   /* "synthetic", "folder", "hdf5" */
    char spec[DATA_SOURCE_SPEC_MAX];    /* as configured */
    uint64_t count;                     /* samples */
    int class_count;
    int index;                          /* position in the data config's source list */
};

/* Opens the source a config entry describes; index is its position in the
 * list (it keys the synthetic images). Problems met while opening (a shard
 * that is not HDF5) are reported to problems and do not fail the open
 * unless no sample is left. */
int data_source_open(DataSource **source, const DataSourceConfig *config, int index, DataProblems *problems,
                     DdError *err);
void data_source_close(DataSource *source);

int data_source_open_synthetic(DataSource **source, const DataSourceConfig *config, int index, DdError *err);
int data_source_open_folder(DataSource **source, const char *root, DataProblems *problems, DdError *err);
int data_source_open_hdf5(DataSource **source, const char *pattern, DataProblems *problems, DdError *err);

/* Draws synthetic image `id` of source `index` at size x size px into image,
 * and its label in [0, classes): a background gradient with grain, one to
 * three objects whose shape, texture and hue follow the class, and up to
 * two occluding patches. A pure function of its arguments. */
int data_synthetic_image(int index, uint64_t id, int size, int classes, DataImage *image, int32_t *label,
                         DdError *err);

#endif
