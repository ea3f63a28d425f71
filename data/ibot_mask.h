/*
 * ibot_mask.h - which patches of a global crop the student sees masked
 * (iBOT), as a pure function of (run seed, epoch, sample id, crop): every
 * rank, teacher or student, recomputes the same mask without a message.
 *
 * The recipe (DINOv2/v3): an image is masked with probability
 * `probability` (0.5); a masked image hides floor(Np * ratio) patches with
 * the ratio uniform in [min_ratio, max_ratio] ([0.1, 0.5]). The patches
 * come in rectangular blocks (area at least min_block_patches, at most
 * max_block_fraction of the grid, aspect ratio log-uniform in
 * [min_aspect, 1 / min_aspect]) placed until the count is reached or no
 * block fits, then single random patches complete it exactly.
 *
 * The random stream is dd_random_keyed(seed, DD_RANDOM_IBOT_MASK, epoch,
 * sample_id, crop): crop is the global crop's index, 0 for the first, so a
 * sample's first global crop uses the key (epoch, sample id, 0).
 */
#ifndef DD_DATA_IBOT_MASK_H
#define DD_DATA_IBOT_MASK_H

#include <stdint.h>

#include "nn/yaml_config.h"

typedef struct IbotMaskConfig {
    float probability;         /* of a crop being masked at all */
    float min_ratio;           /* of the patches hidden in a masked crop ... */
    float max_ratio;           /* ... uniform in [min_ratio, max_ratio] */
    int min_block_patches;     /* smallest block area tried */
    float max_block_fraction;  /* largest block area, as a fraction of the grid */
    float min_aspect;          /* block aspect ratios in [min_aspect, 1 / min_aspect] */
} IbotMaskConfig;

/* The `ibot_mask` section of a run file (defaults: 0.5, 0.1, 0.5, 4, 0.5, 0.3). */
extern const ConfigSchema ibot_mask_config_schema;

/* Writes mask[Hp * Wp] (patch p = py * Wp + px; 1 = masked, 0 = seen) and
 * returns how many patches are masked (0: the crop is not masked). */
int ibot_mask_generate(const IbotMaskConfig *config, uint64_t seed, uint64_t epoch,
                       uint64_t sample_id, int crop, int Hp, int Wp, uint8_t *mask);

/* The most patches a crop of Np patches can have masked: the bound to size
 * buffers of masked rows with. */
int ibot_mask_max_count(const IbotMaskConfig *config, int Np);

#endif
