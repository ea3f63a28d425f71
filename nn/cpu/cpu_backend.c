/*
 * cpu_backend.c - the CPU backend's two op tables (C, OpenMP, OpenBLAS):
 * "cpu", fp32 throughout, and "cpu-bf16", the same functions with the ViT
 * blocks' inner tensors in bf16 (block_bf16; nn/cpu/cpu_bf16_block.c).
 */
#include "nn/backend.h"
#include "nn/cpu/cpu_ops.h"

/* Every entry but the name and the block_bf16 switch. */
#define CPU_BACKEND_ENTRIES \
    .alloc = cpu_alloc, \
    .free = cpu_free, \
    .zero = cpu_zero, \
    .copy_to_device = cpu_copy, \
    .copy_to_host = cpu_copy, \
    .copy = cpu_copy, \
    .synchronize = cpu_synchronize, \
    .matmul_forward = cpu_matmul_forward, \
    .matmul_backward = cpu_matmul_backward, \
    .patchify = cpu_patchify, \
    .tokens_forward = cpu_tokens_forward, \
    .tokens_backward = cpu_tokens_backward, \
    .layernorm_forward = cpu_layernorm_forward, \
    .layernorm_backward = cpu_layernorm_backward, \
    .attention_forward = cpu_attention_forward, \
    .attention_backward = cpu_attention_backward, \
    .gelu_forward = cpu_gelu_forward, \
    .gelu_backward = cpu_gelu_backward, \
    .swiglu_forward = cpu_swiglu_forward, \
    .swiglu_backward = cpu_swiglu_backward, \
    .layerscale_residual_forward = cpu_layerscale_residual_forward, \
    .layerscale_residual_backward = cpu_layerscale_residual_backward, \
    .adamw_update = cpu_adamw_update, \
    .sum_squares = cpu_sum_squares, \
    .scale = cpu_scale, \
    .l2norm_forward = cpu_l2norm_forward, \
    .l2norm_backward = cpu_l2norm_backward, \
    .gather_rows = cpu_gather_rows, \
    .gather_rows_backward = cpu_gather_rows_backward, \
    .softmax_cross_entropy_forward = cpu_softmax_cross_entropy_forward, \
    .softmax_cross_entropy_backward = cpu_softmax_cross_entropy_backward, \
    .koleo_forward = cpu_koleo_forward, \
    .koleo_backward = cpu_koleo_backward, \
    .exp_with_temperature = cpu_exp_with_temperature, \
    .column_sums = cpu_column_sums, \
    .column_max = cpu_column_max, \
    .divide_columns = cpu_divide_columns, \
    .normalize_rows = cpu_normalize_rows, \
    .ema_update = cpu_ema_update, \
    .scatter_rows_to_bf16 = cpu_scatter_rows_to_bf16, \
    .gather_rows_from_bf16 = cpu_gather_rows_from_bf16, \
    .cast_to_bf16 = cpu_cast_to_bf16, \
    .matmul_forward_bf16 = cpu_matmul_forward_bf16, \
    .matmul_backward_bf16 = cpu_matmul_backward_bf16, \
    .layernorm_forward_bf16 = cpu_layernorm_forward_bf16, \
    .layernorm_backward_bf16 = cpu_layernorm_backward_bf16, \
    .attention_forward_bf16 = cpu_attention_forward_bf16, \
    .attention_backward_bf16 = cpu_attention_backward_bf16, \
    .gelu_forward_bf16 = cpu_gelu_forward_bf16, \
    .gelu_backward_bf16 = cpu_gelu_backward_bf16, \
    .swiglu_forward_bf16 = cpu_swiglu_forward_bf16, \
    .swiglu_backward_bf16 = cpu_swiglu_backward_bf16, \
    .layerscale_residual_forward_bf16 = cpu_layerscale_residual_forward_bf16, \
    .layerscale_residual_backward_bf16 = cpu_layerscale_residual_backward_bf16

const NnBackend nn_cpu_backend = {.name = "cpu", CPU_BACKEND_ENTRIES};

const NnBackend nn_cpu_bf16_backend = {.name = "cpu-bf16", .block_bf16 = 1, CPU_BACKEND_ENTRIES};
