/*
 * ibot_mask_hook.c - a batch's iBOT masks from its samples' keys (see
 * ibot_mask_hook.h).
 */
#include "data/ibot_mask_hook.h"

#include <stdint.h>

size_t ibot_mask_batch_bytes(const IbotMaskHookContext *context, int images) {
    return (size_t)context->global_count * (size_t)images * (size_t)context->Hp * (size_t)context->Wp;
}

int ibot_mask_hook(void *context, uint64_t seed, DataBatch *batch, DdError *err) {
    const IbotMaskHookContext *c = context;
    const int Np = c->Hp * c->Wp;
    if (batch->mask_bytes < ibot_mask_batch_bytes(c, batch->count))
        return dd_fail(err, "iBOT masks: expected %zu bytes for %d images, found a %zu-byte buffer",
                       ibot_mask_batch_bytes(c, batch->count), batch->count, batch->mask_bytes);
    uint8_t *masks = batch->masks;
    for (int g = 0; g < c->global_count; g++)
        for (int b = 0; b < batch->count; b++)
            ibot_mask_generate(&c->config, seed, batch->samples[b].epoch, batch->samples[b].sample_id, g, c->Hp,
                               c->Wp, masks + ((size_t)g * batch->count + b) * Np);
    return 0;
}
