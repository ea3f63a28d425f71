/*
 * cost_model.c - parameters, FLOPs and memory of one model on one rank (see
 * cost_model.h).
 */
#include "schedule/cost_model.h"

#include <math.h>

#include "nn/model.h"
#include "nn/vit.h"

static size_t patches_of(const ViTConfig *model, int size) {
    size_t side = (size_t)(size / model->patch_size);
    return side * side;
}

ModelCost model_cost(const ViTConfig *model, const CropShape *crops, int batch, int frozen, int block_bf16) {
    ModelCost c = {
        .backbone = vit_param_count(model),
        .dino_mlp = head_mlp_param_count(&model->dino_head, model->dim),
        .dino_prototypes = head_prototype_param_count(&model->dino_head),
        .ibot_mlp = head_mlp_param_count(&model->ibot_head, model->dim),
        .ibot_prototypes = head_prototype_param_count(&model->ibot_head),
        .flops_global = vit_forward_flops(model, crops->global_size, crops->global_size),
        .flops_local = vit_forward_flops(model, crops->local_size, crops->local_size),
    };
    size_t params = c.backbone + c.dino_mlp + c.dino_prototypes + c.ibot_mlp + c.ibot_prototypes;
    const double copy_bytes = (double)params * COST_BYTES_PER_FLOAT;
    /* blocks in bf16: a trained backbone's copy of every block matrix, a
     * frozen one's slot of one block's (nn/vit.h) */
    c.state_bytes = copy_bytes * (frozen ? 1 : COST_TRAINED_COPIES) +
                    (block_bf16 ? (double)vit_params_bf16_bytes(model, !frozen) : 0);
    c.shardable_state_bytes = frozen ? 0 : copy_bytes * COST_SHARDABLE_COPIES;
    c.activation_bytes = rank_activation_bytes(model, crops, batch, frozen, block_bf16);
    return c;
}

size_t trained_param_count(const ViTConfig *model) {
    return vit_param_count(model) + head_param_count(&model->dino_head, model->dim) +
           head_param_count(&model->ibot_head, model->dim);
}

size_t student_gather_bytes(const ViTConfig *model, int block_bf16) {
    return 4 * trained_param_count(model) - (block_bf16 ? 2 * vit_block_matrix_floats(model) : 0);
}

double teacher_flops_per_image(const ViTConfig *teacher, const CropShape *crops) {
    const double patches = (double)patches_of(teacher, crops->global_size);
    double per_crop = vit_forward_flops(teacher, crops->global_size, crops->global_size) +
                      2.0 * head_mlp_param_count(&teacher->dino_head, teacher->dim) +
                      2.0 * patches * head_mlp_param_count(&teacher->ibot_head, teacher->dim);
    return crops->global_count * per_crop;
}

double student_flops_per_image(const ViTConfig *student, const ViTConfig *teacher, const CropShape *crops) {
    const double masked = crops->masked_patch_fraction * (double)patches_of(student, crops->global_size);
    const double dino_head = 2.0 * head_param_count(&student->dino_head, student->dim);
    const double ibot_head = 2.0 * head_param_count(&student->ibot_head, student->dim);
    double forward = crops->global_count * (vit_forward_flops(student, crops->global_size, crops->global_size) +
                                            dino_head + masked * ibot_head) +
                     crops->local_count * (vit_forward_flops(student, crops->local_size, crops->local_size) + dino_head);
    /* the teacher's prototype layers on its bottleneck rows: DINO per global
     * crop, iBOT per masked patch */
    double teacher_prototypes = crops->global_count * 2.0 *
                                ((double)head_prototype_param_count(&teacher->dino_head) +
                                 masked * (double)head_prototype_param_count(&teacher->ibot_head));
    return 3.0 * forward + teacher_prototypes;
}

RankState rank_state(const ViTConfig *model, const ViTConfig *teacher, const CropShape *crops, int frozen,
                     int block_bf16) {
    const ModelCost cost = model_cost(model, crops, 0, frozen, block_bf16);
    RankState state = {.replicated_bytes = cost.state_bytes - cost.shardable_state_bytes,
                       .shardable_bytes = cost.shardable_state_bytes};
    if (!frozen && teacher)
        state.replicated_bytes += COST_BYTES_PER_FLOAT * (double)(head_prototype_param_count(&teacher->dino_head) +
                                                                  head_prototype_param_count(&teacher->ibot_head));
    return state;
}

/* Rows of the iBOT head per image: the most patches its crops may mask
 * (a student), or every patch (the teacher, before it picks the masked). */
static double ibot_rows_per_image(const ViTConfig *model, const CropShape *crops, int frozen) {
    const double patches = (double)patches_of(model, crops->global_size);
    return crops->global_count * (frozen ? patches : floor(patches * crops->max_masked_patch_fraction));
}

double rank_activation_bytes(const ViTConfig *model, const CropShape *crops, int images, int frozen, int block_bf16) {
    if (images <= 0) return 0;
    double bytes = (double)vit_activation_bytes(model, images * crops->global_count, crops->global_size,
                                                crops->global_size, !frozen, block_bf16);
    if (!frozen && crops->local_count > 0)
        bytes += (double)vit_activation_bytes(model, images * crops->local_count, crops->local_size,
                                              crops->local_size, 1, block_bf16);
    const int parts = frozen ? HEAD_PART_MLP : HEAD_PART_MLP | HEAD_PART_PROTOTYPES | HEAD_PART_BACKWARD;
    const int cls_rows = images * (crops->global_count + (frozen ? 0 : crops->local_count));
    const size_t head_floats =
        head_activation_count(&model->dino_head, cls_rows, parts) +
        head_activation_count(&model->ibot_head, (int)(images * ibot_rows_per_image(model, crops, frozen)), parts);
    return bytes + (double)head_floats * COST_BYTES_PER_FLOAT;
}

double rank_slice_bytes_per_image(const ViTConfig *student, const ViTConfig *teacher, const CropShape *crops) {
    const double masked = ibot_rows_per_image(student, crops, 0);
    const double pixels = 3.0 * (crops->global_count * (double)crops->global_size * crops->global_size +
                                 crops->local_count * (double)crops->local_size * crops->local_size);
    const double rows = crops->global_count * (double)teacher->dino_head.bottleneck + masked * teacher->ibot_head.bottleneck;
    const double targets = crops->global_count * (double)student->dino_head.prototypes +
                           masked * student->ibot_head.prototypes;
    return COST_BYTES_PER_FLOAT * (pixels + rows + targets);
}
