/*
 * workspace.c - every per-iteration buffer of a student rank (see
 * StudentWorkspace in students.h), allocated once: the backbone and head
 * activations, one float allocation for the objective's buffers, one of
 * int32 row indices, one of mask bytes, one of host mirrors. The fixed
 * index tables (where the CLS rows are, which teacher crop each student crop
 * is compared with) are filled here, once.
 */
#include <stdlib.h>
#include <string.h>

#include "students/students_internal.h"

/* Places the buffers of the three backend allocations and the host one
 * (with every base NULL it only counts; returns the bytes of each). */
typedef struct WorkspaceSizes {
    size_t floats, indices, masks, host;
} WorkspaceSizes;

static WorkspaceSizes workspace_walk(StudentWorkspace *w, float *memory, int32_t *indices, uint8_t *masks,
                                     void *host) {
    const StudentShape *s = &w->shape;
    const size_t B = (size_t)s->images, G = (size_t)s->global_count, L = (size_t)s->local_count;
    const size_t D = (size_t)w->D, M = (size_t)s->max_masked, GB = G * B, LB = L * B;
    const size_t Tg = (size_t)w->global.T, Tl = L ? (size_t)w->local.T : 0;
    const size_t widest = w->prototypes_dino > w->prototypes_ibot ? w->prototypes_dino : w->prototypes_ibot;

    BufferWalk f = {.memory = memory};
    w->cls = TAKE_FLOATS(&f, (GB + LB) * D);
    w->d_cls = TAKE_FLOATS(&f, (GB + LB) * D);
    w->patches = TAKE_FLOATS(&f, M * D);
    w->d_patches = TAKE_FLOATS(&f, M * D);
    w->dout_global = TAKE_FLOATS(&f, GB * Tg * D);
    w->dout_local = TAKE_FLOATS(&f, LB * Tl * D);
    w->koleo_unit = TAKE_FLOATS(&f, GB * D);
    w->koleo_norm = TAKE_FLOATS(&f, GB);
    w->d_koleo_unit = TAKE_FLOATS(&f, GB * D);
    w->dino_targets = TAKE_FLOATS(&f, GB * (size_t)w->prototypes_dino);
    w->ibot_targets = TAKE_FLOATS(&f, M * (size_t)w->prototypes_ibot);
    w->column = TAKE_FLOATS(&f, widest);
    w->row_loss = TAKE_FLOATS(&f, (size_t)w->rows);
    w->row_dloss = TAKE_FLOATS(&f, (size_t)w->rows);
    w->row_lse = TAKE_FLOATS(&f, GB + LB + M);

    BufferWalk i = {.memory = indices};
    w->cls_rows_global = buffer_take(&i, GB, sizeof(int32_t));
    w->cls_rows_local = buffer_take(&i, LB, sizeof(int32_t));
    w->patch_rows = buffer_take(&i, M, sizeof(int32_t));
    w->dino_global_targets = buffer_take(&i, GB * (G - 1), sizeof(int32_t));
    w->dino_local_targets = buffer_take(&i, LB * G, sizeof(int32_t));
    w->koleo_neighbor = buffer_take(&i, GB, sizeof(int32_t));

    BufferWalk m = {.memory = masks};
    w->masks = buffer_take(&m, GB * (size_t)w->Np, 1);

    BufferWalk h = {.memory = host};
    w->host_row_loss = buffer_take(&h, (size_t)w->rows, sizeof(float));
    w->host_row_dloss = buffer_take(&h, (size_t)w->rows, sizeof(float));
    w->host_patch_rows = buffer_take(&h, M, sizeof(int32_t));
    w->host_patch_weight = buffer_take(&h, M, sizeof(float));
    return (WorkspaceSizes){f.bytes, i.bytes, m.bytes, h.bytes};
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
    if (s->images < 1 || s->global_count < 1 || s->local_count < 0 || s->max_masked < 0)
        return dd_fail(err, "student '%s': expected >= 1 image, >= 1 global crop, >= 0 local crops and masked "
                       "patches, found %d, %d, %d, %d", student->name, s->images, s->global_count, s->local_count,
                       s->max_masked);
    if (objective->koleo_weight > 0 && s->images < 2)
        return dd_fail(err, "student '%s': KoLeo compares each image with its nearest neighbour, so it needs "
                       "at least 2 images per rank, found %d (or set koleo_weight: 0)", student->name, s->images);
    return 0;
}

/* The fixed index tables: CLS rows of the outputs, and the teacher crops
 * each student crop is compared with (global: every other one; local: all). */
static int fill_index_tables(StudentWorkspace *w, const NnBackend *be, DdError *err) {
    const int B = w->shape.images, G = w->shape.global_count, L = w->shape.local_count;
    const int GB = G * B, LB = L * B;
    const size_t count = (size_t)GB + LB + (size_t)GB * (G - 1) + (size_t)LB * G;
    int32_t *host = malloc((count ? count : 1) * sizeof(int32_t));
    if (!host) return dd_fail(err, "out of host memory for %zu row indices", count);
    int32_t *global_cls = host, *local_cls = global_cls + GB, *global_targets = local_cls + LB;
    int32_t *local_targets = global_targets + (size_t)GB * (G - 1);
    for (int i = 0; i < GB; i++) global_cls[i] = i * w->global.T;
    for (int i = 0; i < LB; i++) local_cls[i] = i * w->local.T;
    for (int g = 0; g < G; g++)
        for (int b = 0; b < B; b++) {
            int32_t *row = global_targets + (size_t)(g * B + b) * (G - 1);
            for (int other = 0, r = 0; other < G; other++)
                if (other != g) row[r++] = other * B + b;
        }
    for (int l = 0; l < L; l++)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < G; g++) local_targets[(size_t)(l * B + b) * G + g] = g * B + b;
    be->copy_to_device(w->cls_rows_global, global_cls, (size_t)GB * sizeof(int32_t));
    be->copy_to_device(w->cls_rows_local, local_cls, (size_t)LB * sizeof(int32_t));
    be->copy_to_device(w->dino_global_targets, global_targets, (size_t)GB * (G - 1) * sizeof(int32_t));
    be->copy_to_device(w->dino_local_targets, local_targets, (size_t)LB * G * sizeof(int32_t));
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
    const int dino_rows = (G + L) * B;
    w->rows = dino_rows + shape->max_masked + G * B;

    if (vit_activations_alloc(&w->global, student, be, G * B, shape->global_size, shape->global_size, 1, err) ||
        (L > 0 && vit_activations_alloc(&w->local, student, be, L * B, shape->local_size, shape->local_size, 1,
                                        err)) ||
        head_activations_alloc(&w->dino, &student->dino_head, w->D, dino_rows,
                               HEAD_PART_MLP | HEAD_PART_PROTOTYPES | HEAD_PART_BACKWARD, be, err) ||
        head_activations_alloc(&w->ibot, &student->ibot_head, w->D, shape->max_masked,
                               HEAD_PART_MLP | HEAD_PART_PROTOTYPES | HEAD_PART_BACKWARD, be, err)) {
        student_workspace_free(w, be);
        return dd_fail_context(err, "student '%s'", student->name);
    }
    w->Np = w->global.Np;

    const WorkspaceSizes sizes = workspace_walk(w, NULL, NULL, NULL, NULL);
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
    workspace_walk(w, w->memory, w->indices, masks, w->host);
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
