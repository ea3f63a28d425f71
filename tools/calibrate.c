/*
 * calibrate.c - times each group's backbone work at 1 and 2 blocks on one
 * device and extrapolates to its depth (see calibrate.h).
 */
#include "tools/calibrate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/clock.h"
#include "nn/random.h"
#include "nn/vit.h"
#include "tools/device_timing.h"

enum { CALIBRATE_MAX_RUNS = 31 };

/* One crop size's activations, random images and (training) output gradients. */
typedef struct CropRun {
    ViTActivations act;
    float *images;                /* [B, C, S, S] */
    float *dout;                  /* [B, T, D]; training only */
} CropRun;

static void crop_run_free(CropRun *r, const NnBackend *be) {
    vit_activations_free(&r->act, be);
    if (r->images) be->free(r->images);
    if (r->dout) be->free(r->dout);
    memset(r, 0, sizeof *r);
}

/* B crops of size px; B = 0 leaves r empty. */
static int crop_run_alloc(CropRun *r, const NnBackend *be, const ViTConfig *cfg, int B, int size, int training,
                          DdError *err) {
    if (B == 0) return 0;
    if (vit_activations_alloc(&r->act, cfg, be, B, size, size, training, err)) return -1;
    r->images = device_random_buffer(be, (size_t)B * cfg->in_channels * size * size, 3, 1.0f);
    if (training) r->dout = device_random_buffer(be, (size_t)B * r->act.T * cfg->dim, 4, 1e-3f);
    if (!r->images || (training && !r->dout))
        return dd_fail(err, "model '%s': out of %s memory for %d calibration crops of %d px", cfg->name, be->name, B,
                       size);
    vit_set_rope(&r->act, cfg, be, 1.0f);
    return 0;
}

/* One model's work, ready to run: grads NULL times the inference of the
 * global crops, else forward and backward of every crop. */
typedef struct Pass {
    const ViTConfig *cfg;
    const ViTParams *params;
    ViTParams *grads;
    CropRun crop[2];              /* global crops, local crops */
} Pass;

static int pass_alloc(Pass *p, const NnBackend *be, const CropShape *crops, int images, DdError *err) {
    const int training = p->grads != NULL;
    if (crop_run_alloc(&p->crop[0], be, p->cfg, images * crops->global_count, crops->global_size, training, err))
        return -1;
    return crop_run_alloc(&p->crop[1], be, p->cfg, training ? images * crops->local_count : 0, crops->local_size,
                          training, err);
}

/* Seconds of one run of the pass. */
static double pass_seconds(const NnBackend *be, Pass *p) {
    be->synchronize();
    double t0 = dd_now_seconds();
    for (int k = 0; k < 2; k++)
        if (p->crop[k].images) vit_forward(be, p->cfg, p->params, &p->crop[k].act, p->crop[k].images, NULL);
    for (int k = 0; p->grads && k < 2; k++)
        if (p->crop[k].images)
            vit_backward(be, p->cfg, p->params, p->grads, &p->crop[k].act, p->crop[k].dout, NULL, NULL);
    be->synchronize();
    return dd_now_seconds() - t0;
}

/* seconds[i]: median seconds per image of passes[i] (count <= 2). Each runs
 * once untimed, then the passes take turns `runs` times, so that a busy
 * spell of the machine slows them alike. */
static int time_passes(double *seconds, Pass *passes, int count, const NnBackend *be, const CropShape *crops,
                       int images, int runs, DdError *err) {
    if (images < 1 || runs < 1 || runs > CALIBRATE_MAX_RUNS)
        return dd_fail(err, "expected 1 or more images and 1 to %d runs for a calibration, found %d and %d",
                       CALIBRATE_MAX_RUNS, images, runs);
    int status = 0;
    for (int i = 0; i < count; i++) memset(passes[i].crop, 0, sizeof passes[i].crop);
    for (int i = 0; status == 0 && i < count; i++) status = pass_alloc(&passes[i], be, crops, images, err);
    double times[2][CALIBRATE_MAX_RUNS];
    for (int r = 0; status == 0 && r <= runs; r++)
        for (int i = 0; i < count; i++) {
            double t = pass_seconds(be, &passes[i]);
            if (r > 0) times[i][r - 1] = t;
        }
    for (int i = 0; i < count; i++) {
        if (status == 0) seconds[i] = median_of(times[i], runs) / images;
        crop_run_free(&passes[i].crop[0], be);
        crop_run_free(&passes[i].crop[1], be);
    }
    return status;
}

/* Parameters as fast to compute with as initialised ones (small, finite,
 * not zero), at the cost of a copy: one block of random values repeated
 * (vit_params_init draws every value, 15 s for 2 blocks of ViT-7B here). */
static int fill_params(ViTParams *p, const NnBackend *be, DdError *err) {
    enum { TILE = 1 << 20 };
    float *host = malloc(TILE * sizeof(float));
    if (!host) return dd_fail(err, "out of host memory for calibration parameters");
    DdRandom rng = dd_random_seed(0, 0);
    for (size_t i = 0; i < TILE; i++) host[i] = (float)(0.02 * dd_random_normal(&rng));
    for (size_t done = 0; done < p->count; done += TILE)
        be->copy_to_device(p->memory + done, host, (p->count - done < TILE ? p->count - done : TILE) * sizeof(float));
    free(host);
    return 0;
}

/* Parameters (and, training, gradients) of model at `depth` blocks, filled. */
static int model_alloc(ViTParams *params, ViTParams *grads, const NnBackend *be, const ViTConfig *model, int depth,
                       int frozen, DdError *err) {
    ViTConfig cfg = *model;
    cfg.depth = depth;
    if (vit_params_alloc(params, &cfg, be, err) || vit_params_alloc_bf16(params, &cfg, be, !frozen, err) ||
        fill_params(params, be, err))
        return -1;
    return frozen ? 0 : vit_params_alloc(grads, &cfg, be, err);
}

int calibrate_time_model(double *seconds, const NnBackend *be, const ViTConfig *model, const CropShape *crops,
                         int frozen, int images, int runs, DdError *err) {
    ViTParams params = {0}, grads = {0};
    int status = model_alloc(&params, &grads, be, model, model->depth, frozen, err);
    Pass pass = {.cfg = model, .params = &params, .grads = frozen ? NULL : &grads};
    if (status == 0) status = time_passes(seconds, &pass, 1, be, crops, images, runs, err);
    vit_params_free(&params, be);
    vit_params_free(&grads, be);
    return status;
}

int calibrate_model(ModelTiming *timing, const NnBackend *be, const ViTConfig *model, const CropShape *crops,
                    int frozen, int images, int runs, DdError *err) {
    /* one allocation at 2 blocks; the 1-block model is a view of its start */
    ViTConfig cfg[2] = {*model, *model};
    cfg[0].depth = 1, cfg[1].depth = 2;
    ViTParams params[2] = {{0}}, grads[2] = {{0}};
    int status = model_alloc(&params[1], &grads[1], be, model, 2, frozen, err);
    if (status == 0) status = vit_params_view(&params[0], &cfg[0], params[1].memory, err);
    params[0].bf16 = params[1].bf16;   /* the same offsets: the view's copy is the allocation's */
    params[0].bf16_blocks = params[1].bf16_blocks;
    if (status == 0 && !frozen) status = vit_params_view(&grads[0], &cfg[0], grads[1].memory, err);
    Pass passes[2];
    for (int d = 0; d < 2; d++)
        passes[d] = (Pass){.cfg = &cfg[d], .params = &params[d], .grads = frozen ? NULL : &grads[d]};
    if (status == 0) status = time_passes(timing->at_depth, passes, 2, be, crops, images, runs, err);
    for (int d = 0; d < 2; d++) {
        vit_params_free(&params[d], d == 1 ? be : NULL);
        vit_params_free(&grads[d], d == 1 ? be : NULL);
    }
    if (status) return status;
    timing->per_block = timing->at_depth[1] - timing->at_depth[0];
    timing->fixed = timing->at_depth[0] - timing->per_block;
    if (timing->per_block <= 0)   /* a block below the noise: proportional to depth instead */
        timing->per_block = timing->at_depth[1] / 2, timing->fixed = 0;
    timing->seconds = timing->fixed + timing->per_block * model->depth;
    return 0;
}

/* FLOPs per image of what is timed: the global crops' forward (frozen), or
 * forward and backward (3x) of every crop. */
static double backbone_flops(const ViTConfig *model, const CropShape *crops, int frozen) {
    double global = crops->global_count * vit_forward_flops(model, crops->global_size, crops->global_size);
    if (frozen) return global;
    return 3.0 * (global + crops->local_count * vit_forward_flops(model, crops->local_size, crops->local_size));
}

int calibrate_run(Calibration *cal, const RunConfig *config, const CropShape *crops, const PlanGroupInput *groups,
                  const NnBackend *be, DdError *err) {
    const double t0 = dd_now_seconds();
    memset(cal, 0, sizeof *cal);
    cal->backend = be->name;
    cal->group_count = 1 + config->student_count;
    /* the ceiling is sampled before each model and after the last, the best
     * kept, so that a busy spell of the machine does not lower it */
    SgemmProbe probe;
    if (sgemm_probe_alloc(&probe, be, CALIBRATE_CEILING_ROWS, CALIBRATE_CEILING_WIDTH, CALIBRATE_CEILING_WIDTH))
        return dd_fail(err, "out of %s memory for the sgemm ceiling", be->name);
    double ceiling = 0;
    int status = 0;
    for (int g = 0; g <= cal->group_count; g++) {
        ceiling = fmax(ceiling, sgemm_probe_gflops(&probe, CALIBRATE_CEILING_RUNS));
        if (g == cal->group_count) break;
        const ViTConfig *model = g == 0 ? &config->teacher.model : &config->students[g - 1].model;
        GroupCalibration *out = &cal->groups[g];
        status = calibrate_model(&out->backbone, be, model, crops, g == 0, CALIBRATE_IMAGES, CALIBRATE_RUNS, err);
        if (status) break;
        out->backbone_flops = backbone_flops(model, crops, g == 0);
        out->sustained_flops = out->backbone_flops / out->backbone.seconds;
        out->seconds = groups[g].flops_per_image / out->sustained_flops;
    }
    sgemm_probe_free(&probe);
    if (status) return status;
    cal->ceiling_flops = ceiling * 1e9;
    cal->wall_seconds = dd_now_seconds() - t0;
    return 0;
}

void calibration_print(const Calibration *cal, const RunConfig *config, const PlanGroupInput *groups,
                       const PlanDevices *devices) {
    printf("calibration on %s: sgemm ceiling %.4g TFLOP/s ([%d, %d] x [%d, %d]); each model at 1 and 2 blocks,\n"
           "%d image per run, median of %d runs after one untimed, extrapolated to its depth; %.1f s in all\n",
           cal->backend, cal->ceiling_flops / 1e12, CALIBRATE_CEILING_ROWS, CALIBRATE_CEILING_WIDTH,
           CALIBRATE_CEILING_WIDTH, CALIBRATE_CEILING_WIDTH, CALIBRATE_IMAGES, CALIBRATE_RUNS, cal->wall_seconds);
    printf("  %-8s %-14s %6s %10s %10s %12s %12s %9s %8s\n", "role", "group", "depth", "s/img d=1", "s/img d=2",
           "s/img backb.", "s/img +heads", "TFLOP/s", "ceiling");
    for (int g = 0; g < cal->group_count; g++) {
        const GroupCalibration *c = &cal->groups[g];
        int depth = g == 0 ? config->teacher.model.depth : config->students[g - 1].model.depth;
        printf("  %-8s %-14s %6d %10.4f %10.4f %12.3f %12.3f %9.4f %7.1f%%\n", g == 0 ? "teacher" : "student",
               groups[g].name, depth, c->backbone.at_depth[0], c->backbone.at_depth[1], c->backbone.seconds,
               c->seconds, c->sustained_flops / 1e12, 100 * c->sustained_flops / cal->ceiling_flops);
    }
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d", localtime(&now));
    printf("\n# measured on %s by `distill plan --calibrate`, %s; in place of the run file's devices:\n"
           "# section, it plans with these speeds without calibrating:\n"
           "devices:\n  memory_gib: %.6g\n  peak_tflops: %.4g\n  link_gb_per_s: %.6g\n"
           "  teacher: {sustained_tflops: %.4g}\n  students:\n",
           cal->backend, date, devices->memory_bytes / 1073741824.0, cal->ceiling_flops / 1e12,
           devices->link_bytes_per_second / 1e9, cal->groups[0].sustained_flops / 1e12);
    for (int s = 0; s < config->student_count; s++)
        printf("    - {name: %s, sustained_tflops: %.4g}\n", config->students[s].name,
               cal->groups[1 + s].sustained_flops / 1e12);
    printf("\n");
}
