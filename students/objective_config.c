/*
 * objective_config.c - the `objective` and `optimizer` sections of a run
 * file, and the coefficients the loss terms get from them.
 */
#include <stddef.h>

#include "students/students.h"

static const ConfigField objective_fields[] = {
    {CONFIG_MEMBER(ObjectiveConfig, student_temperature), .type = CONFIG_FLOAT, .min = 1e-4, .max = 10,
     .fallback = 0.1},
    {CONFIG_MEMBER(ObjectiveConfig, sinkhorn_iterations), .type = CONFIG_INT, .min = 1, .max = 100,
     .fallback = 3},
    {CONFIG_MEMBER(ObjectiveConfig, dino_local_weight), .type = CONFIG_FLOAT, .min = 0, .max = 1e3,
     .fallback = 1.0},
    {CONFIG_MEMBER(ObjectiveConfig, dino_global_weight), .type = CONFIG_FLOAT, .min = 0, .max = 1e3,
     .fallback = 1.0},
    {CONFIG_MEMBER(ObjectiveConfig, ibot_weight), .type = CONFIG_FLOAT, .min = 0, .max = 1e3, .fallback = 1.0},
    {CONFIG_MEMBER(ObjectiveConfig, koleo_weight), .type = CONFIG_FLOAT, .min = 0, .max = 1e3, .fallback = 0.1},
    {CONFIG_MEMBER(ObjectiveConfig, ibot_mask), .type = CONFIG_STRUCT, .schema = &ibot_mask_config_schema},
};
const ConfigSchema objective_config_schema = CONFIG_SCHEMA("objective", ObjectiveConfig, objective_fields, NULL);

static const ConfigField optimizer_fields[] = {
    {CONFIG_MEMBER(OptimizerConfig, beta1), .type = CONFIG_FLOAT, .min = 0, .max = 0.999999, .fallback = 0.9},
    {CONFIG_MEMBER(OptimizerConfig, beta2), .type = CONFIG_FLOAT, .min = 0, .max = 0.999999, .fallback = 0.999},
    {CONFIG_MEMBER(OptimizerConfig, eps), .type = CONFIG_FLOAT, .min = 1e-30, .max = 1, .fallback = 1e-8},
    {CONFIG_MEMBER(OptimizerConfig, layerwise_decay), .type = CONFIG_FLOAT, .min = 1e-3, .max = 1,
     .fallback = 0.99},
    {CONFIG_MEMBER(OptimizerConfig, patch_embed_lr_multiplier), .type = CONFIG_FLOAT, .min = 0, .max = 100,
     .fallback = 0.2},
    {CONFIG_MEMBER(OptimizerConfig, clip_grad_norm), .type = CONFIG_FLOAT, .min = 0, .max = 1e9, .fallback = 3.0},
};
const ConfigSchema optimizer_config_schema = CONFIG_SCHEMA("optimizer", OptimizerConfig, optimizer_fields, NULL);

LossWeights objective_loss_weights(const ObjectiveConfig *c, int global_count, int local_count) {
    const double global_terms = (double)global_count * (global_count - 1);
    const double local_terms = (double)global_count * local_count;
    const double dino_terms = global_terms + local_terms;
    return (LossWeights){
        .dino_local = dino_terms > 0 ? c->dino_local_weight * local_terms / dino_terms : 0.0,
        .dino_global = dino_terms > 0 ? c->dino_global_weight * global_terms / dino_terms : 0.0,
        .ibot = c->ibot_weight,
        .koleo = (double)c->koleo_weight * global_count,
    };
}
