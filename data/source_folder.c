/*
 * source_folder.c - `folder:PATH`: images in PATH/CLASS/IMAGE.jpg|jpeg|png,
 * labelled by class folder. Opening maps the folder's index (folder_index.h)
 * when it is current, and lists the folder and writes the index otherwise;
 * reading sample i reads and decodes file i of the index.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/folder_index.h"
#include "data/source.h"

typedef struct FolderSource {
    DataSource base;
    char root[FOLDER_INDEX_PATH_MAX];
    FolderIndex index;
} FolderSource;

static int folder_load(DataSource *source, uint64_t id, DataScratch *scratch, DataImage *image, int32_t *label,
                       DataProblemKind *kind, uint64_t *next, DdError *err) {
    const FolderSource *s = (const FolderSource *)source;
    *next = id + 1;
    uint32_t class_index = 0;
    const char *file = folder_index_file(&s->index, id, &class_index);
    const char *class_name = file ? folder_index_class_name(&s->index, class_index) : NULL;
    if (!file || !class_name) {
        *kind = DATA_PROBLEM_UNREADABLE;
        return dd_fail(err, "%s: index entry %llu is damaged", s->root, (unsigned long long)id);
    }
    char path[FOLDER_INDEX_PATH_MAX];
    *label = (int32_t)class_index;
    if (snprintf(path, sizeof path, "%s/%s/%s", s->root, class_name, file) >= (int)sizeof path) {
        *kind = DATA_PROBLEM_UNREADABLE;
        return dd_fail(err, "%s/%s/%.40s...: path longer than %d bytes", s->root, class_name, file,
                       FOLDER_INDEX_PATH_MAX - 1);
    }
    if (data_read_file(path, &scratch->bytes, kind, err)) return -1;
    return data_decode_image(&scratch->decoder, scratch->bytes.data, scratch->bytes.size, image, path, kind, err);
}

static void folder_close(DataSource *source) {
    FolderSource *s = (FolderSource *)source;
    folder_index_free(&s->index);
    free(s);
}

static const DataSourceOps folder_ops = {folder_load, folder_close};

int data_source_open_folder(DataSource **source, const char *root, DataProblems *problems, DdError *err) {
    FolderSource *s = calloc(1, sizeof *s);
    if (!s) return dd_fail(err, "out of memory for a folder source");
    if (strlen(root) >= sizeof s->root) {
        free(s);
        return dd_fail(err, "folder:%.80s...: path longer than %d bytes", root, FOLDER_INDEX_PATH_MAX - 1);
    }
    snprintf(s->root, sizeof s->root, "%s", root);
    size_t n = strlen(s->root);
    while (n > 1 && s->root[n - 1] == '/') s->root[--n] = 0;
    if (folder_index_open(&s->index, s->root, problems, err) != 0) {
        free(s);
        return dd_fail_context(err, "folder source");
    }
    if (s->index.image_count == 0) {
        folder_index_free(&s->index);
        free(s);
        return dd_fail(err, "%s: no images (expected CLASS/*.jpg, *.jpeg or *.png under it)", root);
    }
    s->base = (DataSource){.ops = &folder_ops, .kind = "folder", .count = s->index.image_count,
                           .class_count = (int)s->index.class_count};
    *source = &s->base;
    return 0;
}
