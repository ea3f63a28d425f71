/*
 * test_learning.c - a student learns from a teacher: tiny_s (a ViT-S-shaped
 * student, configs/models/tiny_s.yaml, DINOv3 init) trained against
 * tiny_teacher (configs/models/tiny_teacher.yaml, frozen, a random init with
 * unit-gain matrices: see init_informative_teacher) on fixed synthetic images,
 * on one process, through the whole path of an iteration: teacher
 * bottlenecks, Sinkhorn-Knopp targets, the four loss terms, backward, AdamW
 * with parameter groups and clipping, the EMA, the schedules of a run.
 *
 * Images: 8 patterned 48 x 48 px images (stripes, checkerboards, rings,
 * gradients in two colours each); per image 2 global crops of 32 px (one
 * mirrored) and 4 local crops of 16 px at fixed places; iBOT masks from
 * data/ibot_mask.h. The teacher's bottlenecks are computed once (frozen
 * teacher, fixed crops), the student's RoPE rescale is drawn per forward.
 *
 * Asserted, on losses averaged over the last 10 iterations against the
 * first iteration's:
 *   - the total falls below TOTAL_MARGIN times its start;
 *   - so that KoLeo (large at the start, when every image gives nearly the
 *     same CLS) cannot carry it alone: DINO global and DINO local each close
 *     part of the gap between their start and their floor (the least
 *     cross-entropy any student could reach: the mean entropy of the teacher
 *     targets for a global crop, of the mixture of an image's two targets for
 *     a local crop, which is compared with both), and iBOT falls below
 *     TERM_MARGIN times its start;
 *   - the EMA model (what a run delivers) scores below the start.
 * Sinkhorn-Knopp over 16 rows and 256 prototypes spreads each target over
 * many prototypes (entropy ~4.4 of at most 5.5 nats): the learnable part of
 * DINO is that gap. The figures are printed. About 1 s in a release build
 * on 2 cores, 15 s under AddressSanitizer.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/clock.h"
#include "nn/random.h"
#include "schedule/schedule.h"
#include "students/students.h"
#include "tests/students/test_teacher.h"
#include "tests/test.h"

enum { ITERATIONS = 300 };
#define TOTAL_MARGIN 0.7       /* the total falls by 30% or more (measured: 41%) */
#define GLOBAL_GAP_CLOSED 0.75 /* DINO global closes 3/4 of its gap to the floor (91%) */
#define LOCAL_GAP_CLOSED 0.75  /* DINO local too (99%) */
#define TERM_MARGIN 0.85       /* iBOT falls by 15% or more (31%) */
enum { IMAGES = 8, IMAGE_SIZE = 48, GLOBAL_CROPS = 2, GLOBAL_SIZE = 32, LOCAL_CROPS = 4, LOCAL_SIZE = 16 };
enum { CHANNELS = 3, COOLDOWN = ITERATIONS / 5, WARMUP = ITERATIONS / 10 };
static const uint64_t seed = 2024;

/* ---- fixed synthetic images ---------------------------------------------------- */

/* Image i: one of four patterns at its own frequency, in two colours. */
static void draw_images(float *images /* [IMAGES, 3, 48, 48] */) {
    for (int i = 0; i < IMAGES; i++) {
        DdRandom rng = dd_random_keyed(seed, DD_RANDOM_SYNTHETIC, 0, (uint64_t)i, 0);
        float colour[2][CHANNELS];
        for (int k = 0; k < 2; k++)
            for (int c = 0; c < CHANNELS; c++) colour[k][c] = (float)(2.0 * dd_random_uniform(&rng) - 1.0);
        const double period = 4.0 + 4.0 * (i / 4);
        for (int y = 0; y < IMAGE_SIZE; y++)
            for (int x = 0; x < IMAGE_SIZE; x++) {
                double t;
                switch (i % 4) {
                case 0: t = 0.5 + 0.5 * sin(2 * M_PI * y / period); break;                      /* stripes */
                case 1: t = ((x / (int)period + y / (int)period) % 2) ? 1.0 : 0.0; break;       /* checks */
                case 2: t = 0.5 + 0.5 * cos(2 * M_PI * hypot(x - 24.0, y - 24.0) / period); break;  /* rings */
                default: t = (double)(x + y) / (2.0 * IMAGE_SIZE); break;                       /* gradient */
                }
                for (int c = 0; c < CHANNELS; c++)
                    images[(((size_t)i * CHANNELS + c) * IMAGE_SIZE + y) * IMAGE_SIZE + x] =
                        (float)(colour[0][c] * (1.0 - t) + colour[1][c] * t);
            }
    }
}

/* crop[3, size, size] of image[3, 48, 48] at (top, left), mirrored or not. */
static void cut(float *crop, const float *image, int size, int top, int left, int mirror) {
    for (int c = 0; c < CHANNELS; c++)
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
                crop[((size_t)c * size + y) * size + x] =
                    image[((size_t)c * IMAGE_SIZE + top + y) * IMAGE_SIZE + left + (mirror ? size - 1 - x : x)];
}

/* Global crop g of image b at row g*B + b, local crop l of image b at l*B + b. */
static void cut_crops(const float *images, float *global /* [G*B, 3, 32, 32] */, float *local /* [L*B, 3, 16, 16] */) {
    static const int global_at[GLOBAL_CROPS][3] = {{0, 0, 0}, {16, 16, 1}};
    static const int local_at[LOCAL_CROPS][2] = {{4, 4}, {4, 28}, {28, 4}, {28, 28}};
    const size_t image_floats = (size_t)CHANNELS * IMAGE_SIZE * IMAGE_SIZE;
    for (int b = 0; b < IMAGES; b++) {
        for (int g = 0; g < GLOBAL_CROPS; g++)
            cut(global + (size_t)(g * IMAGES + b) * CHANNELS * GLOBAL_SIZE * GLOBAL_SIZE, images + b * image_floats,
                GLOBAL_SIZE, global_at[g][0], global_at[g][1], global_at[g][2]);
        for (int l = 0; l < LOCAL_CROPS; l++)
            cut(local + (size_t)(l * IMAGES + b) * CHANNELS * LOCAL_SIZE * LOCAL_SIZE, images + b * image_floats,
                LOCAL_SIZE, local_at[l][0], local_at[l][1], 0);
    }
}

/* ---- an informative teacher -------------------------------------------------------- */

/* Mean entropy of the rows of targets[rows, K] (backend), in nats; with
 * mix_with > 0, of the mixture of row r and row r + mix_with, averaged over
 * the first mix_with rows (the two global crops of each image). */
static double mean_entropy(const NnBackend *be, const float *targets, int rows, int K, int mix_with) {
    float *host = malloc((size_t)rows * K * sizeof(float));   /* [rows, K] */
    be->copy_to_host(host, targets, (size_t)rows * K * sizeof(float));
    const int counted = mix_with > 0 ? mix_with : rows;
    double entropy = 0.0;
    for (int r = 0; r < counted; r++)
        for (int k = 0; k < K; k++) {
            double p = host[(size_t)r * K + k];
            if (mix_with > 0) p = 0.5 * (p + host[(size_t)(r + mix_with) * K + k]);
            if (p > 0) entropy -= p * log(p);
        }
    free(host);
    return entropy / counted;
}

/* ---- the run -------------------------------------------------------------------- */

/* One log-uniform RoPE rescale in [0.5, 2] per forward, as a run draws them. */
static float rope_rescale(long iteration, int crop_size) {
    DdRandom rng = dd_random_keyed(seed, DD_RANDOM_ROPE_RESCALE, (uint64_t)iteration, (uint64_t)crop_size, 0);
    return (float)exp(log(0.5) + (log(2.0) - log(0.5)) * dd_random_uniform(&rng));
}

/* The schedules of this short run: lr 0 -> 2e-3 -> 1e-4, the rest constant. */
static int make_schedules(RunSchedules *run, DdError *err) {
    SchedulesConfig config;
    if (config_set_defaults(&schedules_config_schema, &config, err) != 0) return -1;
    config.lr = (ScheduleConfig){0.0, 2e-3, 1e-4, -1, COOLDOWN_COSINE};
    config.teacher_temperature = (ScheduleConfig){0.07, 0.07, 0.07, -1, COOLDOWN_COSINE};
    config.ema_momentum = (ScheduleConfig){0.99, 0.99, 0.995, -1, COOLDOWN_COSINE};
    return run_schedules_make(run, &config, WARMUP, ITERATIONS - COOLDOWN, COOLDOWN, err);
}

static void a_tiny_student_learns_from_a_tiny_teacher(void) {
    const NnBackend *be = &nn_cpu_backend;
    DdError err = {{0}};
    ViTConfig teacher_cfg, student_cfg;
    ObjectiveConfig objective;
    OptimizerConfig optimizer;
    RunSchedules schedules;
    CHECK(vit_config_load(&teacher_cfg, "configs/models/tiny_teacher.yaml", &err) == 0 &&
              vit_config_load(&student_cfg, "configs/models/tiny_s.yaml", &err) == 0 &&
              config_set_defaults(&objective_config_schema, &objective, &err) == 0 &&
              config_set_defaults(&optimizer_config_schema, &optimizer, &err) == 0 && make_schedules(&schedules, &err) == 0,
          "%s", err.message);
    if (test_state.failed_checks) return;

    const int crops = GLOBAL_CROPS * IMAGES, grid = GLOBAL_SIZE / student_cfg.patch_size, Np = grid * grid;
    const StudentShape shape = {.images = IMAGES, .global_count = GLOBAL_CROPS, .global_size = GLOBAL_SIZE,
                                .local_count = LOCAL_CROPS, .local_size = LOCAL_SIZE,
                                .max_masked = student_max_masked(&(StudentShape){.images = IMAGES,
                                                                 .global_count = GLOBAL_CROPS,
                                                                 .global_size = GLOBAL_SIZE},
                                                                 &objective, student_cfg.patch_size)};
    TestTeacher teacher;
    TeacherPrototypes prototypes;
    Student student;
    StudentWorkspace work;
    const size_t global_floats = (size_t)crops * CHANNELS * GLOBAL_SIZE * GLOBAL_SIZE;
    const size_t local_floats = (size_t)LOCAL_CROPS * IMAGES * CHANNELS * LOCAL_SIZE * LOCAL_SIZE;
    float *images = malloc((size_t)IMAGES * CHANNELS * IMAGE_SIZE * IMAGE_SIZE * sizeof(float));
    float *host_global = malloc(global_floats * sizeof(float)), *host_local = malloc(local_floats * sizeof(float));
    float *global = be->alloc(global_floats * sizeof(float)), *local = be->alloc(local_floats * sizeof(float));
    uint8_t *masks = malloc((size_t)crops * Np);
    const int ready = images && host_global && host_local && global && local && masks &&
                      test_teacher_alloc(&teacher, &teacher_cfg, be, crops, GLOBAL_SIZE, shape.max_masked, &err) == 0 &&
                      model_params_init_informative(&teacher.params, &teacher_cfg, be, seed, 0, &err) == 0 &&
                      teacher_prototypes_alloc(&prototypes, &teacher_cfg, be, &err) == 0 &&
                      student_create(&student, &student_cfg, be, seed, 1, &err) == 0 &&
                      student_workspace_alloc(&work, &student_cfg, &teacher_cfg, &shape, &objective, be, &err) == 0;
    CHECK(ready, "%s", err.message);
    if (!ready) return;

    /* the fixed batch: crops, masks, and the frozen teacher's bottlenecks */
    draw_images(images);
    cut_crops(images, host_global, host_local);
    be->copy_to_device(global, host_global, global_floats * sizeof(float));
    be->copy_to_device(local, host_local, local_floats * sizeof(float));
    int masked_crops = 0;
    for (int g = 0; g < GLOBAL_CROPS; g++)
        for (int b = 0; b < IMAGES; b++)
            masked_crops += ibot_mask_generate(&objective.ibot_mask, seed, 0, (uint64_t)b, g, grid, grid,
                                               masks + (size_t)(g * IMAGES + b) * Np) > 0;
    const int M = test_teacher_forward(&teacher, be, global, masks);
    teacher_prototypes_set(&prototypes, be, teacher.params.dino_head.prototypes, teacher.params.ibot_head.prototypes);
    StudentBatch batch = {.global_crops = global, .local_crops = local, .masks = masks,
                          .teacher_dino = teacher.dino.features, .teacher_ibot = teacher.ibot.features};
    printf("  teacher %s (%d blocks, dim %d), student %s (%d blocks, dim %d); %d images x (%d global %d px + %d "
           "local %d px), %d of %d global crops masked, %d masked patches; %d iterations\n",
           teacher_cfg.name, teacher_cfg.depth, teacher_cfg.dim, student_cfg.name, student_cfg.depth, student_cfg.dim,
           IMAGES, GLOBAL_CROPS, GLOBAL_SIZE, LOCAL_CROPS, LOCAL_SIZE, masked_crops, crops, M, ITERATIONS);

    const StudentGroup group = STUDENT_GROUP_SINGLE_PROCESS;
    LossTerms first = {0}, losses = {0}, last_terms = {0};
    double global_floor = 0.0, local_floor = 0.0;
    double last_sum = 0.0;
    const double started = dd_now_seconds();
    for (long it = 0; it < ITERATIONS && !test_state.failed_checks; it++) {
        const ScheduleValues h = run_schedules_at(&schedules, it);
        batch.global_rope_rescale = rope_rescale(it, 0);
        batch.local_rope_rescale = rope_rescale(it, 1);
        UpdateReport report;
        CHECK(student_forward_backward(be, &student, &work, &prototypes, &batch, (float)h.teacher_temperature,
                                       &group, 1, &losses, &err) == 0 &&
                  student_update(be, &student, &optimizer, h.lr, h.weight_decay, h.ema_momentum, &group, &report,
                                 &err) == 0,
              "iteration %ld: %s", it, err.message);
        if (it == 0) {
            first = losses;
            global_floor = mean_entropy(be, work.dino_targets, crops, work.prototypes_dino, 0);
            local_floor = mean_entropy(be, work.dino_targets, crops, work.prototypes_dino, IMAGES);
            printf("  teacher targets: mean entropy %.3f nats (DINO, uniform: %.3f; mixture of an image's two: %.3f), "
                   "%.3f (iBOT, uniform: %.3f)\n", global_floor, log(work.prototypes_dino), local_floor,
                   mean_entropy(be, work.ibot_targets, M, work.prototypes_ibot, 0), log(work.prototypes_ibot));
        }
        if (it >= ITERATIONS - 10) {
            last_terms.dino_local += losses.dino_local / 10;
            last_terms.dino_global += losses.dino_global / 10;
            last_terms.ibot += losses.ibot / 10;
        }
        if (it >= ITERATIONS - 10) last_sum += losses.total;
        if (it % (ITERATIONS / 6) == 0 || it == ITERATIONS - 1)
            printf("  iteration %4ld: total %.4f (DINO local %.4f, global %.4f, iBOT %.4f, KoLeo %.4f), lr %.2e, "
                   "backbone grad norm %.3f\n", it, losses.total, losses.dino_local, losses.dino_global, losses.ibot,
                   losses.koleo, h.lr, report.grad_norm[MODULE_BACKBONE]);
    }
    const double elapsed = dd_now_seconds() - started, last = last_sum / 10.0;

    /* the delivered model: the EMA in place of the parameters, forward only */
    be->copy(student.params.memory, student.shard.ema, student.layout.count * sizeof(float));
    LossTerms ema = {0};
    CHECK(student_forward_backward(be, &student, &work, &prototypes, &batch, 0.07f, &group, 0, &ema, &err) == 0,
          "%s", err.message);
    printf("  loss %.4f at the start, %.4f over the last 10 iterations (%.1f%% lower), EMA model %.4f; "
           "%d iterations in %.2f s (%.1f ms each)\n", first.total, last, 100.0 * (1.0 - last / first.total),
           ema.total, ITERATIONS, elapsed, 1e3 * elapsed / ITERATIONS);
    const double global_closed = (first.dino_global - last_terms.dino_global) / (first.dino_global - global_floor);
    const double local_closed = (first.dino_local - last_terms.dino_local) / (first.dino_local - local_floor);
    printf("  over the last 10 iterations: DINO global %.4f (start %.4f, floor %.4f: %.0f%% of the gap closed), "
           "DINO local %.4f (%.4f, floor %.4f: %.0f%%), iBOT %.4f (%.4f, %.1f%% lower)\n", last_terms.dino_global,
           first.dino_global, global_floor, 100 * global_closed, last_terms.dino_local, first.dino_local, local_floor,
           100 * local_closed, last_terms.ibot, first.ibot, 100 * (1 - last_terms.ibot / first.ibot));
    CHECK(last < TOTAL_MARGIN * first.total, "the loss went from %.4f to %.4f: expected below %.2f x the start",
          first.total, last, TOTAL_MARGIN);
    CHECK(global_closed > GLOBAL_GAP_CLOSED && local_closed > LOCAL_GAP_CLOSED,
          "DINO global closed %.2f (expected > %.2f) and DINO local %.2f (expected > %.2f) of their gaps to the floor",
          global_closed, GLOBAL_GAP_CLOSED, local_closed, LOCAL_GAP_CLOSED);
    CHECK(last_terms.ibot < TERM_MARGIN * first.ibot, "iBOT went from %.4f to %.4f: expected below %.2f x the start",
          first.ibot, last_terms.ibot, TERM_MARGIN);
    CHECK(ema.total < first.total, "the EMA model scores %.4f, not below the start %.4f", ema.total, first.total);

    student_workspace_free(&work, be);
    student_free(&student, be);
    teacher_prototypes_free(&prototypes, be);
    test_teacher_free(&teacher, be);
    be->free(global);
    be->free(local);
    free(images);
    free(host_global);
    free(host_local);
    free(masks);
}

TEST_MAIN(TEST(a_tiny_student_learns_from_a_tiny_teacher))
