/*
 * workspace.c - every per-iteration buffer of a student rank (see
 * StudentWorkspace in students.h), allocated once: the backbone and head
 * activations of one micro-batch, one float allocation for the objective's
 * buffers, one of int32 row indices, one of mask bytes, one of host
 * mirrors. The fixed index tables (where the CLS rows are) are filled here,
 * once; the tables that depend on which micro-batch runs are the step's.
 */
#include <stdlib.h>
#include <string.h>

#include "students/students_internal.h"

/* Places the buffers of the three backend allocations and the host one
 * (with every base NULL it only counts; returns the bytes of each). */
typedef struct WorkspaceSizes {
    size_t floats, indices, masks, host;
} WorkspaceSizes;

static WorkspaceSizes workspace_walk(StudentWorkspace *w, const ViTConfig *student, float *memory, int32_t *indices,
                                     uint8_t *masks, void *host) {
    const StudentShape *s = &w->shape;
    const size_t B = (size_t)s->images, G = (size_t)s->global_count, L = (size_t)s->local_count;
    const size_t D = (size_t)w->D, M = (size_t)s->max_masked, GB = G * B;
    const size_t m = (size_t)w->micro, Mm = (size_t)w->micro_masked, Gm = G * m, Lm = L * m;
    const size_t Tg = (size_t)w->global.T, Tl = L ? (size_t)w->local.T : 0;
    const size_t widest = w->prototypes_dino > w->prototypes_ibot ? w->prototypes_dino : w->prototypes_ibot;
    const size_t C = (size_t)student->in_channels, Sg = (size_t)s->global_size, Sl = (size_t)s->local_size;
    const int gathered = w->micro < s->images;   /* more than one micro-batch */

    BufferWalk f = {.memory = memory};
    w->cls = TAKE_FLOATS(&f, (Gm + Lm) * D);
    w->d_cls = TAKE_FLOATS(&f, (Gm + Lm) * D);
    w->patches = TAKE_FLOATS(&f, Mm * D);
    w->d_patches = TAKE_FLOATS(&f, Mm * D);
    w->dout_global = TAKE_FLOATS(&f, Gm * Tg * D);
    w->dout_local = TAKE_FLOATS(&f, Lm * Tl * D);
    w->koleo_unit = TAKE_FLOATS(&f, Gm * D);
    w->koleo_norm = TAKE_FLOATS(&f, Gm);
    w->d_koleo_unit = TAKE_FLOATS(&f, Gm * D);
    w->micro_global_crops = gathered ? TAKE_FLOATS(&f, Gm * C * Sg * Sg) : NULL;
    w->micro_local_crops = gathered && L ? TAKE_FLOATS(&f, Lm * C * Sl * Sl) : NULL;
    w->dino_targets = TAKE_FLOATS(&f, GB * (size_t)w->prototypes_dino);
    w->ibot_targets = TAKE_FLOATS(&f, M * (size_t)w->prototypes_ibot);
    w->column = TAKE_FLOATS(&f, widest);
    w->row_loss = TAKE_FLOATS(&f, (size_t)w->rows);
    w->row_dloss = TAKE_FLOATS(&f, (size_t)w->rows);
    w->row_lse = TAKE_FLOATS(&f, (size_t)w->rows);

    BufferWalk i = {.memory = indices};
    w->cls_rows_global = buffer_take(&i, Gm, sizeof(int32_t));
    w->cls_rows_local = buffer_take(&i, Lm, sizeof(int32_t));
    w->patch_rows = buffer_take(&i, Mm, sizeof(int32_t));
    w->ibot_target_rows = buffer_take(&i, Mm, sizeof(int32_t));
    w->dino_global_targets = buffer_take(&i, Gm * (G - 1), sizeof(int32_t));
    w->dino_local_targets = buffer_take(&i, Lm * G, sizeof(int32_t));
    w->koleo_neighbor = buffer_take(&i, Gm, sizeof(int32_t));

    BufferWalk k = {.memory = masks};
    w->masks = buffer_take(&k, Gm * (size_t)w->Np, 1);

    BufferWalk h = {.memory = host};
    w->host_row_loss = buffer_take(&h, (size_t)w->rows, sizeof(float));
    w->host_row_dloss = buffer_take(&h, (size_t)w->rows, sizeof(float));
    w->host_patch_rows = buffer_take(&h, Mm, sizeof(int32_t));
    w->host_patch_weight = buffer_take(&h, Mm, sizeof(float));
    w->host_ibot_target_rows = buffer_take(&h, Mm, sizeof(int32_t));
    w->host_target_tables = buffer_take(&h, Gm * (G - 1) + Lm * G, sizeof(int32_t));
    w->host_crop_masked = buffer_take(&h, GB + 1, sizeof(int32_t));
    w->host_masks = buffer_take(&h, Gm * (size_t)w->Np, 1);
    return (WorkspaceSizes){f.bytes, i.bytes, k.bytes, h.bytes};
}

/* The teacher's bottlenecks meet the student's patches and prototypes. */
static int check_pair(const ViTConfig *student, const ViTConfig *teacher, const StudentShape *s,
                      const ObjectiveConfig *objective, DdError *err) {
    if (student->patch_size != teacher->patch_size)
        return dd_fail(err, "student '%s': expected patch_size %d as in teacher '%s', found %d", student->name,
                       teacher->patch_size, teacher->name, student->patch_size);
    if (student->dino_head.prototypes != teacher->dino_head.prototypes ||
        student->ibot_head.prototypes != teacher->ibot_head.prototypes)
        return dd_fail(err, "student '%s': expected %d DINO and %d iBOT prototypes as in teacher '%s', found %d and %d",
                       student->name, teacher->dino_head.prototypes, teacher->ibot_head.prototypes, teacher->name,
                       student->dino_head.prototypes, student->ibot_head.prototypes);
    if (s->images < 1 || s->global_count < 1 || s->local_count < 0 || s->max_masked < 0 || s->micro_batch < 0)
        return dd_fail(err, "student '%s': expected >= 1 image, >= 1 global crop, >= 0 local crops, masked "
                       "patches and micro_batch, found %d, %d, %d, %d, %d", student->name, s->images,
                       s->global_count, s->local_count, s->max_masked, s->micro_batch);
    if (objective->koleo_weight > 0 && s->images < 2)
        return dd_fail(err, "student '%s': KoLeo compares each image with its nearest neighbour, so it needs "
                       "at least 2 images per rank, found %d (or set koleo_weight: 0)", student->name, s->images);
    if (objective->koleo_weight > 0 && s->micro_batch == 1)
        return dd_fail(err, "student '%s': KoLeo compares each image with its nearest neighbour in its "
                       "micro-batch, so it needs micro_batch >= 2 (or 0), found 1 (or set koleo_weight: 0)",
                       student->name);
    return 0;
}

/* The fixed index tables: the CLS rows of the outputs of a micro-batch. */
static int fill_index_tables(StudentWorkspace *w, const NnBackend *be, DdError *err) {
    const int Gm = w->shape.global_count * w->micro, Lm = w->shape.local_count * w->micro;
    int32_t *host = malloc(((size_t)Gm + Lm) * sizeof(int32_t));
    if (!host) return dd_fail(err, "out of host memory for %d row indices", Gm + Lm);
    for (int i = 0; i < Gm; i++) host[i] = i * w->global.T;
    for (int i = 0; i < Lm; i++) host[Gm + i] = i * w->local.T;
    be->copy_to_device(w->cls_rows_global, host, (size_t)Gm * sizeof(int32_t));
    be->copy_to_device(w->cls_rows_local, host + Gm, (size_t)Lm * sizeof(int32_t));
    free(host);
    return 0;
}

int student_max_masked(const StudentShape *shape, const ObjectiveConfig *objective, int patch_size) {
    const int side = shape->global_size / patch_size;
    return shape->global_count * shape->images * ibot_mask_max_count(&objective->ibot_mask, side * side);
}

int student_workspace_alloc(StudentWorkspace *w, const ViTConfig *student, const ViTConfig *teacher,
                            const StudentShape *shape, const ObjectiveConfig *objective,
                            const NnBackend *be, DdError *err) {
    memset(w, 0, sizeof *w);
    if (check_pair(student, teacher, shape, objective, err) != 0) return -1;
    w->shape = *shape;
    w->objective = *objective;
    w->weights = objective_loss_weights(objective, shape->global_count, shape->local_count);
    w->D = student->dim;
    w->prototypes_dino = student->dino_head.prototypes;
    w->prototypes_ibot = student->ibot_head.prototypes;
    const int B = shape->images, G = shape->global_count, L = shape->local_count;
    const int m = shape->micro_batch > 0 && shape->micro_batch < B ? shape->micro_batch : B;
    w->micro = m;
    w->micro_masked = (int)(((long)shape->max_masked * m + B - 1) / B);
    for (int first = 0; first < B; first += m) {
        const int images = micro_batch_images(w, first);
        if (images > 1) w->koleo_crops += G * images;
    }
    w->rows = (G + L) * B + shape->max_masked + G * B;

    if (vit_activations_alloc(&w->global, student, be, G * m, shape->global_size, shape->global_size, 1, err) ||
        (L > 0 && vit_activations_alloc(&w->local, student, be, L * m, shape->local_size, shape->local_size, 1,
                                        err)) ||
        head_activations_alloc(&w->dino, &student->dino_head, w->D, (G + L) * m,
                               HEAD_PART_MLP | HEAD_PART_PROTOTYPES | HEAD_PART_BACKWARD, be, err) ||
        head_activations_alloc(&w->ibot, &student->ibot_head, w->D, w->micro_masked,
                               HEAD_PART_MLP | HEAD_PART_PROTOTYPES | HEAD_PART_BACKWARD, be, err)) {
        student_workspace_free(w, be);
        return dd_fail_context(err, "student '%s'", student->name);
    }
    w->Np = w->global.Np;

    const WorkspaceSizes sizes = workspace_walk(w, student, NULL, NULL, NULL, NULL);
    w->count = sizes.floats / sizeof(float);
    w->memory = be->alloc(sizes.floats);
    w->indices = be->alloc(sizes.indices ? sizes.indices : 64);
    void *masks = be->alloc(sizes.masks ? sizes.masks : 64);
    w->host = calloc(1, sizes.host ? sizes.host : 64);
    w->masks = masks;
    if (!w->memory || !w->indices || !masks || !w->host) {
        student_workspace_free(w, be);
        return dd_fail(err, "student '%s': could not allocate the %.1f MiB of %s memory of its iteration buffers",
                       student->name, (sizes.floats + sizes.indices + sizes.masks) / (double)(1 << 20), be->name);
    }
    workspace_walk(w, student, w->memory, w->indices, masks, w->host);
    if (fill_index_tables(w, be, err) != 0) {
        student_workspace_free(w, be);
        return -1;
    }
    return 0;
}

void student_workspace_free(StudentWorkspace *w, const NnBackend *be) {
    vit_activations_free(&w->global, be);
    vit_activations_free(&w->local, be);
    head_activations_free(&w->dino, be);
    head_activations_free(&w->ibot, be);
    if (w->memory) be->free(w->memory);
    if (w->indices) be->free(w->indices);
    if (w->masks) be->free(w->masks);
    free(w->host);
    memset(w, 0, sizeof *w);
}
