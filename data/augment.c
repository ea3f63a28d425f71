/*
 * augment.c - the plan of one crop (every random choice, from one keyed
 * stream) and its rendering: resample, jitter, grayscale, blur, solarise,
 * normalise. See augment.h for the recipe and the determinism contract.
 */
#include <math.h>

#include "data/augment.h"
#include "nn/random.h"

static float uniform_in(DdRandom *r, float lo, float hi) { return (float)(lo + (hi - lo) * dd_random_uniform(r)); }

/* Uniform integer in [0, n), n >= 1. */
static int uniform_index(DdRandom *r, int n) {
    int i = (int)(dd_random_uniform(r) * n);
    return i < n ? i : n - 1;
}

static int round_half_even(double v) { return (int)nearbyint(v); }

/* torchvision's RandomResizedCrop.get_params: ten tries of an area fraction
 * in `scale` and a log-uniform aspect ratio; then a centre crop of the
 * largest box the ratio range allows. */
static void draw_box(DdRandom *r, const DataRange *scale, const DataRange *ratio, int W, int H, DataCropPlan *plan) {
    const double area = (double)W * H;
    const double log_lo = log(ratio->min), log_hi = log(ratio->max);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (scale->min + (scale->max - scale->min) * dd_random_uniform(r));
        double aspect = exp(log_lo + (log_hi - log_lo) * dd_random_uniform(r));
        int w = round_half_even(sqrt(target * aspect)), h = round_half_even(sqrt(target / aspect));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            plan->y = uniform_index(r, H - h + 1);
            plan->x = uniform_index(r, W - w + 1);
            plan->width = w;
            plan->height = h;
            return;
        }
    }
    double in_ratio = (double)W / H;
    int w = W, h = H;
    if (in_ratio < ratio->min) h = round_half_even(w / ratio->min);
    else if (in_ratio > ratio->max) w = round_half_even(h * ratio->max);
    if (w < 1) w = 1;
    if (h < 1) h = 1;
    if (w > W) w = W;
    if (h > H) h = H;
    plan->x = (W - w) / 2;
    plan->y = (H - h) / 2;
    plan->width = w;
    plan->height = h;
}

void data_crop_plan(const DataAugmentConfig *a, const CropConfig *crops, uint64_t seed, uint64_t epoch,
                    uint64_t sample_id, int crop_index, int image_width, int image_height, DataCropPlan *plan) {
    const int global = crop_index < crops->global_count;
    const DataCropOpsConfig *ops = !global ? &a->locals : crop_index == 0 ? &a->first_global : &a->other_globals;
    DdRandom r = dd_random_keyed(seed, DD_RANDOM_CROP, epoch, sample_id, (uint64_t)crop_index);
    *plan = (DataCropPlan){.size = global ? crops->global_size : crops->local_size};

    /* A fixed number of draws first, so that they do not depend on how many
     * tries the box takes; the box last. */
    plan->flip = dd_random_uniform(&r) < a->flip;
    plan->jitter = dd_random_uniform(&r) < a->jitter.probability;
    for (int i = 0; i < DATA_JITTER_OP_COUNT; i++) plan->jitter_order[i] = i;
    for (int i = DATA_JITTER_OP_COUNT - 1; i > 0; i--) {   /* Fisher-Yates */
        int j = uniform_index(&r, i + 1), t = plan->jitter_order[i];
        plan->jitter_order[i] = plan->jitter_order[j];
        plan->jitter_order[j] = t;
    }
    const DataJitterConfig *j = &a->jitter;
    plan->brightness = uniform_in(&r, fmaxf(0, 1 - j->brightness), 1 + j->brightness);
    plan->contrast = uniform_in(&r, fmaxf(0, 1 - j->contrast), 1 + j->contrast);
    plan->saturation = uniform_in(&r, fmaxf(0, 1 - j->saturation), 1 + j->saturation);
    plan->hue = uniform_in(&r, -j->hue, j->hue);
    plan->grayscale = dd_random_uniform(&r) < a->grayscale;
    plan->blur = dd_random_uniform(&r) < ops->blur;
    plan->blur_sigma = uniform_in(&r, a->blur_sigma.min, a->blur_sigma.max);
    plan->solarize = dd_random_uniform(&r) < ops->solarize;
    draw_box(&r, global ? &a->global_scale : &a->local_scale, &a->aspect_ratio, image_width, image_height, plan);
}

int data_crop_render(const DataCropPlan *plan, const DataAugmentConfig *a, const DataImage *image, float *out,
                     DataCropScratch *scratch, DdError *err) {
    const int S = plan->size;
    const size_t n = (size_t)S * S;
    if (data_resample_bicubic(image, plan->x, plan->y, plan->width, plan->height, S, S, plan->flip, out, scratch,
                              err))
        return -1;
    if (plan->jitter) {
        for (int i = 0; i < DATA_JITTER_OP_COUNT; i++) {
            switch (plan->jitter_order[i]) {
            case DATA_JITTER_BRIGHTNESS: data_adjust_brightness(out, n, plan->brightness); break;
            case DATA_JITTER_CONTRAST: data_adjust_contrast(out, n, plan->contrast); break;
            case DATA_JITTER_SATURATION: data_adjust_saturation(out, n, plan->saturation); break;
            default: if (plan->hue != 0) data_adjust_hue(out, n, plan->hue); break;
            }
        }
    }
    if (plan->grayscale) data_to_grayscale(out, n);
    if (plan->blur && data_gaussian_blur(out, S, plan->blur_sigma, scratch, err)) return -1;
    if (plan->solarize) data_solarize(out, n);
    data_normalize(out, n, &a->mean, &a->std);
    return 0;
}

int data_build_crop(const DataAugmentConfig *augment, const CropConfig *crops, uint64_t seed, uint64_t epoch,
                    uint64_t sample_id, int crop_index, const DataImage *image, float *out,
                    DataCropScratch *scratch, DdError *err) {
    DataCropPlan plan;
    data_crop_plan(augment, crops, seed, epoch, sample_id, crop_index, image->width, image->height, &plan);
    return data_crop_render(&plan, augment, image, out, scratch, err);
}
