/*
 * student.c - the student's state: parameters, gradients, the two AdamW
 * moments and the EMA, five buffers of one layout (see students.h), and the
 * runs its gradients are summed over the group in.
 */
#include <string.h>

#include "students/students.h"

int student_create(Student *s, const ViTConfig *cfg, const NnBackend *be, uint64_t seed,
                   uint64_t model_index, DdError *err) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    ModelParams *buffers[] = {&s->params, &s->grads, &s->adam_m, &s->adam_v, &s->ema};
    const char *what[] = {"parameters", "gradients", "first moments", "second moments", "EMA"};
    if (model_layout_create(&s->layout, cfg, err) != 0) return -1;
    if (gradient_sums_init(&s->sums, &s->layout, err) != 0) {
        student_free(s, be);
        return -1;
    }
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) {
        if (model_params_alloc(buffers[i], cfg, be, err) != 0) {
            dd_fail_context(err, "student '%s', %s", cfg->name, what[i]);
            student_free(s, be);
            return -1;
        }
    }
    if (model_params_init(&s->params, cfg, be, seed, model_index, err) != 0) {
        student_free(s, be);
        return -1;
    }
    be->copy(s->ema.memory, s->params.memory, s->layout.count * sizeof(float));
    return 0;
}

void student_free(Student *s, const NnBackend *be) {
    model_params_free(&s->params, be);
    model_params_free(&s->grads, be);
    model_params_free(&s->adam_m, be);
    model_params_free(&s->adam_v, be);
    model_params_free(&s->ema, be);
    model_layout_free(&s->layout);
    gradient_sums_free(&s->sums);
}
