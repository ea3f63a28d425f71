/*
 * teacher_prototypes_load.c - the frozen teacher's prototype layers on a
 * student rank: read from the teacher's weights file, or drawn from the run
 * seed exactly as the teacher ranks draw them (model_informative_tensor_draw
 * with TEACHER_MODEL_INDEX), without the rest of the teacher.
 */
#include <stdlib.h>
#include <string.h>

#include "students/student_rank.h"

int teacher_prototypes_load(TeacherPrototypes *prototypes, const ViTConfig *cfg, const char *weights_path,
                            uint64_t seed, const NnBackend *be, DdError *err) {
    ModelLayout layout;
    if (model_layout_create(&layout, cfg, err) != 0) return -1;
    const char *names[2] = {"dino_head.prototypes.weight", "ibot_head.prototypes.weight"};
    float *host[2] = {NULL, NULL};   /* [prototypes, bottleneck] each */
    int status = -1;
    TensorFile file;
    int have_file = 0, heads_in_file = 0;
    if (weights_path && weights_path[0]) {
        if (tensor_file_open(&file, weights_path, err) != 0) goto done;
        have_file = 1;
        heads_in_file = tensor_file_contains(&file, names[0]);
    }
    for (int h = 0; h < 2; h++) {
        int index = -1;
        for (int i = 0; i < layout.tensor_count; i++)
            if (strcmp(layout.tensors[i].info.name, names[h]) == 0) index = i;
        if (index < 0) {
            dd_fail(err, "teacher '%s': no tensor %s in its layout", cfg->name, names[h]);
            goto done;
        }
        const ModelTensor *tensor = &layout.tensors[index];
        host[h] = malloc(tensor->info.count * sizeof(float));
        if (!host[h]) {
            dd_fail(err, "teacher '%s': out of memory for %s", cfg->name, names[h]);
            goto done;
        }
        if (heads_in_file) {
            TensorShape shape = {tensor->info.ndim, {tensor->info.shape[0], tensor->info.shape[1]}};
            if (tensor_file_read(&file, names[h], &shape, host[h], err) != 0) goto done;
        } else {
            model_informative_tensor_draw(&layout, index, seed, TEACHER_MODEL_INDEX, host[h]);
        }
    }
    if (teacher_prototypes_alloc(prototypes, cfg, be, err) != 0) goto done;
    {
        /* teacher_prototypes_set copies from backend memory */
        const size_t dino_count = (size_t)cfg->dino_head.prototypes * cfg->dino_head.bottleneck;
        const size_t ibot_count = (size_t)cfg->ibot_head.prototypes * cfg->ibot_head.bottleneck;
        float *staging = be->alloc((dino_count + ibot_count) * sizeof(float));
        if (!staging) {
            teacher_prototypes_free(prototypes, be);
            dd_fail(err, "teacher '%s': out of memory for its prototypes", cfg->name);
            goto done;
        }
        be->copy_to_device(staging, host[0], dino_count * sizeof(float));
        be->copy_to_device(staging + dino_count, host[1], ibot_count * sizeof(float));
        teacher_prototypes_set(prototypes, be, staging, staging + dino_count);
        be->free(staging);
    }
    status = 0;
done:
    free(host[0]);
    free(host[1]);
    if (have_file) tensor_file_close(&file);
    model_layout_free(&layout);
    return status;
}
