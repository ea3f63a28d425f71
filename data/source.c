/*
 * source.c - opening a source from its config entry ("synthetic",
 * "folder:PATH", "hdf5:PATTERN"), and the per-thread scratch.
 */
#include "data/source.h"

#include <stdio.h>
#include <string.h>

int data_scratch_init(DataScratch *scratch, DdError *err) {
    *scratch = (DataScratch){0};
    return data_decoder_init(&scratch->decoder, err);
}

void data_scratch_free(DataScratch *scratch) {
    data_bytes_free(&scratch->bytes);
    data_decoder_free(&scratch->decoder);
    data_image_free(&scratch->image);
    data_crop_scratch_free(&scratch->crop);
}

int data_source_open(DataSource **source, const DataSourceConfig *config, int index, DataProblems *problems,
                     DdError *err) {
    *source = NULL;
    const char *spec = config->source;
    int status;
    if (strcmp(spec, "synthetic") == 0) status = data_source_open_synthetic(source, config, index, err);
    else if (strncmp(spec, "folder:", 7) == 0 && spec[7]) status = data_source_open_folder(source, spec + 7, problems, err);
    else if (strncmp(spec, "hdf5:", 5) == 0 && spec[5]) status = data_source_open_hdf5(source, spec + 5, problems, err);
    else
        return dd_fail(err, "source %d: expected 'synthetic', 'folder:PATH' or 'hdf5:PATH-or-glob', found '%s'",
                       index, spec);
    if (status) return -1;
    snprintf((*source)->spec, sizeof (*source)->spec, "%s", spec);
    (*source)->index = index;
    return 0;
}

void data_source_close(DataSource *source) {
    if (source) source->ops->close(source);
}
