/*
 * student.c - the student's state: parameters and gradients, two buffers
 * of one layout, its shard of the AdamW moments and the EMA (see
 * students.h), and the runs its gradients are summed over the group in.
 */
#include <stdlib.h>
#include <string.h>

#include "students/students.h"

void student_shard_bounds(size_t count, int size, size_t *bounds) {
    /* equal shards rounded up to whole SHARD_ALIGN-float pieces */
    const size_t pieces = (count + SHARD_ALIGN - 1) / SHARD_ALIGN;
    const size_t shard = (pieces + (size_t)size - 1) / (size_t)size * SHARD_ALIGN;
    for (int r = 0; r <= size; r++) bounds[r] = (size_t)r * shard < count ? (size_t)r * shard : count;
}

int student_shard_overlap(const StudentShard *shard, int owner, size_t begin, size_t end, size_t *lo, size_t *hi) {
    *lo = shard->bounds[owner] > begin ? shard->bounds[owner] : begin;
    *hi = shard->bounds[owner + 1] < end ? shard->bounds[owner + 1] : end;
    return *lo < *hi;
}

/* The shard's buffers (count floats each, zeroed by alloc). */
static int shard_alloc(StudentShard *shard, const char *name, const NnBackend *be, DdError *err) {
    float **buffers[] = {&shard->adam_m, &shard->adam_v, &shard->ema};
    const char *what[] = {"first moments", "second moments", "EMA"};
    const size_t bytes = (shard->count > 0 ? shard->count : 1) * sizeof(float);
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        if (!(*buffers[i] = be->alloc(bytes)))
            return dd_fail(err, "student '%s', %s: out of memory for %zu floats", name, what[i], shard->count);
    return 0;
}

static void shard_free(StudentShard *shard, const NnBackend *be) {
    float *buffers[] = {shard->adam_m, shard->adam_v, shard->ema};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        if (buffers[i]) be->free(buffers[i]);
    free(shard->bounds);
    memset(shard, 0, sizeof *shard);
}

/* A shard of `size` of count floats, its buffers allocated. */
static int shard_create(StudentShard *shard, size_t count, int rank, int size, const char *name,
                        const NnBackend *be, DdError *err) {
    memset(shard, 0, sizeof *shard);
    if (size < 1 || rank < 0 || rank >= size)
        return dd_fail(err, "student '%s': expected shard 0 to %d, found %d", name, size - 1, rank);
    if (!(shard->bounds = malloc((size_t)(size + 1) * sizeof *shard->bounds)))
        return dd_fail(err, "student '%s': out of memory for the shard bounds", name);
    student_shard_bounds(count, size, shard->bounds);
    shard->rank = rank, shard->size = size;
    shard->begin = shard->bounds[rank];
    shard->count = shard->bounds[rank + 1] - shard->begin;
    return shard_alloc(shard, name, be, err);
}

int student_create_sharded(Student *s, const ViTConfig *cfg, const NnBackend *be, uint64_t seed,
                           uint64_t model_index, int rank, int size, DdError *err) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    ModelParams *buffers[] = {&s->params, &s->grads};
    const char *what[] = {"parameters", "gradients"};
    if (model_layout_create(&s->layout, cfg, err) != 0) return -1;
    int status = gradient_sums_init(&s->sums, &s->layout, err);
    for (size_t i = 0; status == 0 && i < sizeof buffers / sizeof buffers[0]; i++)
        if ((status = model_params_alloc(buffers[i], cfg, be, err)) != 0)
            dd_fail_context(err, "student '%s', %s", cfg->name, what[i]);
    if (status == 0 && (status = vit_params_alloc_bf16(&s->params.backbone, cfg, be, 1, err)) != 0)
        dd_fail_context(err, "student '%s'", cfg->name);
    if (status == 0) status = shard_create(&s->shard, s->layout.count, rank, size, cfg->name, be, err);
    if (status == 0) status = model_params_init(&s->params, cfg, be, seed, model_index, err);
    if (status != 0) {
        student_free(s, be);
        return -1;
    }
    be->copy(s->shard.ema, s->params.memory + s->shard.begin, s->shard.count * sizeof(float));
    return 0;
}

int student_create(Student *s, const ViTConfig *cfg, const NnBackend *be, uint64_t seed,
                   uint64_t model_index, DdError *err) {
    return student_create_sharded(s, cfg, be, seed, model_index, 0, 1, err);
}

void student_free(Student *s, const NnBackend *be) {
    model_params_free(&s->params, be);
    model_params_free(&s->grads, be);
    shard_free(&s->shard, be);
    model_layout_free(&s->layout);
    gradient_sums_free(&s->sums);
}
