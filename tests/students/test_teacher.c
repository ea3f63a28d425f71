/*
 * test_teacher.c - the frozen teacher of the tests (see test_teacher.h).
 */
#include "tests/students/test_teacher.h"

#include <stdlib.h>
#include <string.h>

int test_teacher_alloc(TestTeacher *t, const ViTConfig *cfg, const NnBackend *be, int crops, int size_px,
                       int max_masked, DdError *err) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->crops = crops;
    t->max_masked = max_masked;
    const size_t rows = (size_t)crops + max_masked;
    if (model_params_alloc(&t->params, cfg, be, err) || vit_params_alloc_bf16(&t->params.backbone, cfg, be, 0, err) ||
        vit_activations_alloc(&t->acts, cfg, be, crops, size_px, size_px, 0, err) ||
        head_activations_alloc(&t->dino, &cfg->dino_head, cfg->dim, crops, HEAD_PART_MLP, be, err) ||
        head_activations_alloc(&t->ibot, &cfg->ibot_head, cfg->dim, max_masked, HEAD_PART_MLP, be, err)) {
        test_teacher_free(t, be);
        return -1;
    }
    t->tokens = be->alloc(rows * cfg->dim * sizeof(float));
    t->rows = be->alloc(rows * sizeof(int32_t));
    t->host_rows = malloc(rows * sizeof(int32_t));
    if (!t->tokens || !t->rows || !t->host_rows) {
        test_teacher_free(t, be);
        return dd_fail(err, "teacher '%s': out of memory", cfg->name);
    }
    vit_set_rope(&t->acts, cfg, be, 1.0f);   /* inference: no rescale */
    return 0;
}

void test_teacher_free(TestTeacher *t, const NnBackend *be) {
    model_params_free(&t->params, be);
    vit_activations_free(&t->acts, be);
    head_activations_free(&t->dino, be);
    head_activations_free(&t->ibot, be);
    if (t->tokens) be->free(t->tokens);
    if (t->rows) be->free(t->rows);
    free(t->host_rows);
    memset(t, 0, sizeof *t);
}

int test_teacher_forward(TestTeacher *t, const NnBackend *be, const float *global_crops, const uint8_t *masks) {
    const int D = t->cfg.dim, T = t->acts.T;
    for (int i = 0; i < t->crops; i++) t->host_rows[i] = i * T;
    const int M = masked_patch_rows(masks, t->crops, t->acts.Np, T, 1 + t->cfg.registers, t->max_masked,
                                    t->host_rows + t->crops, NULL);
    if (M < 0) return -1;
    be->copy_to_device(t->rows, t->host_rows, ((size_t)t->crops + M) * sizeof(int32_t));
    vit_forward(be, &t->cfg, &t->params.backbone, &t->acts, global_crops, NULL);
    be->gather_rows(t->tokens, t->acts.out, t->rows, t->crops + M, D);
    head_mlp_forward(be, &t->cfg.dino_head, D, &t->params.dino_head, &t->dino, t->tokens, t->crops);
    if (M > 0)
        head_mlp_forward(be, &t->cfg.ibot_head, D, &t->params.ibot_head, &t->ibot,
                         t->tokens + (size_t)t->crops * D, M);
    return M;
}
