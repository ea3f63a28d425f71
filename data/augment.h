/*
 * augment.h - seeded multi-crop augmentation: a crop's plan (box, flip,
 * colour operations) is a pure function of (run seed, epoch, sample id, crop
 * index) and the image's size; rendering a plan is deterministic. So a
 * teacher rank and a student rank that build global crop g of one sample get
 * bit-identical floats, with no message between them.
 *
 * Crop indices: 0 .. global_count-1 are the global crops (global_size px),
 * global_count .. global_count+local_count-1 the local ones. A crop is a
 * float tensor [3, S, S], channels first, normalised with the config's mean
 * and std: one image of the [B, C, H, W] batch nn/vit.h's forward takes.
 *
 * The recipe (DINOv2/v3): random-resized crop (area fraction in the scale
 * range, aspect ratio log-uniform, torchvision's ten tries then a centre
 * crop), bicubic resampling, horizontal flip, colour jitter in a random
 * order, grayscale, Gaussian blur (9 taps, reflect padding), solarise
 * (threshold 128/255), normalise. Every op works on floats in [0, 1].
 */
#ifndef DD_DATA_AUGMENT_H
#define DD_DATA_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "data/data_config.h"
#include "data/image.h"
#include "nn/error.h"

enum { DATA_BLUR_TAPS = 9 };

typedef enum DataJitterOp {
    DATA_JITTER_BRIGHTNESS,
    DATA_JITTER_CONTRAST,
    DATA_JITTER_SATURATION,
    DATA_JITTER_HUE,
    DATA_JITTER_OP_COUNT,
} DataJitterOp;

/* Every random choice of one crop. */
typedef struct DataCropPlan {
    int x, y, width, height;        /* the box in source pixels */
    int size;                       /* output side S */
    int flip;                       /* mirror left-right */
    int jitter;                     /* colour jitter applied */
    int jitter_order[DATA_JITTER_OP_COUNT];
    float brightness, contrast, saturation, hue;   /* factors; hue a shift in turns */
    int grayscale;
    int blur;
    float blur_sigma;
    int solarize;
} DataCropPlan;

/* Reusable buffers of one thread: resampling taps, the horizontal pass,
 * the blur's temporary plane. They grow to the largest crop seen. */
typedef struct DataCropScratch {
    int *taps;                   /* first input and tap count per output index: [2 * (out_w + out_h)] */
    float *weights;              /* [out_w * taps_x + out_h * taps_y] */
    float *rows;                 /* [box_h, out_w, 3] after the horizontal pass */
    float *line;                 /* [out_w * 3] accumulator of the vertical pass */
    float *plane;                /* [S * S] for the blur */
    size_t taps_cap, weights_cap, rows_cap, line_cap, plane_cap;   /* in elements */
} DataCropScratch;

void data_crop_scratch_free(DataCropScratch *scratch);

/* The plan of crop `crop_index` of sample (epoch, sample_id) of an image of
 * image_width x image_height px. Draws from dd_random_keyed(seed,
 * DD_RANDOM_CROP, epoch, sample_id, crop_index). */
void data_crop_plan(const DataAugmentConfig *augment, const CropConfig *crops, uint64_t seed, uint64_t epoch,
                    uint64_t sample_id, int crop_index, int image_width, int image_height, DataCropPlan *plan);

/* Renders a plan: out is [3, S, S], S = plan->size, normalised. */
int data_crop_render(const DataCropPlan *plan, const DataAugmentConfig *augment, const DataImage *image,
                     float *out, DataCropScratch *scratch, DdError *err);

/* Plan and render in one: crop `crop_index` of the sample into out [3, S, S]. */
int data_build_crop(const DataAugmentConfig *augment, const CropConfig *crops, uint64_t seed, uint64_t epoch,
                    uint64_t sample_id, int crop_index, const DataImage *image, float *out,
                    DataCropScratch *scratch, DdError *err);

/* ---- the steps, exposed for tests and benches ------------------------------------ */

/* Bicubic (a = -0.5) resampling of the box (x, y, width, height) of image to
 * out [3, out_h, out_w], values in [0, 1] (clamped). Antialiased like PIL's
 * resize of the cropped box: when shrinking by a factor s > 1 the kernel is
 * stretched by s (support 2s); the box's edges clamp the taps (the crop is
 * cut first, then resized, as torchvision's resized_crop does). flip mirrors
 * the output left-right. */
int data_resample_bicubic(const DataImage *image, int x, int y, int width, int height, int out_w, int out_h,
                          int flip, float *out, DataCropScratch *scratch, DdError *err);
/* The bicubic kernel of data_resample_bicubic. */
double data_bicubic_kernel(double x);

/* Colour operations on a planar image rgb [3, n], values in [0, 1]. */
void data_adjust_brightness(float *rgb, size_t n, float factor);
void data_adjust_contrast(float *rgb, size_t n, float factor);
void data_adjust_saturation(float *rgb, size_t n, float factor);
void data_adjust_hue(float *rgb, size_t n, float shift);
void data_to_grayscale(float *rgb, size_t n);
void data_solarize(float *rgb, size_t n);
void data_normalize(float *rgb, size_t n, const DataRgb *mean, const DataRgb *std);

/* Gaussian blur of rgb [3, side, side], DATA_BLUR_TAPS taps, reflect padding. */
int data_gaussian_blur(float *rgb, int side, float sigma, DataCropScratch *scratch, DdError *err);

/* Grows *buffer to hold count elements of elem_size bytes. */
int data_scratch_grow(void **buffer, size_t *capacity, size_t count, size_t elem_size, DdError *err);

#endif
