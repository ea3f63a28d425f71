/*
 * test_augment.c - seeded multi-crop augmentation: the bicubic resampler
 * against a float64 reference written from the formula, constants and
 * identity kept exactly, crop plans as pure functions of their key, the
 * recipe's ranges and probabilities, each colour op against its formula,
 * the blur against a direct float64 convolution, and one crop built in two
 * threads giving the same bits.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#include "data/augment.h"
#include "nn/random.h"
#include "tests/test.h"

static DataAugmentConfig default_augment(void) {
    DataConfig config;
    DdError err;
    if (data_config_defaults(&config, &err) != 0) abort();
    return config.augment;
}

static CropConfig default_crops(void) {
    CropConfig crops;
    DdError err;
    if (config_set_defaults(&crop_config_schema, &crops, &err) != 0) abort();
    return crops;
}

static void random_image(DataImage *image, int width, int height, uint64_t seed) {
    if (data_image_reserve(image, width, height, NULL) != 0) abort();
    DdRandom r = dd_random_seed(seed, 0);
    for (int i = 0; i < width * height * 3; i++) image->pixels[i] = (uint8_t)(dd_random_u64(&r) & 0xFF);
}

/* PIL's bicubic (a = -0.5), written again here from the formula. */
static double cubic(double x) {
    x = fabs(x);
    if (x < 1) return 1.5 * x * x * x - 2.5 * x * x + 1;
    if (x < 2) return -0.5 * x * x * x + 2.5 * x * x - 4 * x + 2;
    return 0;
}

/* Weight of input index k (box-relative) for output i, normalised over the
 * inputs the kernel reaches inside the box [0, length). */
static double tap(int i, int k, int length, int out) {
    double scale = (double)length / out, stretch = scale > 1 ? scale : 1, support = 2 * stretch;
    double center = (i + 0.5) * scale;
    int lo = (int)floor(center - support + 0.5), hi = (int)floor(center + support + 0.5);
    if (lo < 0) lo = 0;
    if (hi > length) hi = length;
    if (k < lo || k >= hi) return 0;
    double total = 0;
    for (int j = lo; j < hi; j++) total += cubic((j + 0.5 - center) / stretch);
    return cubic((k + 0.5 - center) / stretch) / total;
}

/* The direct 2-D sum, in double, clamped: out[c, i, j]. */
static double reference_pixel(const DataImage *im, int x, int y, int w, int h, int out_w, int out_h, int flip, int c,
                              int i, int j) {
    int jj = flip ? out_w - 1 - j : j;
    double acc = 0;
    for (int r = 0; r < h; r++) {
        double wy = tap(i, r, h, out_h);
        if (wy == 0) continue;
        for (int q = 0; q < w; q++) acc += wy * tap(jj, q, w, out_w) * im->pixels[((size_t)(y + r) * im->width + x + q) * 3 + c];
    }
    acc /= 255.0;
    return acc < 0 ? 0 : acc > 1 ? 1 : acc;
}

static void bicubic_matches_a_float64_reference(void) {
    DataImage image = {0};
    random_image(&image, 23, 17, 1);
    static const struct {
        int x, y, w, h, out_w, out_h, flip;
    } cases[] = {
        {0, 0, 23, 17, 11, 7, 0},    /* shrink, whole image */
        {3, 2, 9, 6, 20, 14, 0},     /* enlarge a box */
        {1, 4, 21, 12, 3, 2, 1},     /* shrink by 7x and 6x, flipped */
        {5, 5, 7, 7, 7, 7, 0},       /* same size */
        {0, 0, 23, 17, 31, 5, 1},    /* enlarge one axis, shrink the other */
    };
    DataCropScratch scratch = {0};
    for (size_t n = 0; n < sizeof cases / sizeof cases[0]; n++) {
        int ow = cases[n].out_w, oh = cases[n].out_h;
        float *out = malloc((size_t)3 * ow * oh * sizeof *out);
        DdError err;
        CHECK(data_resample_bicubic(&image, cases[n].x, cases[n].y, cases[n].w, cases[n].h, ow, oh, cases[n].flip, out,
                                    &scratch, &err) == 0,
              "%s", err.message);
        double worst = 0;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double want = reference_pixel(&image, cases[n].x, cases[n].y, cases[n].w, cases[n].h, ow, oh,
                                                  cases[n].flip, c, i, j);
                    double d = fabs(out[((size_t)c * oh + i) * ow + j] - want);
                    if (d > worst) worst = d;
                }
        CHECK(worst < 2e-6, "case %zu: max |float - float64 reference| = %g", n, worst);
        free(out);
    }
    data_crop_scratch_free(&scratch);
    data_image_free(&image);
}

static void bicubic_keeps_constants_and_copies_at_the_same_size(void) {
    DataImage image = {0};
    data_image_reserve(&image, 40, 30, NULL);
    for (int i = 0; i < 40 * 30 * 3; i++) image.pixels[i] = (uint8_t)(i % 3 == 0 ? 200 : i % 3 == 1 ? 17 : 99);
    DataCropScratch scratch = {0};
    float out[3 * 13 * 9];
    DdError err;
    CHECK(data_resample_bicubic(&image, 4, 3, 25, 21, 13, 9, 0, out, &scratch, &err) == 0, "%s", err.message);
    for (int i = 0; i < 3 * 13 * 9; i++) {
        float want = (i < 117 ? 200 : i < 234 ? 17 : 99) / 255.0f;
        CHECK(fabsf(out[i] - want) < 1e-6f, "constant changed at %d: %g vs %g", i, out[i], want);
    }
    random_image(&image, 16, 12, 5);
    float *copy = malloc(3 * 16 * 12 * sizeof *copy);
    CHECK(data_resample_bicubic(&image, 0, 0, 16, 12, 16, 12, 0, copy, &scratch, &err) == 0, "%s", err.message);
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 16 * 12; p++)
            CHECK(copy[c * 192 + p] == image.pixels[p * 3 + c] * (1.0f / 255.0f), "identity resize changed pixel %d", p);
    CHECK(data_resample_bicubic(&image, 10, 0, 10, 12, 4, 4, 0, copy, &scratch, &err) == -1 &&
              strstr(err.message, "outside"),
          "a box outside the image: '%s'", err.message);
    free(copy);
    data_crop_scratch_free(&scratch);
    data_image_free(&image);
}

static void crop_plans_are_pure_functions_of_their_key(void) {
    DataAugmentConfig a = default_augment();
    CropConfig crops = default_crops();
    DataCropPlan p, q;
    data_crop_plan(&a, &crops, 42, 3, 1234, 1, 500, 375, &p);
    data_crop_plan(&a, &crops, 42, 3, 1234, 1, 500, 375, &q);
    CHECK(memcmp(&p, &q, sizeof p) == 0, "the same key gave two plans");
    int differ[4] = {0};
    for (int t = 0; t < 20; t++) {
        DataCropPlan base, other[4];
        data_crop_plan(&a, &crops, 42, 3, 1000 + t, 1, 500, 375, &base);
        data_crop_plan(&a, &crops, 43, 3, 1000 + t, 1, 500, 375, &other[0]);
        data_crop_plan(&a, &crops, 42, 4, 1000 + t, 1, 500, 375, &other[1]);
        data_crop_plan(&a, &crops, 42, 3, 2000 + t, 1, 500, 375, &other[2]);
        data_crop_plan(&a, &crops, 42, 3, 1000 + t, 0, 500, 375, &other[3]);
        for (int k = 0; k < 4; k++) differ[k] += memcmp(&base, &other[k], sizeof base) != 0;
    }
    CHECK(differ[0] == 20 && differ[1] == 20 && differ[2] == 20 && differ[3] == 20,
          "seed, epoch, sample id and crop index must each change the plan: %d %d %d %d of 20", differ[0], differ[1],
          differ[2], differ[3]);
}

static void crop_plans_follow_the_recipe(void) {
    DataAugmentConfig a = default_augment();
    CropConfig crops = default_crops();
    enum { N = 4000 };
    int flips = 0, jitters = 0, grays = 0, blur[3] = {0}, solarize[3] = {0};
    double min_area[2] = {1, 1}, max_area[2] = {0, 0}, min_ratio = 10, max_ratio = 0;
    for (int t = 0; t < N; t++) {
        for (int k = 0; k < 3; k++) {
            int crop = k == 0 ? 0 : k == 1 ? 1 : 2 + t % 8;
            DataCropPlan p;
            data_crop_plan(&a, &crops, 7, 0, (uint64_t)t, crop, 500, 375, &p);
            CHECK(p.x >= 0 && p.y >= 0 && p.x + p.width <= 500 && p.y + p.height <= 375, "box outside");
            CHECK(p.size == (k < 2 ? 256 : 112), "size %d", p.size);
            double area = (double)p.width * p.height / (500.0 * 375.0), ratio = (double)p.width / p.height;
            int g = k < 2 ? 0 : 1;
            if (area < min_area[g]) min_area[g] = area;
            if (area > max_area[g]) max_area[g] = area;
            if (ratio < min_ratio) min_ratio = ratio;
            if (ratio > max_ratio) max_ratio = ratio;
            flips += p.flip;
            jitters += p.jitter;
            grays += p.grayscale;
            blur[k] += p.blur;
            solarize[k] += p.solarize;
            CHECK(p.blur_sigma >= 0.1f && p.blur_sigma <= 2.0f, "sigma %g", p.blur_sigma);
            CHECK(p.brightness >= 0.6f && p.brightness <= 1.4f && p.contrast >= 0.6f && p.contrast <= 1.4f &&
                      p.saturation >= 0.8f && p.saturation <= 1.2f && fabsf(p.hue) <= 0.1f,
                  "jitter factors out of range");
            int seen = 0;
            for (int i = 0; i < 4; i++) seen |= 1 << p.jitter_order[i];
            CHECK(seen == 15, "jitter order is not a permutation");
        }
    }
    /* rounding of the box to whole pixels widens the ranges slightly */
    CHECK(min_area[0] > 0.31 && max_area[0] <= 1.0 && min_area[1] > 0.048 && max_area[1] < 0.33,
          "area fractions: global [%g, %g], local [%g, %g]", min_area[0], max_area[0], min_area[1], max_area[1]);
    CHECK(min_ratio > 0.74 && max_ratio < 1.345, "aspect ratios [%g, %g]", min_ratio, max_ratio);
    const double n = 3.0 * N, tol = 0.03;
    CHECK(fabs(flips / n - 0.5) < tol && fabs(jitters / n - 0.8) < tol && fabs(grays / n - 0.2) < tol,
          "flip %g, jitter %g, grayscale %g", flips / n, jitters / n, grays / n);
    CHECK(blur[0] == N && fabs(blur[1] / (double)N - 0.1) < tol && fabs(blur[2] / (double)N - 0.5) < tol,
          "blur: first global %d of %d, other %g, local %g", blur[0], N, blur[1] / (double)N, blur[2] / (double)N);
    CHECK(solarize[0] == 0 && fabs(solarize[1] / (double)N - 0.2) < tol && solarize[2] == 0,
          "solarize: %d, %g, %d", solarize[0], solarize[1] / (double)N, solarize[2]);
}

static void colour_ops_follow_their_formulas(void) {
    enum { N = 5 };
    const float px[3][N] = {{0.1f, 0.5f, 0.9f, 0.3f, 1.0f}, {0.2f, 0.5f, 0.1f, 0.7f, 0.0f}, {0.3f, 0.5f, 0.4f, 0.2f, 0.0f}};
    float rgb[3 * N];
    double gray[N], mean = 0;
    for (int i = 0; i < N; i++) {
        gray[i] = 0.2989 * px[0][i] + 0.587 * px[1][i] + 0.114 * px[2][i];
        mean += gray[i] / N;
    }
#define RESET() memcpy(rgb, px, sizeof rgb)
#define CLAMP(v) ((v) < 0 ? 0 : (v) > 1 ? 1 : (v))
    RESET();
    data_adjust_brightness(rgb, N, 1.3f);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < N; i++) CHECK(fabs(rgb[c * N + i] - CLAMP(1.3 * px[c][i])) < 1e-6, "brightness");
    RESET();
    data_adjust_contrast(rgb, N, 0.7f);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < N; i++)
            CHECK(fabs(rgb[c * N + i] - CLAMP(0.7 * px[c][i] + 0.3 * mean)) < 1e-6, "contrast");
    RESET();
    data_adjust_saturation(rgb, N, 1.2f);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < N; i++)
            CHECK(fabs(rgb[c * N + i] - CLAMP(1.2 * px[c][i] - 0.2 * gray[i])) < 1e-6, "saturation");
    RESET();
    data_to_grayscale(rgb, N);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < N; i++) CHECK(fabs(rgb[c * N + i] - gray[i]) < 1e-6, "grayscale");
    RESET();
    data_solarize(rgb, N);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < N; i++) {
            double v = px[c][i] >= 128.0 / 255.0 ? 1 - px[c][i] : px[c][i];
            CHECK(fabs(rgb[c * N + i] - v) < 1e-6, "solarize");
        }
    RESET();
    DataRgb mean_rgb = {0.485f, 0.456f, 0.406f}, std_rgb = {0.229f, 0.224f, 0.225f};
    data_normalize(rgb, N, &mean_rgb, &std_rgb);
    const double m[3] = {0.485, 0.456, 0.406}, s[3] = {0.229, 0.224, 0.225};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < N; i++) CHECK(fabs(rgb[c * N + i] - (px[c][i] - m[c]) / s[c]) < 1e-5, "normalise");
    /* hue: a shift of 0 keeps the colour, 1/3 turn takes red to green and green to blue, grey stays grey */
    RESET();
    data_adjust_hue(rgb, N, 0.0f);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < N; i++) CHECK(fabs(rgb[c * N + i] - px[c][i]) < 1e-6, "hue 0 changed pixel %d", i);
    float red_green[6] = {1, 0, 0, 1, 0, 0};   /* [3, 2]: red, green */
    data_adjust_hue(red_green, 2, 1.0f / 3.0f);
    CHECK(fabsf(red_green[0]) < 1e-6f && fabsf(red_green[2] - 1) < 1e-6f && fabsf(red_green[4]) < 1e-6f,
          "red + 1/3 turn: %g %g %g", red_green[0], red_green[2], red_green[4]);
    CHECK(fabsf(red_green[1]) < 1e-6f && fabsf(red_green[3]) < 1e-6f && fabsf(red_green[5] - 1) < 1e-6f,
          "green + 1/3 turn: %g %g %g", red_green[1], red_green[3], red_green[5]);
    RESET();
    data_adjust_hue(rgb, N, 0.25f);
    CHECK(rgb[1] == 0.5f && rgb[N + 1] == 0.5f && rgb[2 * N + 1] == 0.5f, "grey changed by a hue shift");
#undef RESET
#undef CLAMP
}

static int reflect(int i, int n) { return i < 0 ? -i : i >= n ? 2 * (n - 1) - i : i; }

static void blur_matches_a_direct_convolution(void) {
    enum { S = 12 };
    float rgb[3 * S * S];
    DdRandom r = dd_random_seed(3, 0);
    for (int i = 0; i < 3 * S * S; i++) rgb[i] = (float)dd_random_uniform(&r);
    double kernel[9], total = 0, sigma = 1.3;
    for (int k = 0; k < 9; k++) total += kernel[k] = exp(-0.5 * ((k - 4) / sigma) * ((k - 4) / sigma));
    double want[3 * S * S];
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                double acc = 0;
                for (int i = 0; i < 9; i++)
                    for (int j = 0; j < 9; j++)
                        acc += kernel[i] * kernel[j] / (total * total) *
                               rgb[c * S * S + reflect(y + i - 4, S) * S + reflect(x + j - 4, S)];
                want[c * S * S + y * S + x] = acc;
            }
    DataCropScratch scratch = {0};
    DdError err;
    CHECK(data_gaussian_blur(rgb, S, (float)sigma, &scratch, &err) == 0, "%s", err.message);
    CHECK(test_relative_error(rgb, want, 3 * S * S) < 1e-6, "blur error %g", test_relative_error(rgb, want, 3 * S * S));
    data_crop_scratch_free(&scratch);
}

typedef struct CropJob {
    const DataImage *image;
    float *out;
    int status;
} CropJob;

static void *build_in_thread(void *argument) {
    CropJob *job = argument;
    DataAugmentConfig a = default_augment();
    CropConfig crops = default_crops();
    DataCropScratch scratch = {0};
    job->status = 0;
    for (int k = 0; k < 10 && job->status == 0; k++)
        job->status = data_build_crop(&a, &crops, 99, 2, 77, k, job->image,
                                      job->out + (size_t)k * 3 * 256 * 256, &scratch, NULL);
    data_crop_scratch_free(&scratch);
    return NULL;
}

static void a_crop_is_the_same_bits_in_any_thread(void) {
    DataImage image = {0};
    random_image(&image, 333, 251, 11);
    float *a = malloc((size_t)10 * 3 * 256 * 256 * sizeof *a), *b = malloc((size_t)10 * 3 * 256 * 256 * sizeof *b);
    memset(a, 0, (size_t)10 * 3 * 256 * 256 * sizeof *a);
    memset(b, 0, (size_t)10 * 3 * 256 * 256 * sizeof *b);
    CropJob here = {&image, a, -1}, there = {&image, b, -1};
    build_in_thread(&here);
    pthread_t thread;
    pthread_create(&thread, NULL, build_in_thread, &there);
    pthread_join(thread, NULL);
    CHECK(here.status == 0 && there.status == 0, "building failed");
    CHECK(memcmp(a, b, (size_t)10 * 3 * 256 * 256 * sizeof *a) == 0, "two threads built different crops");
    /* normalised values stay inside what [0, 1] maps to */
    const float lo = (0 - 0.485f) / 0.229f - 1e-4f, hi = (1 - 0.406f) / 0.225f + 1e-4f;
    int outside = 0;
    for (size_t i = 0; i < (size_t)10 * 3 * 256 * 256; i++) outside += !(a[i] >= lo && a[i] <= hi);
    CHECK(outside == 0, "%d values outside the normalised range", outside);
    free(a);
    free(b);
    data_image_free(&image);
}

TEST_MAIN(TEST(bicubic_matches_a_float64_reference), TEST(bicubic_keeps_constants_and_copies_at_the_same_size),
          TEST(crop_plans_are_pure_functions_of_their_key), TEST(crop_plans_follow_the_recipe),
          TEST(colour_ops_follow_their_formulas), TEST(blur_matches_a_direct_convolution),
          TEST(a_crop_is_the_same_bits_in_any_thread))
