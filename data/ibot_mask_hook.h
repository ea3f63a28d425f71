/*
 * ibot_mask_hook.h - the loader's mask hook for iBOT: the masks of every
 * global crop of a batch, rows crop-major like the crops themselves
 * (global crop g of sample b is row g * count + b), each row Hp * Wp
 * patches. Teacher and student loaders use the same hook, so both know
 * which patch tokens travel.
 */
#ifndef DD_DATA_IBOT_MASK_HOOK_H
#define DD_DATA_IBOT_MASK_HOOK_H

#include <stddef.h>

#include "data/ibot_mask.h"
#include "data/loader.h"

typedef struct IbotMaskHookContext {
    IbotMaskConfig config;
    int Hp, Wp;                /* patch grid of a global crop */
    int global_count;
} IbotMaskHookContext;

/* Bytes of one batch's masks for `images` samples. */
size_t ibot_mask_batch_bytes(const IbotMaskHookContext *context, int images);

/* A DataMaskHook (loader.h); context is an IbotMaskHookContext. */
int ibot_mask_hook(void *context, uint64_t seed, DataBatch *batch, DdError *err);

#endif
