/*
 * vit_config.c - the schema of a model file (configs/models/NAME.yaml): its
 * keys, ranges and defaults in one table, the cross-field checks, and the
 * parameter counts of the DINO and iBOT heads.
 */
#include "nn/vit_config.h"

#include <stddef.h>

enum { SIZE_MAX_ALLOWED = 65536 };  /* upper bound of every width and count */

/* The two heads differ only in their defaults. */
#define HEAD_FIELDS(bottleneck_default, prototypes_default)                                  \
    {                                                                                        \
        {CONFIG_MEMBER(HeadConfig, layers), .type = CONFIG_INT, .min = 1, .max = 16,         \
         .fallback = 3},                                                                     \
        {CONFIG_MEMBER(HeadConfig, hidden), .type = CONFIG_INT, .min = 1,                    \
         .max = SIZE_MAX_ALLOWED, .fallback = 8192},                                         \
        {CONFIG_MEMBER(HeadConfig, bottleneck), .type = CONFIG_INT, .min = 1,                \
         .max = SIZE_MAX_ALLOWED, .fallback = (bottleneck_default)},                         \
        {CONFIG_MEMBER(HeadConfig, prototypes), .type = CONFIG_INT, .min = 1,                \
         .max = 1 << 24, .fallback = (prototypes_default)},                                  \
    }

static const ConfigField dino_head_fields[] = HEAD_FIELDS(512, 262144);
static const ConfigField ibot_head_fields[] = HEAD_FIELDS(384, 98304);
static const ConfigSchema dino_head_schema = CONFIG_SCHEMA("head", HeadConfig, dino_head_fields, NULL);
static const ConfigSchema ibot_head_schema = CONFIG_SCHEMA("head", HeadConfig, ibot_head_fields, NULL);

static const char *const ffn_names[] = {[FFN_MLP] = "mlp", [FFN_SWIGLU] = "swiglu", NULL};

static const ConfigField vit_fields[] = {
    {CONFIG_MEMBER(ViTConfig, name), .type = CONFIG_STRING, .required = 1, .min = 1},
    {CONFIG_MEMBER(ViTConfig, patch_size), .type = CONFIG_INT, .required = 1, .min = 1, .max = 1024},
    {CONFIG_MEMBER(ViTConfig, in_channels), .type = CONFIG_INT, .min = 1, .max = 1024, .fallback = 3},
    {CONFIG_MEMBER(ViTConfig, dim), .type = CONFIG_INT, .required = 1, .min = 1, .max = SIZE_MAX_ALLOWED},
    {CONFIG_MEMBER(ViTConfig, depth), .type = CONFIG_INT, .required = 1, .min = 1, .max = SIZE_MAX_ALLOWED},
    {CONFIG_MEMBER(ViTConfig, num_heads), .type = CONFIG_INT, .required = 1, .min = 1, .max = SIZE_MAX_ALLOWED},
    {CONFIG_MEMBER(ViTConfig, ffn), .type = CONFIG_ENUM, .required = 1, .names = ffn_names},
    {CONFIG_MEMBER(ViTConfig, ffn_hidden), .type = CONFIG_INT, .required = 1, .min = 1, .max = SIZE_MAX_ALLOWED},
    {CONFIG_MEMBER(ViTConfig, qkv_bias), .type = CONFIG_BOOL, .fallback = 1},
    {CONFIG_MEMBER(ViTConfig, registers), .type = CONFIG_INT, .min = 0, .max = 1024, .fallback = 4},
    {CONFIG_MEMBER(ViTConfig, layerscale_init), .type = CONFIG_FLOAT, .min = 0, .max = 10, .fallback = 1e-5},
    {CONFIG_MEMBER(ViTConfig, norm_eps), .type = CONFIG_FLOAT, .min = 1e-12, .max = 1, .fallback = 1e-5},
    {CONFIG_MEMBER(ViTConfig, rope_base), .type = CONFIG_FLOAT, .min = 1, .max = 1e9, .fallback = 100},
    {CONFIG_MEMBER(ViTConfig, dino_head), .type = CONFIG_STRUCT, .schema = &dino_head_schema},
    {CONFIG_MEMBER(ViTConfig, ibot_head), .type = CONFIG_STRUCT, .schema = &ibot_head_schema},
};

/* Attention splits dim over the heads, and 2-D RoPE rotates each head's
 * dims in four equal parts (y and x, sin and cos). */
static int check_vit_config(const void *object, const ConfigPlaces *places, DdError *err) {
    const ViTConfig *c = object;
    if (c->dim % c->num_heads != 0)
        return CONFIG_FAIL_AT(places, &c->num_heads, err, "expected a divisor of dim %d for 'num_heads', found %d",
                              c->dim, c->num_heads);
    int head_dim = c->dim / c->num_heads;
    if (head_dim % 4 != 0)
        return CONFIG_FAIL_AT(places, &c->num_heads, err,
                              "expected dim / num_heads divisible by 4 for RoPE, found %d / %d = %d", c->dim,
                              c->num_heads, head_dim);
    return 0;
}

const ConfigSchema vit_config_schema = CONFIG_SCHEMA("model", ViTConfig, vit_fields, check_vit_config);

int vit_config_load(ViTConfig *config, const char *path, DdError *err) {
    return config_load(&vit_config_schema, config, path, err);
}

int vit_config_validate(const ViTConfig *config, DdError *err) {
    return config_validate(&vit_config_schema, config, NULL, err);
}

size_t head_mlp_param_count(const HeadConfig *head, int in_dim) {
    size_t count = 0, width = (size_t)in_dim;
    for (int i = 0; i < head->layers; i++) {
        size_t out = (size_t)(i == head->layers - 1 ? head->bottleneck : head->hidden);
        count += width * out + out;
        width = out;
    }
    return count;
}

size_t head_prototype_param_count(const HeadConfig *head) {
    return (size_t)head->bottleneck * (size_t)head->prototypes;
}

size_t head_param_count(const HeadConfig *head, int in_dim) {
    return head_mlp_param_count(head, in_dim) + head_prototype_param_count(head);
}
