/*
 * vit_config.h - the architecture of one DINOv3-style ViT and its heads, as
 * read from configs/models/NAME.yaml (schema and defaults in vit_config.c).
 */
#ifndef DD_NN_VIT_CONFIG_H
#define DD_NN_VIT_CONFIG_H

#include <stddef.h>

#include "nn/error.h"
#include "nn/yaml_config.h"

typedef enum FfnKind {
    FFN_MLP = 0,     /* fc1 -> GELU -> fc2 */
    FFN_SWIGLU = 1,  /* (silu(gate) * up) -> down */
} FfnKind;

/* A DINO or iBOT head: an MLP of `layers` linear layers (GELU between them)
 * from the backbone dim to `bottleneck`, L2-normalised, then a prototype
 * layer bottleneck -> prototypes without bias. */
typedef struct HeadConfig {
    int layers;       /* linear layers in the MLP, >= 1 */
    int hidden;       /* width of the hidden layers */
    int bottleneck;   /* output of the MLP */
    int prototypes;   /* output of the prototype layer */
} HeadConfig;

typedef struct ViTConfig {
    char name[64];
    int patch_size;        /* P: images are cut into P x P patches */
    int in_channels;       /* C: 3 for RGB */
    int dim;               /* D: token width */
    int depth;             /* transformer blocks */
    int num_heads;         /* H: attention heads, D % H == 0, (D/H) % 4 == 0 */
    FfnKind ffn;
    int ffn_hidden;        /* F: hidden width of the feed-forward */
    int qkv_bias;          /* 1: q and v carry a bias (the key bias is masked to 0) */
    int registers;         /* R: register tokens after CLS */
    float layerscale_init; /* initial LayerScale gamma */
    float norm_eps;        /* LayerNorm epsilon */
    float rope_base;       /* RoPE period base */
    HeadConfig dino_head;
    HeadConfig ibot_head;
} ViTConfig;

/* The schema of a model file (see yaml_config.h). */
extern const ConfigSchema vit_config_schema;

/* Loads and validates a model file; on error the message reads
 * "file:line:column: expected X, found Y". */
int vit_config_load(ViTConfig *config, const char *path, DdError *err);

/* Cross-field checks (dim divisible by heads, head dim divisible by 4, ...). */
int vit_config_validate(const ViTConfig *config, DdError *err);

/* Parameters of a head on a backbone of width in_dim: the MLP (in_dim ->
 * hidden -> ... -> bottleneck, `layers` linear layers with biases), the
 * prototype layer (bottleneck x prototypes, no bias), and both. */
size_t head_mlp_param_count(const HeadConfig *head, int in_dim);
size_t head_prototype_param_count(const HeadConfig *head);
size_t head_param_count(const HeadConfig *head, int in_dim);

#endif
