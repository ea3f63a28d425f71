/*
 * test_micro_batch.c - a student rank's slice in micro-batches
 * (StudentShape.micro_batch): the gradient of the same loss as the whole
 * slice at once, with activations sized by the micro-batch.
 *
 * tiny_s (configs/models/tiny_s.yaml) against tiny_teacher (frozen,
 * configs/models/tiny_teacher.yaml) on one process, both drawn informative
 * (model_params_init_informative: with DINOv3's LayerScale 1e-5 every image
 * gives nearly the same CLS, and KoLeo's gradient is then a sum of large
 * terms that cancel, dominated by rounding); each image has 2 global crops
 * of 32 px (16 patches, some masked: every crop its own count, 0 to 6) and
 * 2 local crops of 16 px, random pixels. Asserted:
 *   - KoLeo off, 6 images: micro-batches of 1, 2, 4 (4 + 2), 5 (5 + 1)
 *     images give every gradient tensor within 1e-5 of the whole slice's
 *     (max |difference| / max |whole slice|), the DINO and iBOT terms and
 *     the total within 1e-6 (relative); micro-batches of 6 and 7 (the whole
 *     slice) give bit for bit the same gradients and terms as micro_batch 0;
 *   - KoLeo on, micro-batches of 3 of 6 images: KoLeo is the mean of the
 *     KoLeo terms of each 3-image half run as its own batch, the KoLeo-only
 *     gradient the mean of theirs, and the other terms the whole slice's;
 *   - memory: with micro-batches of 2 of 8 images the activations (backbone
 *     and heads) hold 3x to 5x fewer floats than with the whole slice, and
 *     the workspace as a whole fewer; micro-batches of 1 with KoLeo on are
 *     refused.
 * The measured figures are printed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/random.h"
#include "students/students.h"
#include "tests/students/test_teacher.h"
#include "tests/test.h"

enum { IMAGES = 6, GLOBAL_CROPS = 2, GLOBAL_SIZE = 32, LOCAL_CROPS = 2, LOCAL_SIZE = 16, CHANNELS = 3 };
static const uint64_t seed = 7;
static const double gradient_tolerance = 1e-5, term_tolerance = 1e-6;

/* Models, and the host copy of one batch of `images` images. */
typedef struct Fixture {
    const NnBackend *be;
    ViTConfig teacher_cfg, student_cfg;
    ObjectiveConfig objective;
    TeacherPrototypes prototypes;
    ModelParams teacher_params;    /* frozen, one draw for every batch */
    Student student;
    int Np;
    float *global, *local;         /* host [G*B, 3, 32, 32], [L*B, 3, 16, 16] */
    uint8_t *masks;                /* host [G*B, Np] */
} Fixture;

/* One batch on the backend: its crops and the teacher's rows. */
typedef struct DeviceBatch {
    TestTeacher teacher;
    float *global, *local;
    StudentBatch batch;
    int images, max_masked;
} DeviceBatch;

static const size_t global_floats = (size_t)CHANNELS * GLOBAL_SIZE * GLOBAL_SIZE;
static const size_t local_floats = (size_t)CHANNELS * LOCAL_SIZE * LOCAL_SIZE;

static int fixture_open(Fixture *f, double koleo_weight) {
    DdError err = {{0}};
    memset(f, 0, sizeof *f);
    f->be = &nn_cpu_backend;
    const int ok = vit_config_load(&f->teacher_cfg, "configs/models/tiny_teacher.yaml", &err) == 0 &&
                   vit_config_load(&f->student_cfg, "configs/models/tiny_s.yaml", &err) == 0 &&
                   config_set_defaults(&objective_config_schema, &f->objective, &err) == 0 &&
                   model_params_alloc(&f->teacher_params, &f->teacher_cfg, f->be, &err) == 0 &&
                   model_params_init_informative(&f->teacher_params, &f->teacher_cfg, f->be, seed, 0, &err) == 0 &&
                   teacher_prototypes_alloc(&f->prototypes, &f->teacher_cfg, f->be, &err) == 0 &&
                   student_create(&f->student, &f->student_cfg, f->be, seed, 1, &err) == 0 &&
                   model_params_init_informative(&f->student.params, &f->student_cfg, f->be, seed, 1, &err) == 0;
    CHECK(ok, "%s", err.message);
    if (!ok) return -1;
    f->objective.koleo_weight = (float)koleo_weight;
    teacher_prototypes_set(&f->prototypes, f->be, f->teacher_params.dino_head.prototypes,
                           f->teacher_params.ibot_head.prototypes);
    const int side = GLOBAL_SIZE / f->student_cfg.patch_size;
    f->Np = side * side;
    const int G = GLOBAL_CROPS * IMAGES, L = LOCAL_CROPS * IMAGES;
    f->global = malloc(G * global_floats * sizeof(float));
    f->local = malloc(L * local_floats * sizeof(float));
    f->masks = calloc((size_t)G * f->Np, 1);
    CHECK(f->global && f->local && f->masks, "out of memory");
    if (!f->global || !f->local || !f->masks) return -1;
    DdRandom rng = dd_random_seed(seed, 1);
    for (size_t i = 0; i < G * global_floats; i++) f->global[i] = (float)dd_random_normal(&rng);
    for (size_t i = 0; i < L * local_floats; i++) f->local[i] = (float)dd_random_normal(&rng);
    for (int i = 0; i < G; i++) {   /* crop i: (5 i) mod 7 patches masked, spread over the grid */
        const int count = (5 * i) % 7;
        for (int k = 0; k < count; k++) f->masks[(size_t)i * f->Np + (3 * i + 5 * k) % f->Np] = 1;
    }
    return 0;
}

static void fixture_close(Fixture *f) {
    teacher_prototypes_free(&f->prototypes, f->be);
    model_params_free(&f->teacher_params, f->be);
    student_free(&f->student, f->be);
    free(f->global);
    free(f->local);
    free(f->masks);
}

/* Images first .. first + images - 1 of the fixture's batch on the backend
 * (crop-major, as a rank holds its slice) with the teacher's rows. */
static int device_batch_open(DeviceBatch *d, Fixture *f, int first, int images) {
    DdError err = {{0}};
    const NnBackend *be = f->be;
    memset(d, 0, sizeof *d);
    d->images = images;
    d->max_masked = GLOBAL_CROPS * images * f->Np;
    uint8_t *masks = malloc((size_t)GLOBAL_CROPS * images * f->Np);
    d->global = be->alloc(GLOBAL_CROPS * images * global_floats * sizeof(float));
    d->local = be->alloc(LOCAL_CROPS * images * local_floats * sizeof(float));
    const int ok = masks && d->global && d->local &&
                   test_teacher_alloc(&d->teacher, &f->teacher_cfg, be, GLOBAL_CROPS * images, GLOBAL_SIZE,
                                      d->max_masked, &err) == 0;
    CHECK(ok, "%s", err.message[0] ? err.message : "out of memory");
    if (!ok) {
        free(masks);
        return -1;
    }
    be->copy(d->teacher.params.memory, f->teacher_params.memory, f->teacher_params.count * sizeof(float));
    for (int g = 0; g < GLOBAL_CROPS; g++) {
        const int from = g * IMAGES + first, to = g * images;
        be->copy_to_device(d->global + to * global_floats, f->global + from * global_floats,
                           images * global_floats * sizeof(float));
        memcpy(masks + (size_t)to * f->Np, f->masks + (size_t)from * f->Np, (size_t)images * f->Np);
    }
    for (int l = 0; l < LOCAL_CROPS; l++)
        be->copy_to_device(d->local + (size_t)l * images * local_floats,
                           f->local + (size_t)(l * IMAGES + first) * local_floats,
                           images * local_floats * sizeof(float));
    const int M = test_teacher_forward(&d->teacher, be, d->global, masks);
    CHECK(M > 0, "expected masked patches in the batch, found %d", M);
    d->batch = (StudentBatch){.global_crops = d->global, .local_crops = d->local, .masks = masks,
                              .teacher_dino = d->teacher.dino.features, .teacher_ibot = d->teacher.ibot.features,
                              .global_rope_rescale = 1.25f, .local_rope_rescale = 0.8f};
    return M > 0 ? 0 : -1;
}

static void device_batch_close(DeviceBatch *d, const NnBackend *be) {
    test_teacher_free(&d->teacher, be);
    if (d->global) be->free(d->global);
    if (d->local) be->free(d->local);
    free((void *)d->batch.masks);
}

static StudentShape shape_of(int images, int max_masked, int micro_batch) {
    return (StudentShape){.images = images, .global_count = GLOBAL_CROPS, .global_size = GLOBAL_SIZE,
                          .local_count = LOCAL_CROPS, .local_size = LOCAL_SIZE, .max_masked = max_masked,
                          .micro_batch = micro_batch};
}

/* One forward and backward of the batch in micro-batches of micro_batch
 * images (weights: NULL for the objective's); the gradients into grads
 * (host, the layout's count). */
static int run_step(Fixture *f, DeviceBatch *d, int micro_batch, const LossWeights *weights, LossTerms *terms,
                    float *grads) {
    DdError err = {{0}};
    StudentWorkspace work;
    const StudentShape shape = shape_of(d->images, d->max_masked, micro_batch);
    const StudentGroup group = STUDENT_GROUP_SINGLE_PROCESS;
    int status = student_workspace_alloc(&work, &f->student_cfg, &f->teacher_cfg, &shape, &f->objective, f->be, &err);
    if (status == 0) {
        if (weights) work.weights = *weights;
        status = student_forward_backward(f->be, &f->student, &work, &f->prototypes, &d->batch, 0.07f, &group, 1,
                                          terms, &err);
        student_workspace_free(&work, f->be);
    }
    CHECK(status == 0, "micro_batch %d: %s", micro_batch, err.message);
    f->be->copy_to_host(grads, f->student.grads.memory, f->student.layout.count * sizeof(float));
    return status;
}

/* The worst relative error of any gradient tensor (NaN: infinity). */
static double worst_gradient_error(const Fixture *f, const float *found, const float *expected) {
    const ModelLayout *layout = &f->student.layout;
    double worst = 0.0;
    for (int i = 0; i < layout->tensor_count; i++) {
        const ViTTensorInfo *t = &layout->tensors[i].info;
        worst = fmax(worst, test_relative_error_ff(found + t->offset, expected + t->offset, (long)t->count));
    }
    return worst;
}

static double term_error(double found, double expected) {
    const double error = fabs(found - expected) / fmax(fabs(expected), 1e-30);
    return isfinite(found) && isfinite(expected) ? error : INFINITY;
}

/* The worst relative error of the DINO and iBOT terms (and with total, of
 * the total: KoLeo's neighbours differ with the micro-batches, so it is
 * compared on its own). */
static double worst_term_error(const LossTerms *a, const LossTerms *b, int total) {
    double worst = fmax(term_error(a->dino_local, b->dino_local), term_error(a->dino_global, b->dino_global));
    worst = fmax(worst, term_error(a->ibot, b->ibot));
    return total ? fmax(worst, term_error(a->total, b->total)) : worst;
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static void micro_batches_give_the_whole_slice_gradient(void) {
    Fixture f;
    DeviceBatch d;
    if (fixture_open(&f, 0.0) != 0 || device_batch_open(&d, &f, 0, IMAGES) != 0) {
        fixture_close(&f);
        return;
    }
    const size_t count = f.student.layout.count;
    float *whole = malloc(count * sizeof(float)), *grads = malloc(count * sizeof(float));
    LossTerms reference, terms;
    if (run_step(&f, &d, 0, NULL, &reference, whole) == 0) {
        double norm = 0.0;
        for (size_t i = 0; i < count; i++) norm += (double)whole[i] * whole[i];
        printf("  %d images, %d masked patches: whole slice: total %.6f (DINO local %.6f, global %.6f, iBOT %.6f), "
               "gradient norm %.4f\n", IMAGES, reference.masked, reference.total, reference.dino_local,
               reference.dino_global, reference.ibot, sqrt(norm));
        CHECK(all_finite(whole, count) && isfinite(reference.total) && norm > 0, "the whole slice's step is not "
              "finite, or has no gradient");
        const int split[] = {1, 2, 4, 5};
        for (size_t k = 0; k < sizeof split / sizeof split[0]; k++) {
            if (run_step(&f, &d, split[k], NULL, &terms, grads) != 0) break;
            const double gradient = worst_gradient_error(&f, grads, whole);
            const double term = worst_term_error(&terms, &reference, 1);
            printf("  micro_batch %d: worst gradient tensor rel err %.2e, worst loss term rel err %.2e\n", split[k],
                   gradient, term);
            CHECK(gradient <= gradient_tolerance, "micro_batch %d: gradient relative error %.3g, expected <= %g",
                  split[k], gradient, gradient_tolerance);
            CHECK(term <= term_tolerance, "micro_batch %d: loss term relative error %.3g, expected <= %g", split[k],
                  term, term_tolerance);
            CHECK(terms.masked == reference.masked, "micro_batch %d: %d masked patches, expected %d", split[k],
                  terms.masked, reference.masked);
        }
        const int whole_slice[] = {IMAGES, IMAGES + 1};
        for (size_t k = 0; k < sizeof whole_slice / sizeof whole_slice[0]; k++) {
            if (run_step(&f, &d, whole_slice[k], NULL, &terms, grads) != 0) break;
            const int same = memcmp(grads, whole, count * sizeof(float)) == 0 && terms.total == reference.total &&
                             terms.dino_local == reference.dino_local && terms.dino_global == reference.dino_global &&
                             terms.ibot == reference.ibot && terms.koleo == reference.koleo;
            printf("  micro_batch %d: %s\n", whole_slice[k], same ? "bit-identical" : "DIFFERS");
            CHECK(same, "micro_batch %d (>= %d images): expected the gradients and terms of micro_batch 0 bit for bit",
                  whole_slice[k], IMAGES);
        }
    }
    free(whole);
    free(grads);
    device_batch_close(&d, f.be);
    fixture_close(&f);
}

static void koleo_takes_neighbours_within_each_micro_batch(void) {
    Fixture f;
    DeviceBatch whole, half[2];
    memset(half, 0, sizeof half);
    if (fixture_open(&f, 0.1) != 0 || device_batch_open(&whole, &f, 0, IMAGES) != 0 ||
        device_batch_open(&half[0], &f, 0, IMAGES / 2) != 0 ||
        device_batch_open(&half[1], &f, IMAGES / 2, IMAGES / 2) != 0) {
        fixture_close(&f);
        return;
    }
    const size_t count = f.student.layout.count;
    float *grads = malloc(count * sizeof(float)), *half_grads[2] = {malloc(count * sizeof(float)),
                                                                      malloc(count * sizeof(float))};
    float *mean = malloc(count * sizeof(float));
    LossTerms reference, micro, halves[2];
    const LossWeights koleo_only = {.koleo = 1.0};
    if (run_step(&f, &whole, 0, NULL, &reference, grads) == 0 && run_step(&f, &whole, 3, NULL, &micro, grads) == 0 &&
        run_step(&f, &half[0], 0, NULL, &halves[0], half_grads[0]) == 0 &&
        run_step(&f, &half[1], 0, NULL, &halves[1], half_grads[1]) == 0) {
        const double expected = 0.5 * (halves[0].koleo + halves[1].koleo);
        const double koleo = term_error(micro.koleo, expected), others = worst_term_error(&micro, &reference, 0);
        printf("  KoLeo: whole slice %.6f, halves %.6f and %.6f (mean %.6f), micro-batches of 3 %.6f: rel err %.2e; "
               "DINO and iBOT against the whole slice: worst rel err %.2e\n", reference.koleo, halves[0].koleo,
               halves[1].koleo, expected, micro.koleo, koleo, others);
        CHECK(koleo <= term_tolerance, "KoLeo %.8g, the mean of the halves' %.8g: relative error %.3g", micro.koleo,
              expected, koleo);
        CHECK(others <= term_tolerance, "DINO and iBOT terms: relative error %.3g against the whole slice", others);
        CHECK(fabs(reference.koleo - expected) > 1e-4 * fabs(expected), "the whole slice's KoLeo %.8g should differ "
              "from the halves' %.8g (its neighbours are taken over 6 images)", reference.koleo, expected);

        /* the KoLeo-only gradient: the mean of the halves' */
        if (run_step(&f, &whole, 3, &koleo_only, &micro, grads) == 0 &&
            run_step(&f, &half[0], 0, &koleo_only, &halves[0], half_grads[0]) == 0 &&
            run_step(&f, &half[1], 0, &koleo_only, &halves[1], half_grads[1]) == 0) {
            for (size_t i = 0; i < count; i++) mean[i] = 0.5f * (half_grads[0][i] + half_grads[1][i]);
            const double gradient = worst_gradient_error(&f, grads, mean);
            printf("  KoLeo-only gradient, micro-batches of 3 against the mean of the halves': worst tensor rel err "
                   "%.2e\n", gradient);
            CHECK(gradient <= gradient_tolerance, "KoLeo gradient: relative error %.3g, expected <= %g", gradient,
                  gradient_tolerance);
        }
    }
    free(grads);
    free(half_grads[0]);
    free(half_grads[1]);
    free(mean);
    for (int h = 0; h < 2; h++) device_batch_close(&half[h], f.be);
    device_batch_close(&whole, f.be);
    fixture_close(&f);
}

static void activations_are_sized_by_the_micro_batch(void) {
    DdError err = {{0}};
    const NnBackend *be = &nn_cpu_backend;
    ViTConfig teacher_cfg, student_cfg;
    ObjectiveConfig objective;
    CHECK(vit_config_load(&teacher_cfg, "configs/models/tiny_teacher.yaml", &err) == 0 &&
              vit_config_load(&student_cfg, "configs/models/tiny_s.yaml", &err) == 0 &&
              config_set_defaults(&objective_config_schema, &objective, &err) == 0,
          "%s", err.message);
    if (test_state.failed_checks) return;
    enum { B = 8 };
    StudentShape shape = shape_of(B, 0, 0);
    shape.max_masked = student_max_masked(&shape, &objective, student_cfg.patch_size);
    double activations[2] = {0}, total[2] = {0};
    const int micro_batch[2] = {0, 2};
    for (int k = 0; k < 2; k++) {
        StudentWorkspace w;
        shape.micro_batch = micro_batch[k];
        if (student_workspace_alloc(&w, &student_cfg, &teacher_cfg, &shape, &objective, be, &err) != 0) {
            CHECK(0, "micro_batch %d: %s", micro_batch[k], err.message);
            return;
        }
        activations[k] = (double)w.global.bytes + w.local.bytes + 4.0 * ((double)w.dino.count + w.ibot.count);
        total[k] = activations[k] + 4.0 * w.count;
        student_workspace_free(&w, be);
    }
    const double ratio = activations[0] / activations[1];
    printf("  %d images, max_masked %d: activations %.0f bytes whole, %.0f in micro-batches of 2 (%.2fx fewer); "
           "with the other buffers %.0f and %.0f\n", B, shape.max_masked, activations[0], activations[1], ratio,
           total[0], total[1]);
    CHECK(ratio >= 3 && ratio <= 5, "activations %.2fx fewer with micro-batches of 2 of %d images, expected 3 to 5",
          ratio, B);
    CHECK(total[1] < total[0], "the workspace holds %.0f bytes with micro-batches, %.0f without", total[1],
          total[0]);

    /* KoLeo needs a neighbour in each micro-batch */
    StudentWorkspace w;
    shape.micro_batch = 1;
    CHECK(student_workspace_alloc(&w, &student_cfg, &teacher_cfg, &shape, &objective, be, &err) != 0 &&
              strstr(err.message, "micro_batch >= 2"),
          "micro_batch 1 with KoLeo on: expected a refusal, found '%s'", err.message);
}

TEST_MAIN(TEST(micro_batches_give_the_whole_slice_gradient), TEST(koleo_takes_neighbours_within_each_micro_batch),
          TEST(activations_are_sized_by_the_micro_batch))
