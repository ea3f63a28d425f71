/*
 * sinkhorn.c - Sinkhorn-Knopp centering of the teacher's prototype scores
 * over a student group (see students.h), the teacher's frozen prototype
 * layers on a student rank, and the targets they give.
 */
#include <string.h>

#include "students/students_internal.h"

int group_reduce_single_process(void *context, float *buffer, long count, DdError *err) {
    (void)context, (void)buffer, (void)count, (void)err;
    return 0;   /* a group of one: the local sums and maxima are the group's */
}

int sinkhorn_knopp(const NnBackend *be, float *scores, float *column, int M, int K, float temperature,
                   int iterations, const StudentGroup *group, DdError *err) {
    /* scores [M, K] -> Q = exp((scores - the prototype's group maximum) / temperature), in place */
    be->column_max(column, scores, M, K);
    if (group->max(group->context, column, K, err) != 0)
        return dd_fail_context(err, "Sinkhorn-Knopp: the maxima of %d prototype columns over the group", K);
    be->exp_with_temperature(scores, scores, column, M, K, temperature);
    for (int i = 0; i < iterations; i++) {
        /* every prototype gets the same total weight over the group's samples */
        be->column_sums(column, scores, M, K);
        if (group->sum(group->context, column, K, err) != 0)
            return dd_fail_context(err, "Sinkhorn-Knopp, iteration %d of %d: summing %d prototype columns "
                                   "over the group", i + 1, iterations, K);
        be->divide_columns(scores, column, M, K);
        /* every sample is one distribution */
        be->normalize_rows(scores, M, K);
    }
    return 0;
}

int teacher_targets(const NnBackend *be, const HeadConfig *head, const float *prototypes,
                    const float *features, float *targets, float *column, int M, float temperature,
                    int iterations, const StudentGroup *group, DdError *err) {
    if (M > 0) head_prototypes_forward(be, head, prototypes, features, targets, M);
    return sinkhorn_knopp(be, targets, column, M, head->prototypes, temperature, iterations, group, err);
}

/* ---- the teacher's prototype layers ------------------------------------------- */

static size_t teacher_prototypes_walk(TeacherPrototypes *t, float *memory) {
    BufferWalk w = {.memory = memory};
    t->dino_weight = TAKE_FLOATS(&w, (size_t)t->dino.prototypes * t->dino.bottleneck);
    t->ibot_weight = TAKE_FLOATS(&w, (size_t)t->ibot.prototypes * t->ibot.bottleneck);
    return w.bytes;
}

int teacher_prototypes_alloc(TeacherPrototypes *t, const ViTConfig *teacher, const NnBackend *be,
                             DdError *err) {
    memset(t, 0, sizeof *t);
    t->dino = teacher->dino_head;
    t->ibot = teacher->ibot_head;
    const size_t bytes = teacher_prototypes_walk(t, NULL);
    t->count = bytes / sizeof(float);
    t->memory = be->alloc(bytes);
    if (!t->memory)
        return dd_fail(err, "teacher '%s': could not allocate %.1f MiB of %s memory for its prototype layers",
                       teacher->name, bytes / (double)(1 << 20), be->name);
    teacher_prototypes_walk(t, t->memory);
    return 0;
}

void teacher_prototypes_set(TeacherPrototypes *t, const NnBackend *be, const float *dino_weight,
                            const float *ibot_weight) {
    be->copy(t->dino_weight, dino_weight, (size_t)t->dino.prototypes * t->dino.bottleneck * sizeof(float));
    be->copy(t->ibot_weight, ibot_weight, (size_t)t->ibot.prototypes * t->ibot.bottleneck * sizeof(float));
}

void teacher_prototypes_free(TeacherPrototypes *t, const NnBackend *be) {
    if (be && t->memory) be->free(t->memory);
    memset(t, 0, sizeof *t);
}
