/*
 * ibot_mask.c - block masks for iBOT (see ibot_mask.h): the config schema,
 * the block placement and the random completion to an exact count.
 */
#include "data/ibot_mask.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "nn/random.h"

static const ConfigField ibot_mask_fields[] = {
    {CONFIG_MEMBER(IbotMaskConfig, probability), .type = CONFIG_FLOAT, .min = 0, .max = 1, .fallback = 0.5},
    {CONFIG_MEMBER(IbotMaskConfig, min_ratio), .type = CONFIG_FLOAT, .min = 0, .max = 1, .fallback = 0.1},
    {CONFIG_MEMBER(IbotMaskConfig, max_ratio), .type = CONFIG_FLOAT, .min = 0, .max = 1, .fallback = 0.5},
    {CONFIG_MEMBER(IbotMaskConfig, min_block_patches), .type = CONFIG_INT, .min = 1, .max = 1 << 20,
     .fallback = 4},
    {CONFIG_MEMBER(IbotMaskConfig, max_block_fraction), .type = CONFIG_FLOAT, .min = 0, .max = 1,
     .fallback = 0.5},
    {CONFIG_MEMBER(IbotMaskConfig, min_aspect), .type = CONFIG_FLOAT, .min = 0.01, .max = 1, .fallback = 0.3},
};

static int check_ibot_mask_config(const void *object, const ConfigPlaces *places, DdError *err) {
    const IbotMaskConfig *c = object;
    if (c->max_ratio < c->min_ratio)
        return CONFIG_FAIL_AT(places, &c->max_ratio, err,
                              "expected max_ratio >= min_ratio (%g), found %g", c->min_ratio, c->max_ratio);
    return 0;
}

const ConfigSchema ibot_mask_config_schema =
    CONFIG_SCHEMA("ibot_mask", IbotMaskConfig, ibot_mask_fields, check_ibot_mask_config);

int ibot_mask_max_count(const IbotMaskConfig *config, int Np) {
    return (int)floor((double)Np * config->max_ratio);
}

/* Uniform integer in [lo, hi]. */
static int uniform_int(DdRandom *rng, int lo, int hi) {
    int value = lo + (int)(dd_random_uniform(rng) * (hi - lo + 1));
    return value > hi ? hi : value;
}

/* Tries up to 10 times to mask one block of at most budget new patches;
 * returns how many patches it newly masked (0: none fitted). */
static int place_block(const IbotMaskConfig *c, DdRandom *rng, uint8_t *mask, int Hp, int Wp,
                       int budget) {
    const double log_aspect = -log(c->min_aspect);   /* aspects in [exp(-a), exp(a)] */
    const double area_lo = fmin(c->min_block_patches, budget), area_hi = fmax(c->min_block_patches, budget);
    for (int attempt = 0; attempt < 10; attempt++) {
        const double area = area_lo + (area_hi - area_lo) * dd_random_uniform(rng);
        const double aspect = exp(log_aspect * (2.0 * dd_random_uniform(rng) - 1.0));
        const int h = (int)lround(sqrt(area * aspect)), w = (int)lround(sqrt(area / aspect));
        if (h < 1 || w < 1 || h > Hp || w > Wp) continue;
        const int top = uniform_int(rng, 0, Hp - h), left = uniform_int(rng, 0, Wp - w);
        int fresh = 0;
        for (int y = top; y < top + h; y++)
            for (int x = left; x < left + w; x++) fresh += !mask[y * Wp + x];
        if (fresh == 0 || fresh > budget) continue;
        for (int y = top; y < top + h; y++)
            for (int x = left; x < left + w; x++) mask[y * Wp + x] = 1;
        return fresh;
    }
    return 0;
}

/* Masks `missing` more patches, each picked uniformly among the unmasked. */
static void complete_randomly(DdRandom *rng, uint8_t *mask, int Np, int masked, int missing) {
    for (int i = 0; i < missing; i++) {
        int pick = uniform_int(rng, 0, Np - masked - 1);
        for (int p = 0; p < Np; p++) {
            if (mask[p]) continue;
            if (pick-- == 0) {
                mask[p] = 1;
                break;
            }
        }
        masked++;
    }
}

int ibot_mask_generate(const IbotMaskConfig *config, uint64_t seed, uint64_t epoch,
                       uint64_t sample_id, int crop, int Hp, int Wp, uint8_t *mask) {
    const int Np = Hp * Wp;
    memset(mask, 0, (size_t)Np);
    DdRandom rng = dd_random_keyed(seed, DD_RANDOM_IBOT_MASK, epoch, sample_id, (uint64_t)crop);
    if (dd_random_uniform(&rng) >= config->probability) return 0;
    const double ratio = config->min_ratio + (config->max_ratio - config->min_ratio) * dd_random_uniform(&rng);
    const int target = (int)floor(Np * ratio);
    int max_block = (int)floor(config->max_block_fraction * Np);
    if (max_block < config->min_block_patches) max_block = config->min_block_patches;

    int masked = 0;
    while (masked < target) {
        const int budget = target - masked < max_block ? target - masked : max_block;
        const int added = place_block(config, &rng, mask, Hp, Wp, budget);
        if (added == 0) break;
        masked += added;
    }
    complete_randomly(&rng, mask, Np, masked, target - masked);
    return target;
}
