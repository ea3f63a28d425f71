/*
 * test_objective_reference.c - the distillation objective against PyTorch
 * in float64, for a tiny frozen teacher and a tiny student
 * (configs/models/tiny_ref_teacher.yaml, tiny_ref_student.yaml) and the
 * files tests/reference/gen_objective_reference.py writes:
 *
 *   objective_tiny_ref.h5   both models, one batch (2 global crops of 32 px
 *                           with iBOT masks, 3 local crops of 16 px, 3
 *                           images), the teacher's bottlenecks and targets,
 *                           each loss term
 *   gradients_tiny_ref.h5   every student gradient of that iteration
 *   adamw_tiny_ref.h5       the parameters and EMA after 3 iterations on the
 *                           batch (AdamW, per-module clipping, EMA)
 *
 * Compared (relative error max|c - ref| / max|ref|, each printed):
 *   teacher bottlenecks, Sinkhorn-Knopp targets      < 1e-4
 *   each loss term and the total                     < 1e-4
 *   every gradient tensor (backbone and heads)       < 1e-3
 *   every parameter and EMA tensor after 3 steps     < 1e-3
 * and each loss term's gradient against finite differences of the C
 * objective itself (fp32, central, along two directions in parameter space).
 * Run from the source root (meson sets workdir).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/random.h"
#include "students/students.h"
#include "tests/students/test_teacher.h"
#include "tests/test.h"

enum { STEPS = 3 };
static const double value_tolerance = 1e-4;      /* losses, targets, bottlenecks */
static const double gradient_tolerance = 1e-3;   /* gradients, parameters */

/* Everything the test holds; reference_free releases what is set. */
typedef struct Reference {
    const NnBackend *be;
    ViTConfig teacher_cfg, student_cfg;
    TensorFile objective, gradients, adamw;
    TestTeacher teacher;
    TeacherPrototypes prototypes;
    Student student;
    StudentWorkspace work;
    ObjectiveConfig objective_config;
    OptimizerConfig optimizer;
    int B, G, L, global_size, local_size, Np;
    float teacher_temperature;
    float lr[STEPS], weight_decay[STEPS], ema_momentum[STEPS];
    float *global_images, *local_images;   /* backend [G*B, 3, S, S], [L*B, 3, s, s] */
    uint8_t *masks;                        /* host [G*B, Np] */
    StudentBatch batch;
    float *host;                           /* [layout count] scratch */
    float *expected;                       /* [layout count] */
} Reference;

static void reference_free(Reference *r) {
    const NnBackend *be = r->be;
    test_teacher_free(&r->teacher, be);
    teacher_prototypes_free(&r->prototypes, be);
    student_free(&r->student, be);
    student_workspace_free(&r->work, be);
    if (r->global_images) be->free(r->global_images);
    if (r->local_images) be->free(r->local_images);
    free(r->masks);
    free(r->host);
    free(r->expected);
    tensor_file_close(&r->objective);
    tensor_file_close(&r->gradients);
    tensor_file_close(&r->adamw);
}

/* ---- reading ---------------------------------------------------------------- */

static double read_scalar(const TensorFile *file, const char *name) {
    float value = NAN;
    DdError err = {{0}};
    const TensorShape scalar = {0, {0}};
    CHECK(tensor_file_read(file, name, &scalar, &value, &err) == 0, "%.900s", err.message);
    return value;
}

/* A whole tensor into a new host buffer; its shape into *shape. */
static float *read_tensor(const TensorFile *file, const char *name, TensorShape *shape) {
    DdError err = {{0}};
    TensorShape found;
    if (tensor_file_shape(file, name, &found, &err) != 0) {
        CHECK(0, "%.900s", err.message);
        return NULL;
    }
    float *data = malloc((size_t)tensor_shape_count(&found) * sizeof(float));
    if (!data || tensor_file_read(file, name, &found, data, &err) != 0) {
        CHECK(0, "%.900s", data ? err.message : "out of memory");
        free(data);
        return NULL;
    }
    if (shape) *shape = found;
    return data;
}

/* A tensor uploaded to a new backend buffer. */
static float *read_to_backend(Reference *r, const char *name) {
    TensorShape shape;
    float *host = read_tensor(&r->objective, name, &shape);
    if (!host) return NULL;
    const size_t bytes = (size_t)tensor_shape_count(&shape) * sizeof(float);
    float *device = r->be->alloc(bytes);
    if (device) r->be->copy_to_device(device, host, bytes);
    free(host);
    return device;
}

/* The architectures the file was made for must be the YAML files'. */
static void check_config(Reference *r, const char *role, const ViTConfig *cfg) {
    const HeadConfig *heads[2] = {&cfg->dino_head, &cfg->ibot_head};
    const char *head_names[2] = {"dino_head", "ibot_head"};
    const struct { const char *field; double yaml; } fields[] = {
        {"patch_size", cfg->patch_size}, {"dim", cfg->dim}, {"depth", cfg->depth},
        {"num_heads", cfg->num_heads}, {"ffn_hidden", cfg->ffn_hidden}, {"ffn_swiglu", cfg->ffn == FFN_SWIGLU},
        {"qkv_bias", cfg->qkv_bias}, {"registers", cfg->registers},
    };
    char name[128];
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        snprintf(name, sizeof name, "config.%s.%s", role, fields[i].field);
        CHECK(read_scalar(&r->objective, name) == fields[i].yaml, "%s: %s is %g in the YAML file", cfg->name,
              name, fields[i].yaml);
    }
    for (int h = 0; h < 2; h++) {
        const int values[4] = {heads[h]->layers, heads[h]->hidden, heads[h]->bottleneck, heads[h]->prototypes};
        const char *keys[4] = {"layers", "hidden", "bottleneck", "prototypes"};
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "config.%s.%s.%s", role, head_names[h], keys[k]);
            CHECK(read_scalar(&r->objective, name) == values[k], "%s: %s is %d in the YAML file", cfg->name,
                  name, values[k]);
        }
    }
}

/* The run settings the reference used. */
static void read_settings(Reference *r) {
    const TensorFile *f = &r->objective;
    r->B = (int)read_scalar(f, "settings.images");
    r->G = (int)read_scalar(f, "settings.global_crops");
    r->L = (int)read_scalar(f, "settings.local_crops");
    r->global_size = (int)read_scalar(f, "settings.global_size");
    r->local_size = (int)read_scalar(f, "settings.local_size");
    r->teacher_temperature = (float)read_scalar(f, "settings.teacher_temperature");
    DdError err = {{0}};
    CHECK(config_set_defaults(&objective_config_schema, &r->objective_config, &err) == 0 &&
              config_set_defaults(&optimizer_config_schema, &r->optimizer, &err) == 0,
          "%s", err.message);
    ObjectiveConfig *o = &r->objective_config;
    o->student_temperature = (float)read_scalar(f, "settings.student_temperature");
    o->sinkhorn_iterations = (int)read_scalar(f, "settings.sinkhorn_iterations");
    o->dino_local_weight = (float)read_scalar(f, "settings.weight.dino_local");
    o->dino_global_weight = (float)read_scalar(f, "settings.weight.dino_global");
    o->ibot_weight = (float)read_scalar(f, "settings.weight.ibot");
    o->koleo_weight = (float)read_scalar(f, "settings.weight.koleo");
    OptimizerConfig *p = &r->optimizer;
    p->beta1 = (float)read_scalar(f, "settings.optimizer.beta1");
    p->beta2 = (float)read_scalar(f, "settings.optimizer.beta2");
    p->eps = (float)read_scalar(f, "settings.optimizer.eps");
    p->layerwise_decay = (float)read_scalar(f, "settings.optimizer.layerwise_decay");
    p->patch_embed_lr_multiplier = (float)read_scalar(f, "settings.optimizer.patch_embed_lr_multiplier");
    p->clip_grad_norm = (float)read_scalar(f, "settings.optimizer.clip_grad_norm");
    const char *step_names[3] = {"settings.step.lr", "settings.step.weight_decay", "settings.step.ema_momentum"};
    float *destinations[3] = {r->lr, r->weight_decay, r->ema_momentum};
    for (int i = 0; i < 3; i++) {
        TensorShape shape;
        float *values = read_tensor(f, step_names[i], &shape);
        if (values && tensor_shape_count(&shape) == STEPS) memcpy(destinations[i], values, sizeof(float) * STEPS);
        CHECK(values && tensor_shape_count(&shape) == STEPS, "%s: expected %d values", step_names[i], STEPS);
        free(values);
    }
}

/* Models, parameters, batch, workspace: everything before the first forward. */
static void load_reference(Reference *r) {
    DdError err = {{0}};
    const NnBackend *be = r->be;
    r->objective.handle = r->gradients.handle = r->adamw.handle = -1;
    CHECK(vit_config_load(&r->teacher_cfg, "configs/models/tiny_ref_teacher.yaml", &err) == 0 &&
              vit_config_load(&r->student_cfg, "configs/models/tiny_ref_student.yaml", &err) == 0 &&
              tensor_file_open(&r->objective, "tests/reference/objective_tiny_ref.h5", &err) == 0 &&
              tensor_file_open(&r->gradients, "tests/reference/gradients_tiny_ref.h5", &err) == 0 &&
              tensor_file_open(&r->adamw, "tests/reference/adamw_tiny_ref.h5", &err) == 0,
          "%.900s", err.message);
    if (test_state.failed_checks) return;
    check_config(r, "teacher", &r->teacher_cfg);
    check_config(r, "student", &r->student_cfg);
    read_settings(r);
    if (test_state.failed_checks) return;

    const int crops = r->G * r->B, side = r->global_size / r->student_cfg.patch_size;
    r->Np = side * side;
    const StudentShape shape = {.images = r->B, .global_count = r->G, .global_size = r->global_size,
                                .local_count = r->L, .local_size = r->local_size, .max_masked = crops * r->Np};
    CHECK(test_teacher_alloc(&r->teacher, &r->teacher_cfg, be, crops, r->global_size, shape.max_masked, &err) == 0 &&
              teacher_prototypes_alloc(&r->prototypes, &r->teacher_cfg, be, &err) == 0 &&
              student_create(&r->student, &r->student_cfg, be, 0, 1, &err) == 0 &&
              student_workspace_alloc(&r->work, &r->student_cfg, &r->teacher_cfg, &shape, &r->objective_config,
                                      be, &err) == 0,
          "%.900s", err.message);
    if (test_state.failed_checks) return;

    /* parameters: the teacher's (and its prototype layers), the student's and its EMA */
    ModelLayout teacher_layout;
    CHECK(model_layout_create(&teacher_layout, &r->teacher_cfg, &err) == 0, "%s", err.message);
    const Student *s = &r->student;
    const size_t most = teacher_layout.count > s->layout.count ? teacher_layout.count : s->layout.count;
    r->host = malloc(most * sizeof(float));
    r->expected = malloc(most * sizeof(float));
    CHECK(r->host && r->expected, "out of memory");
    if (!test_state.failed_checks) {
        CHECK(model_params_read(&r->objective, "teacher.", &teacher_layout, r->host, &err) == 0, "%.900s",
              err.message);
        be->copy_to_device(r->teacher.params.memory, r->host, teacher_layout.count * sizeof(float));
        CHECK(model_params_read(&r->objective, "student.", &s->layout, r->host, &err) == 0, "%.900s", err.message);
        be->copy_to_device(s->params.memory, r->host, s->layout.count * sizeof(float));
        be->copy_to_device(s->shard.ema, r->host, s->layout.count * sizeof(float));
        teacher_prototypes_set(&r->prototypes, be, r->teacher.params.dino_head.prototypes,
                               r->teacher.params.ibot_head.prototypes);
    }
    model_layout_free(&teacher_layout);

    /* the batch */
    TensorShape mask_shape;
    float *mask = read_tensor(&r->objective, "global.mask", &mask_shape);
    r->masks = malloc((size_t)crops * r->Np);
    CHECK(mask && r->masks && tensor_shape_count(&mask_shape) == (int64_t)crops * r->Np, "global.mask");
    for (long i = 0; mask && r->masks && i < (long)crops * r->Np; i++) r->masks[i] = mask[i] != 0.0f;
    free(mask);
    r->global_images = read_to_backend(r, "global.images");
    r->local_images = read_to_backend(r, "local.images");
    r->batch = (StudentBatch){.global_crops = r->global_images, .local_crops = r->local_images, .masks = r->masks,
                              .global_rope_rescale = (float)read_scalar(&r->objective, "global.rope_rescale"),
                              .local_rope_rescale = (float)read_scalar(&r->objective, "local.rope_rescale")};
}

/* ---- comparisons ---------------------------------------------------------------- */

/* A backend tensor of count values against the file's. */
static double compare_with_file(Reference *r, const TensorFile *file, const char *name, const float *device,
                                long count, double tolerance) {
    TensorShape shape;
    float *expected = read_tensor(file, name, &shape);
    if (!expected) return INFINITY;
    float *found = malloc((size_t)count * sizeof(float));
    r->be->copy_to_host(found, device, (size_t)count * sizeof(float));
    const double error = tensor_shape_count(&shape) == count ? test_relative_error_ff(found, expected, count)
                                                            : INFINITY;
    printf("  %-44s rel err %.2e%s\n", name, error, error < tolerance ? "" : "  <-- too large");
    CHECK(error < tolerance, "%s: relative error %.3g (%lld values in the file, %ld here), expected < %g", name,
          error, (long long)tensor_shape_count(&shape), count, tolerance);
    free(found);
    free(expected);
    return error;
}

/* Every tensor of a student buffer (backend) against prefix.<name> of a file;
 * returns the worst error and prints each. */
static double compare_model(Reference *r, const TensorFile *file, const char *prefix, const float *device,
                            double tolerance) {
    const ModelLayout *layout = &r->student.layout;
    DdError err = {{0}};
    r->be->copy_to_host(r->host, device, layout->count * sizeof(float));
    if (model_params_read(file, prefix, layout, r->expected, &err) != 0) {
        CHECK(0, "%.900s", err.message);
        return INFINITY;
    }
    double worst = 0.0;
    for (int i = 0; i < layout->tensor_count; i++) {
        const ViTTensorInfo *t = &layout->tensors[i].info;
        const double error = test_relative_error_ff(r->host + t->offset, r->expected + t->offset, (long)t->count);
        worst = fmax(worst, error);
        printf("  %s%-*s rel err %.2e%s\n", prefix, (int)(44 - strlen(prefix)), t->name, error,
               error < tolerance ? "" : "  <-- too large");
        CHECK(error < tolerance, "%s%s: relative error %.3g, expected < %g", prefix, t->name, error, tolerance);
    }
    return worst;
}

static void check_term(const char *name, double found, double expected, double *worst) {
    const double error = fabs(found - expected) / fmax(fabs(expected), 1e-30);
    *worst = fmax(*worst, error);
    printf("  loss.%-39s rel err %.2e  (%.7f vs %.7f)\n", name, error, found, expected);
    CHECK(error < value_tolerance, "loss %s: %.8g, PyTorch %.8g: relative error %.3g", name, found, expected, error);
}

/* ---- the steps -------------------------------------------------------------------- */

/* The teacher's side and one forward/backward of the student. */
static int run_iteration(Reference *r, int backward, LossTerms *losses) {
    DdError err = {{0}};
    const int M = test_teacher_forward(&r->teacher, r->be, r->global_images, r->masks);
    CHECK(M >= 0, "more masked patches than the teacher holds");
    r->batch.teacher_dino = r->teacher.dino.features;
    r->batch.teacher_ibot = r->teacher.ibot.features;
    const StudentGroup group = STUDENT_GROUP_SINGLE_PROCESS;
    const int status = student_forward_backward(r->be, &r->student, &r->work, &r->prototypes, &r->batch,
                                                r->teacher_temperature, &group, backward, losses, &err);
    CHECK(status == 0, "%.900s", err.message);
    return status;
}

static void objective_and_three_adamw_steps_match_pytorch(void) {
    Reference r = {.be = &nn_cpu_backend};
    load_reference(&r);
    LossTerms losses;
    if (test_state.failed_checks || run_iteration(&r, 1, &losses) != 0) {
        reference_free(&r);
        return;
    }
    const int crops = r.G * r.B, M = r.work.masked;
    printf("  teacher '%s', student '%s': %d images, %d global + %d local crops, %d masked patches\n",
           r.teacher_cfg.name, r.student_cfg.name, r.B, r.G, r.L, M);
    double worst_value = 0.0, worst_gradient, worst_after, worst_ema;
    worst_value = fmax(worst_value, compare_with_file(&r, &r.objective, "teacher.dino_features",
                                                      r.teacher.dino.features,
                                                      (long)crops * r.teacher_cfg.dino_head.bottleneck,
                                                      value_tolerance));
    worst_value = fmax(worst_value, compare_with_file(&r, &r.objective, "teacher.ibot_features",
                                                      r.teacher.ibot.features,
                                                      (long)M * r.teacher_cfg.ibot_head.bottleneck, value_tolerance));
    worst_value = fmax(worst_value, compare_with_file(&r, &r.objective, "targets.dino", r.work.dino_targets,
                                                      (long)crops * r.work.prototypes_dino, value_tolerance));
    worst_value = fmax(worst_value, compare_with_file(&r, &r.objective, "targets.ibot", r.work.ibot_targets,
                                                      (long)M * r.work.prototypes_ibot, value_tolerance));
    check_term("dino_local", losses.dino_local, read_scalar(&r.objective, "loss.dino_local"), &worst_value);
    check_term("dino_global", losses.dino_global, read_scalar(&r.objective, "loss.dino_global"), &worst_value);
    check_term("ibot", losses.ibot, read_scalar(&r.objective, "loss.ibot"), &worst_value);
    check_term("koleo", losses.koleo, read_scalar(&r.objective, "loss.koleo"), &worst_value);
    check_term("total", losses.total, read_scalar(&r.objective, "loss.total"), &worst_value);
    worst_gradient = compare_model(&r, &r.gradients, "grad.", r.student.grads.memory, gradient_tolerance);

    /* three iterations on the batch: update, forward, backward */
    TensorShape shape;
    float *loss_per_step = read_tensor(&r.adamw, "loss.per_step", &shape);
    float *norm_per_step = read_tensor(&r.adamw, "grad_norm.per_step", &shape);   /* [STEPS, modules] */
    const StudentGroup group = STUDENT_GROUP_SINGLE_PROCESS;
    for (int step = 0; step < STEPS && loss_per_step && norm_per_step && !test_state.failed_checks; step++) {
        if (step > 0 && run_iteration(&r, 1, &losses) != 0) break;
        UpdateReport report;
        DdError err = {{0}};
        CHECK(student_update(r.be, &r.student, &r.optimizer, r.lr[step], r.weight_decay[step], r.ema_momentum[step],
                             &group, &report, &err) == 0, "%.900s", err.message);
        printf("  step %d: loss %.7f (PyTorch %.7f); module norms", step + 1, losses.total, loss_per_step[step]);
        for (int m = 0; m < MODULE_COUNT; m++) {
            const double expected = norm_per_step[step * MODULE_COUNT + m];
            printf(" %s %.5f (%.5f)%s", model_module_names[m], report.grad_norm[m], expected,
                   report.clip_scale[m] < 1.0 ? " clipped" : "");
            CHECK(fabs(report.grad_norm[m] - expected) < gradient_tolerance * expected, "step %d, %s: norm %.7g vs %.7g",
                  step + 1, model_module_names[m], report.grad_norm[m], expected);
        }
        printf("\n");
        CHECK(fabs(losses.total - loss_per_step[step]) < value_tolerance * fabs(loss_per_step[step]),
              "step %d: loss %.8g vs %.8g", step + 1, losses.total, loss_per_step[step]);
    }
    free(loss_per_step);
    free(norm_per_step);
    worst_after = compare_model(&r, &r.adamw, "after.", r.student.params.memory, gradient_tolerance);
    worst_ema = compare_model(&r, &r.adamw, "ema.", r.student.shard.ema, gradient_tolerance);
    printf("  worst relative errors: targets and losses %.2e, gradients %.2e, parameters after 3 steps %.2e, "
           "EMA %.2e\n", worst_value, worst_gradient, worst_after, worst_ema);
    reference_free(&r);
}

/* ---- finite differences of each loss term --------------------------------------- */

/* The term alone: every other coefficient 0. */
static LossWeights only(const char *term) {
    LossWeights w = {0};
    if (!strcmp(term, "dino_local")) w.dino_local = 1.0;
    if (!strcmp(term, "dino_global")) w.dino_global = 1.0;
    if (!strcmp(term, "ibot")) w.ibot = 1.0;
    if (!strcmp(term, "koleo")) w.koleo = 1.0;
    return w;
}

/* The total at params0 + h * direction (host buffers of the layout). */
static double loss_at(Reference *r, const float *params0, const double *direction, double h, float *scratch) {
    const size_t count = r->student.layout.count;
    for (size_t i = 0; i < count; i++) scratch[i] = (float)(params0[i] + h * direction[i]);
    r->be->copy_to_device(r->student.params.memory, scratch, count * sizeof(float));
    LossTerms losses = {0};
    run_iteration(r, 0, &losses);
    return losses.total;
}

static void each_loss_term_matches_finite_differences(void) {
    Reference r = {.be = &nn_cpu_backend};
    load_reference(&r);
    if (test_state.failed_checks) {
        reference_free(&r);
        return;
    }
    const size_t count = r.student.layout.count;
    float *params0 = malloc(count * sizeof(float)), *scratch = malloc(count * sizeof(float));
    float *gradient = malloc(count * sizeof(float));
    double *direction = malloc(count * sizeof(double));
    r.be->copy_to_host(params0, r.student.params.memory, count * sizeof(float));
    const char *terms[] = {"dino_local", "dino_global", "ibot", "koleo"};
    /* fp32 losses of ~5 carry ~1e-6 of rounding; h = 2e-3 along a unit
     * direction makes that ~3e-4 of a slope of ~1, far above h^2 */
    const double h = 2e-3, tolerance = 1e-2;
    for (int t = 0; t < 4; t++) {
        r.work.weights = only(terms[t]);
        LossTerms losses;
        r.be->copy_to_device(r.student.params.memory, params0, count * sizeof(float));
        if (run_iteration(&r, 1, &losses) != 0) break;
        r.be->copy_to_host(gradient, r.student.grads.memory, count * sizeof(float));
        double norm = 0.0;
        for (size_t i = 0; i < count; i++) norm += (double)gradient[i] * gradient[i];
        norm = sqrt(norm);
        /* two directions: the gradient's, and half of it mixed with a random one */
        DdRandom rng = dd_random_seed(99, (uint64_t)t);
        for (int d = 0; d < 2; d++) {
            double length = 0.0;
            for (size_t i = 0; i < count; i++) {
                direction[i] = gradient[i] / norm + (d ? dd_random_normal(&rng) / sqrt((double)count) : 0.0);
                length += direction[i] * direction[i];
            }
            double analytic = 0.0;
            for (size_t i = 0; i < count; i++) {
                direction[i] /= sqrt(length);
                analytic += gradient[i] * direction[i];
            }
            const double numeric = (loss_at(&r, params0, direction, h, scratch) -
                                    loss_at(&r, params0, direction, -h, scratch)) / (2 * h);
            const double error = fabs(numeric - analytic) / fabs(analytic);
            printf("  %-12s along %-28s slope %.6f, finite differences %.6f: rel err %.2e\n", terms[t],
                   d ? "the gradient + a random one" : "the gradient", analytic, numeric, error);
            CHECK(error < tolerance, "%s: slope %.7g, finite differences %.7g", terms[t], analytic, numeric);
        }
    }
    free(params0);
    free(scratch);
    free(gradient);
    free(direction);
    reference_free(&r);
}

TEST_MAIN(TEST(objective_and_three_adamw_steps_match_pytorch), TEST(each_loss_term_matches_finite_differences))
