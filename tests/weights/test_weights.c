/*
 * test_weights.c - `distill import` and `distill export` against PyTorch.
 *
 * gen_weights.py wrote, from one set of random weights per tiny model, the
 * same model in Hugging Face names (a folder; tiny_ref_swiglu as two BF16
 * shards) and in the original DINOv3 names (F32; F16), and the float64
 * PyTorch forward of one batch with and without an iBOT mask
 * (NAME_expected.h5). This test
 *   - imports each file, runs the C forward and compares (relative error
 *     < 1e-4, each printed), and checks that both namings give bit-identical
 *     parameters;
 *   - imports the heads file (DINOv3 names under "teacher.");
 *   - refuses files that do not fit the model YAML, naming the tensor and
 *     both shapes;
 *   - builds a run folder (config.yaml + a checkpoint whose student file
 *     holds params., ema., adam_m., adam_v.), exports the EMA, and checks
 *     the exported model.safetensors holds exactly the tensors of the
 *     PyTorch-written file (names, shapes, every bit), that config.json
 *     matches the one the script wrote, and that the exported folder
 *     imports back to the PyTorch output.
 * Run from the source root (meson sets workdir).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/backend.h"
#include "nn/checkpoint.h"
#include "nn/json.h"
#include "nn/safetensors_set.h"
#include "nn/tensor_file.h"
#include "nn/vit.h"
#include "nn/weights_export.h"
#include "nn/weights_import.h"
#include "students/students.h"
#include "tests/test.h"
#include "tests/weights/scratch.h"
#include "tools/run_config.h"
#include "tools/student_export.h"

static const double output_tolerance = 1e-4;

/* One tiny model and its files. */
typedef struct ModelFiles {
    const char *yaml;
    const char *hf;             /* folder */
    const char *original;
    const char *expected;
} ModelFiles;

static const ModelFiles tiny_ref = {"configs/models/tiny_ref.yaml", "tests/weights/tiny_ref_hf",
                                    "tests/weights/tiny_ref_original.safetensors",
                                    "tests/weights/tiny_ref_expected.h5"};
static const ModelFiles tiny_ref_swiglu = {"configs/models/tiny_ref_swiglu.yaml", "tests/weights/tiny_ref_swiglu_hf",
                                           "tests/weights/tiny_ref_swiglu_original.safetensors",
                                           "tests/weights/tiny_ref_swiglu_expected.h5"};

/* ---- helpers ---------------------------------------------------------------------------- */

static ViTConfig load_model(const char *yaml) {
    ViTConfig cfg;
    DdError err = {{0}};
    memset(&cfg, 0, sizeof cfg);
    CHECK(vit_config_load(&cfg, yaml, &err) == 0, "%.900s", err.message);
    return cfg;
}

/* Imports source (and heads) into a scratch file; returns its path or NULL. */
static const char *import_into(const char *source, const char *heads, const ViTConfig *cfg, const char *name) {
    const char *output = scratch_path(name);
    WeightsImport job = {.source = source, .heads = heads, .output = output, .model = cfg, .log = stdout};
    DdError err = {{0}};
    CHECK(weights_import(&job, &err) == 0, "import %s: %.900s", source, err.message);
    return test_state.failed_checks ? NULL : output;
}

/* The backbone of an HDF5 weights file into a new host buffer. */
static float *read_params(const char *path, const ViTConfig *cfg) {
    float *memory = malloc(vit_tensor_layout(cfg, NULL) * sizeof(float));
    ViTParams view = {0};
    DdError err = {{0}};
    CHECK(memory && vit_params_view(&view, cfg, memory, &err) == 0 && vit_params_load(path, cfg, &view, &err) == 0,
          "%.900s", err.message);
    free(view.blocks);
    return memory;
}

/* A tensor of the expected file into a new buffer. */
static float *read_expected(const TensorFile *file, const char *name, TensorShape *shape) {
    DdError err = {{0}};
    CHECK(tensor_file_shape(file, name, shape, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return NULL;
    float *data = malloc((size_t)tensor_shape_count(shape) * sizeof(float));
    CHECK(data && tensor_file_read(file, name, shape, data, &err) == 0, "%.900s", err.message);
    return data;
}

/* The C forward of host parameters on the expected file's batch, with and
 * without its mask, against PyTorch's outputs. */
static void check_forward(const ViTConfig *cfg, const float *host_params, const char *expected_path, const char *what) {
    const NnBackend *be = &nn_cpu_backend;
    TensorFile file;
    DdError err = {{0}};
    CHECK(tensor_file_open(&file, expected_path, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return;
    TensorShape image_shape, mask_shape, out_shape;
    float *images = read_expected(&file, "images", &image_shape);
    float *mask_values = read_expected(&file, "mask", &mask_shape);
    float *outputs[2] = {read_expected(&file, "output", &out_shape), read_expected(&file, "output_masked", &out_shape)};
    tensor_file_close(&file);
    ViTParams params = {0};
    ViTActivations act = {0};
    const int B = (int)image_shape.dims[0], H = (int)image_shape.dims[2], W = (int)image_shape.dims[3];
    const size_t out_count = (size_t)tensor_shape_count(&out_shape);
    const size_t mask_count = (size_t)tensor_shape_count(&mask_shape);
    float *out = malloc(out_count * sizeof(float));
    uint8_t *mask = malloc(mask_count);
    float *device_images = NULL;
    uint8_t *device_mask = NULL;
    if (!test_state.failed_checks && out && mask) {
        for (size_t i = 0; i < mask_count; i++) mask[i] = mask_values[i] != 0.0f;
        CHECK(vit_params_alloc(&params, cfg, be, &err) == 0, "%.900s", err.message);
        CHECK(vit_activations_alloc(&act, cfg, be, B, H, W, 0, &err) == 0, "%.900s", err.message);
    }
    if (!test_state.failed_checks) {
        size_t image_bytes = (size_t)tensor_shape_count(&image_shape) * sizeof(float);
        be->copy_to_device(params.memory, host_params, params.count * sizeof(float));
        device_images = be->alloc(image_bytes);
        device_mask = be->alloc(mask_count);
        be->copy_to_device(device_images, images, image_bytes);
        be->copy_to_device(device_mask, mask, mask_count);
        vit_set_rope(&act, cfg, be, 1.0f);
        for (int masked = 0; masked < 2; masked++) {
            vit_forward(be, cfg, &params, &act, device_images, masked ? device_mask : NULL);
            be->synchronize();
            be->copy_to_host(out, act.out, out_count * sizeof(float));
            double error = test_relative_error_ff(out, outputs[masked], (long)out_count);
            printf("  %-44s %-14s rel err %.2e (fp32 C vs float64 PyTorch)\n", what, masked ? "masked" : "unmasked",
                   error);
            CHECK(error < output_tolerance, "%s: %s output: relative error %.3g, expected < %g", what,
                  masked ? "masked" : "unmasked", error, output_tolerance);
        }
    }
    if (device_images) be->free(device_images);
    if (device_mask) be->free(device_mask);
    vit_activations_free(&act, be);
    vit_params_free(&params, be);
    free(images);
    free(mask_values);
    free(outputs[0]);
    free(outputs[1]);
    free(out);
    free(mask);
}

/* Imports both namings of a model: each forward agrees with PyTorch, and
 * both give the same parameters to the bit. */
static void check_both_namings(const ModelFiles *files) {
    ViTConfig cfg = load_model(files->yaml);
    if (test_state.failed_checks) return;
    const char *from_hf = import_into(files->hf, NULL, &cfg, "from_hf.h5");
    const char *from_original = import_into(files->original, NULL, &cfg, "from_original.h5");
    if (test_state.failed_checks) return;
    float *hf = read_params(from_hf, &cfg), *original = read_params(from_original, &cfg);
    if (!test_state.failed_checks) {
        size_t count = vit_tensor_layout(&cfg, NULL);
        CHECK(memcmp(hf, original, count * sizeof(float)) == 0, "model '%s': the two namings import to different values",
              cfg.name);
        check_forward(&cfg, hf, files->expected, files->hf);
        check_forward(&cfg, original, files->expected, files->original);
        TensorFile file;
        DdError err = {{0}};
        CHECK(tensor_file_open(&file, from_hf, &err) == 0 && teacher_file_has_heads(&file, &err) == 0,
              "imported without heads, the file says so: %.900s", err.message);
        tensor_file_close(&file);
    }
    free(hf);
    free(original);
}

/* ---- import ---------------------------------------------------------------------------------- */

static void hf_and_original_names_import_to_the_pytorch_forward(void) {
    check_both_namings(&tiny_ref);
}

static void sharded_bf16_and_f16_files_import_to_the_pytorch_forward(void) {
    check_both_namings(&tiny_ref_swiglu);
    ViTConfig cfg = load_model(tiny_ref_swiglu.yaml);
    const char *through_index = import_into("tests/weights/tiny_ref_swiglu_hf/model.safetensors.index.json", NULL, &cfg,
                                            "from_index.h5");
    if (through_index) {
        float *params = read_params(through_index, &cfg);
        if (!test_state.failed_checks) check_forward(&cfg, params, tiny_ref_swiglu.expected, "through the index");
        free(params);
    }
}

static void heads_import_from_their_own_file(void) {
    ViTConfig cfg = load_model(tiny_ref.yaml);
    const char *output = import_into(tiny_ref.hf, "tests/weights/tiny_ref_heads.safetensors", &cfg, "with_heads.h5");
    if (!output) return;
    TensorFile out;
    SafetensorsSet heads;
    DdError err = {{0}};
    CHECK(tensor_file_open(&out, output, &err) == 0, "%.900s", err.message);
    CHECK(safetensors_set_open(&heads, "tests/weights/tiny_ref_heads.safetensors", &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return;
    CHECK(teacher_file_has_heads(&out, &err) == 1, "the file says it holds heads");
    const struct { const char *name; const HeadConfig *head; } both[2] = {{"dino_head", &cfg.dino_head},
                                                                            {"ibot_head", &cfg.ibot_head}};
    for (int h = 0; h < 2; h++) {
        HeadTensorInfo info[64];
        int n = head_tensor_count(both[h].head);
        head_tensor_layout(both[h].name, both[h].head, cfg.dim, info);
        for (int i = 0; i < n; i++) {
            size_t count = info[i].count;
            float *stored = malloc(count * sizeof(float)), *source = malloc(count * sizeof(float));
            char source_name[TENSOR_NAME_MAX + 16];
            snprintf(source_name, sizeof source_name, "teacher.%.200s", info[i].original_name);
            CHECK(tensor_file_read(&out, info[i].name, &info[i].shape, stored, &err) == 0, "%.900s", err.message);
            CHECK(safetensors_set_read(&heads, source_name, &info[i].shape, source, &err) == 0, "%.900s", err.message);
            CHECK(memcmp(stored, source, count * sizeof(float)) == 0, "%.200s differs from %.220s", info[i].name,
                  source_name);
            free(stored);
            free(source);
        }
    }
    CHECK(tensor_file_contains(&out, "dino_head.mlp.2.weight") && !tensor_file_contains(&out, "dino_head.mlp.3.weight") &&
          tensor_file_contains(&out, "ibot_head.prototypes.weight"), "three layers mlp.0-2, then the prototypes");

    /* The file reads as the teacher reads it: every tensor of the students'
     * model layout (backbone and both heads), by name and shape. */
    ModelLayout layout;
    CHECK(model_layout_create(&layout, &cfg, &err) == 0, "%.900s", err.message);
    if (!test_state.failed_checks) {
        float *host = malloc(layout.count * sizeof(float));
        CHECK(host && model_params_read(&out, "", &layout, host, &err) == 0, "teacher layout: %.900s", err.message);
        free(host);
        model_layout_free(&layout);
    }
    tensor_file_close(&out);
    safetensors_set_close(&heads);
}

/* ---- files that do not fit ------------------------------------------------------------------- */

/* All tensors of a set, decoded to fp32, as NamedTensors to edit and write. */
typedef struct LoadedTensors {
    NamedTensor tensors[128];
    char names[128][TENSOR_NAME_MAX];
    float *data[128];
    int count;
} LoadedTensors;

static void load_all(LoadedTensors *all, const char *path) {
    SafetensorsSet set;
    DdError err = {{0}};
    memset(all, 0, sizeof *all);
    CHECK(safetensors_set_open(&set, path, &err) == 0 && set.count <= 120, "%.900s", err.message);
    if (test_state.failed_checks) return;
    for (int i = 0; i < set.count; i++) {
        const SafetensorsEntry *e = &set.entries[i];
        snprintf(all->names[i], TENSOR_NAME_MAX, "%s", e->tensor->name);
        all->data[i] = malloc(((size_t)tensor_shape_count(&e->tensor->shape) + 1) * sizeof(float));
        CHECK(all->data[i] && safetensors_read_tensor(e->file, e->tensor, all->data[i], &err) == 0, "%.900s", err.message);
        all->tensors[i] = (NamedTensor){all->names[i], e->tensor->shape, all->data[i]};
    }
    all->count = set.count;
    safetensors_set_close(&set);
}

static void free_all(LoadedTensors *all) {
    for (int i = 0; i < 128; i++) free(all->data[i]);
}

static NamedTensor *find_loaded(LoadedTensors *all, const char *name) {
    for (int i = 0; i < all->count; i++)
        if (strcmp(all->names[i], name) == 0) return &all->tensors[i];
    return NULL;
}

/* Imports the tensors (written to a scratch file) with the model; expects
 * a failure whose message holds each of the phrases. */
static void expect_import_failure(LoadedTensors *all, const ViTConfig *cfg, const char *what, const char *phrase1,
                                  const char *phrase2) {
    const char *path = scratch_path("edited.safetensors");
    DdError err = {{0}};
    CHECK(safetensors_write(path, all->tensors, all->count, SAFETENSORS_F32, &err) == 0, "%.900s", err.message);
    WeightsImport job = {.source = path, .output = scratch_path("edited.h5"), .model = cfg};
    int status = weights_import(&job, &err);
    CHECK(status != 0, "%s: expected the import to fail", what);
    CHECK(status == 0 || (strstr(err.message, phrase1) && (!phrase2 || strstr(err.message, phrase2))),
          "%s: expected \"%s\"%s%s, found \"%.700s\"", what, phrase1, phrase2 ? " and " : "", phrase2 ? phrase2 : "",
          err.message);
    if (status != 0) printf("  %-28s -> %.300s\n", what, err.message);
}

static void files_that_do_not_fit_the_yaml_are_refused(void) {
    ViTConfig cfg = load_model(tiny_ref.yaml), swiglu = load_model(tiny_ref_swiglu.yaml);
    LoadedTensors all;
    if (test_state.failed_checks) return;

    load_all(&all, "tests/weights/tiny_ref_hf/model.safetensors");
    expect_import_failure(&all, &swiglu, "another model's YAML", "'layer.0.mlp.gate_proj.weight' of shape [48, 32] is missing",
                          NULL);
    NamedTensor *t = find_loaded(&all, "layer.1.mlp.up_proj.weight");
    t->shape = (TensorShape){2, {32, 64}};
    expect_import_failure(&all, &cfg, "a transposed matrix", "tensor 'layer.1.mlp.up_proj.weight': expected shape [64, 32], found [32, 64]",
                          NULL);
    t->shape = (TensorShape){2, {64, 32}};
    t = find_loaded(&all, "embeddings.cls_token");
    t->shape = (TensorShape){1, {32}};
    expect_import_failure(&all, &cfg, "a token without [1, 1, D]", "'embeddings.cls_token': expected shape [1, 1, 32], found [32]",
                          NULL);
    t->shape = (TensorShape){3, {1, 1, 32}};
    all.tensors[all.count] = (NamedTensor){"layer.0.attention.k_proj.bias", {1, {32}}, all.data[0]};
    all.count++;
    expect_import_failure(&all, &cfg, "a non-zero key bias", "'layer.0.attention.k_proj.bias': expected zeros", NULL);
    all.tensors[all.count - 1] = (NamedTensor){"layer.2.norm1.weight", {1, {32}}, all.data[0]};
    expect_import_failure(&all, &cfg, "a third layer", "found 1 more: 'layer.2.norm1.weight'", NULL);
    all.count--;
    for (int i = 0; i < all.count; i++)
        if (strcmp(all.names[i], "embeddings.patch_embeddings.weight") == 0) snprintf(all.names[i], TENSOR_NAME_MAX, "patch");
    expect_import_failure(&all, &cfg, "no patch embedding", "found neither", "'embeddings.patch_embeddings.weight'");
    free_all(&all);

    load_all(&all, tiny_ref.original);
    for (int i = 0; i < all.count; i++)
        if (strcmp(all.names[i], "blocks.1.ls2.gamma") == 0) snprintf(all.names[i], TENSOR_NAME_MAX, "blocks.1.ls2.scale");
    expect_import_failure(&all, &cfg, "a missing original tensor", "'blocks.1.ls2.gamma' of shape [32] is missing", NULL);
    free_all(&all);

    ViTConfig other_base = cfg;
    other_base.rope_base = 1000.0f;
    load_all(&all, tiny_ref.original);
    expect_import_failure(&all, &other_base, "RoPE of another base", "'rope_embed.periods': expected RoPE periods of base 1000",
                          "base 100");
    free_all(&all);
}

/* A training checkpoint: original names under "teacher.backbone.", a
 * training-only norm, and perhaps a second model beside it. */
static void prefixed_names_are_found_or_chosen(void) {
    ViTConfig cfg = load_model(tiny_ref.yaml);
    LoadedTensors all;
    load_all(&all, tiny_ref.original);
    if (test_state.failed_checks) return;
    for (int i = 0; i < all.count; i++) {
        char name[TENSOR_NAME_MAX];
        snprintf(name, sizeof name, "teacher.backbone.%.200s", all.names[i]);
        memcpy(all.names[i], name, sizeof name);
    }
    int n = all.count;
    all.tensors[n] = (NamedTensor){"teacher.backbone.local_cls_norm.weight", {1, {32}}, all.data[0]};
    all.count = n + 1;
    const char *path = scratch_path("prefixed.safetensors");
    DdError err = {{0}};
    CHECK(safetensors_write(path, all.tensors, all.count, SAFETENSORS_F32, &err) == 0, "%.900s", err.message);
    const char *found = import_into(path, NULL, &cfg, "prefixed.h5");
    const char *reference = import_into(tiny_ref.hf, NULL, &cfg, "unprefixed.h5");
    if (found && reference) {
        float *a = read_params(found, &cfg), *b = read_params(reference, &cfg);
        CHECK(a && b && memcmp(a, b, vit_tensor_layout(&cfg, NULL) * sizeof(float)) == 0, "the same weights");
        free(a);
        free(b);
    }
    const NamedTensor *patch = find_loaded(&all, "teacher.backbone.patch_embed.proj.weight");
    all.tensors[all.count++] = (NamedTensor){"student.backbone.patch_embed.proj.weight", patch->shape, patch->data};
    CHECK(safetensors_write(path, all.tensors, all.count, SAFETENSORS_F32, &err) == 0, "%.900s", err.message);
    WeightsImport job = {.source = path, .output = scratch_path("two.h5"), .model = &cfg};
    CHECK(weights_import(&job, &err) != 0 && strstr(err.message, "two prefixes") && strstr(err.message, "--prefix"),
          "two models: %.900s", err.message);
    job.prefix = "teacher.backbone.";
    CHECK(weights_import(&job, &err) == 0, "with --prefix: %.900s", err.message);
    free_all(&all);
}

/* ---- export ---------------------------------------------------------------------------------- */

/* RUN_DIR with config.yaml (teacher and student 's' of the model, every
 * other field at its default) and one checkpoint whose student file holds
 * params. (not the EMA), ema. (the weights of host_ema), adam_m., adam_v.,
 * each with the heads, as the service writes it. The run file goes through
 * run_config_load and config_write, as `distill run` writes it. */
static const char *make_run(const char *name, const char *yaml, const float *host_ema, int corrupt_key_bias) {
    const char *run_dir = scratch_path(name);
    char command[1200], path[1200], cwd[512], text[2048];
    snprintf(command, sizeof command, "rm -rf '%s' && mkdir -p '%s'", run_dir, run_dir);
    CHECK(system(command) == 0 && getcwd(cwd, sizeof cwd), "%s", command);
    snprintf(text, sizeof text,
             "name: export_test\niterations: 10\nglobal_batch: 2\ncrops: {global_size: 64, local_size: 32}\n"
             "teacher: {model: %s/%s}\nstudents:\n  - name: s\n    model: %s/%s\n", cwd, yaml, cwd, yaml);
    snprintf(path, sizeof path, "%s/run_source.yaml", run_dir);
    CHECK(write_bytes(path, text, strlen(text)) == 0, "%s", path);
    RunConfig *run = calloc(1, sizeof *run);
    DdError err = {{0}};
    CHECK(run && run_config_load(run, path, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) {
        free(run);
        return NULL;
    }
    snprintf(path, sizeof path, "%s/config.yaml", run_dir);
    FILE *f = fopen(path, "w");
    CHECK(f && config_write(f, &run_config_schema, run, &err) == 0, "%.900s", err.message);
    if (f) fclose(f);

    /* The student's state as the service writes it (student_state_save):
     * the students' model layout (backbone, then both heads) per prefix. */
    const ViTConfig *cfg = &run->students[0].model;
    ModelLayout layout;
    CHECK(model_layout_create(&layout, cfg, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) {
        free(run);
        return NULL;
    }
    size_t backbone = vit_tensor_layout(cfg, NULL);
    float *other = malloc(layout.count * sizeof(float)), *ema = malloc(layout.count * sizeof(float));
    for (size_t i = 0; i < layout.count; i++) other[i] = ema[i] = 0.25f;
    memcpy(ema, host_ema, backbone * sizeof(float));
    if (corrupt_key_bias) {
        ViTParams view = {0};
        CHECK(vit_params_view(&view, cfg, ema, &err) == 0, "%.900s", err.message);
        if (view.blocks) view.blocks[0].qkv_b[cfg->dim + 3] = 0.5f;
        free(view.blocks);
    }
    const char *prefixes[4] = {"params.", "ema.", "adam_m.", "adam_v."};
    CheckpointWriter writer;
    TensorFileWriter state;
    CHECK(checkpoint_begin(&writer, run_dir, 7, &err) == 0, "%.900s", err.message);
    CHECK(checkpoint_file_path(&writer, "student_s.h5", path, sizeof path, &err) == 0, "%.900s", err.message);
    CHECK(tensor_writer_open(&state, path, &err) == 0, "%.900s", err.message);
    for (int v = 0; v < 4 && !test_state.failed_checks; v++)
        CHECK(model_params_write(&state, prefixes[v], &layout, v == 1 ? ema : other, &err) == 0, "%.900s",
              err.message);
    CHECK(tensor_writer_commit(&state, &err) == 0, "%.900s", err.message);
    CHECK(checkpoint_commit(&writer, 2, &err) == 0, "%.900s", err.message);
    model_layout_free(&layout);
    free(other);
    free(ema);
    free(run);
    return run_dir;
}

/* Every tensor of the exported file equals the PyTorch-written one: the
 * same names, shapes and values (the exported file is F32; the reference
 * may be BF16, whose values are F32-exact). */
static void check_same_tensors(const char *exported, const char *reference) {
    SafetensorsSet a, b;
    DdError err = {{0}};
    CHECK(safetensors_set_open(&a, exported, &err) == 0, "%.900s", err.message);
    CHECK(safetensors_set_open(&b, reference, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return;
    CHECK(a.count == b.count, "%d tensors exported, %d in the PyTorch file", a.count, b.count);
    for (int i = 0; i < a.count && i < b.count; i++) {
        const SafetensorsTensor *x = a.entries[i].tensor, *y = b.entries[i].tensor;
        CHECK(strcmp(x->name, y->name) == 0, "tensor %d: exported '%s', PyTorch '%s'", i, x->name, y->name);
        CHECK(tensor_shape_equal(&x->shape, &y->shape), "'%s': shapes differ", x->name);
        CHECK(x->dtype == SAFETENSORS_F32, "'%s' exported as %s", x->name, safetensors_dtype_name(x->dtype));
        if (test_state.failed_checks) break;
        size_t n = (size_t)tensor_shape_count(&x->shape);
        float *u = malloc(n * sizeof(float) + 4), *v = malloc(n * sizeof(float) + 4);
        CHECK(safetensors_read_tensor(a.entries[i].file, x, u, &err) == 0 &&
              safetensors_read_tensor(b.entries[i].file, y, v, &err) == 0, "%.900s", err.message);
        CHECK(memcmp(u, v, n * sizeof(float)) == 0, "'%s': values differ", x->name);
        free(u);
        free(v);
    }
    safetensors_set_close(&a);
    safetensors_set_close(&b);
}

/* Reads a flat JSON object of scalars and string arrays into key/value texts
 * (numbers normalised through double, with their JSON type). */
typedef struct ConfigValues {
    char keys[64][64];
    char values[64][128];
    int count;
} ConfigValues;

static void read_config_json(const char *path, ConfigValues *out) {
    size_t size = 0;
    uint8_t *text = read_bytes(path, &size);
    CHECK(text != NULL, "%s: cannot read", path);
    if (!text) return;
    JsonCursor json;
    DdError err = {{0}};
    json_cursor_init(&json, (const char *)text, size, path);
    memset(out, 0, sizeof *out);
    int more = json_object_begin(&json, &err) == 0 ? 1 : -1;
    while (more == 1 && out->count < 64 &&
           (more = json_object_next(&json, out->keys[out->count], sizeof out->keys[0], &err)) == 1) {
        char *value = out->values[out->count++];
        double number;
        int flag;
        switch (json_peek(&json)) {
        case JSON_NUMBER: {   /* value and type: Python reads 100 as int, 100.0 as float */
            size_t start = json.position;
            json_read_double(&json, &number, &err);
            int is_float = memchr(json.text + start, '.', json.position - start) ||
                           memchr(json.text + start, 'e', json.position - start) ||
                           memchr(json.text + start, 'E', json.position - start);
            snprintf(value, 128, "%.6g (%s)", number, is_float ? "float" : "int");
            break;
        }
        case JSON_BOOL:
            json_read_bool(&json, &flag, &err);
            snprintf(value, 128, "%s", flag ? "true" : "false");
            break;
        case JSON_STRING:
            json_read_string(&json, value, 128, NULL, &err);
            break;
        case JSON_ARRAY:   /* of strings: joined */
            json_array_begin(&json, &err);
            while (json_array_next(&json, &err) == 1) json_read_string(&json, value + strlen(value), 64, NULL, &err);
            break;
        default:
            snprintf(value, 128, "other");
            json_skip_value(&json, &err);
        }
    }
    CHECK(more == 0, "%s: %.900s", path, err.message);
    free(text);
}

static void check_config(const char *exported, const char *reference) {
    ConfigValues got, want;
    read_config_json(exported, &got);
    read_config_json(reference, &want);
    for (int i = 0; i < want.count; i++) {
        int found = 0;
        for (int j = 0; j < got.count; j++)
            if (strcmp(want.keys[i], got.keys[j]) == 0) {
                found = 1;
                CHECK(strcmp(want.values[i], got.values[j]) == 0, "config.json: %s is %s, PyTorch's file says %s",
                      want.keys[i], got.values[j], want.values[i]);
            }
        CHECK(found, "config.json lacks %s", want.keys[i]);
    }
}

static void export_and_compare(const ModelFiles *files, const char *run_name) {
    ViTConfig cfg = load_model(files->yaml);
    const char *imported = import_into(files->hf, NULL, &cfg, "export_source.h5");
    if (!imported) return;
    float *weights = read_params(imported, &cfg);
    const char *run_dir = make_run(run_name, files->yaml, weights, 0);
    if (!run_dir || test_state.failed_checks) {
        free(weights);
        return;
    }
    const char *out_dir = scratch_path("exported");
    DdError err = {{0}};
    CHECK(student_export(run_dir, "s", out_dir, stdout, &err) == 0, "%.900s", err.message);
    if (!test_state.failed_checks) {
        char model[1200], config[1200], reference_config[1200];
        snprintf(model, sizeof model, "%s/model.safetensors", out_dir);
        snprintf(config, sizeof config, "%s/config.json", out_dir);
        snprintf(reference_config, sizeof reference_config, "%s/config.json", files->hf);
        check_same_tensors(model, files->hf);
        check_config(config, reference_config);
        const char *back = import_into(out_dir, NULL, &cfg, "exported_back.h5");
        if (back) {
            float *again = read_params(back, &cfg);
            CHECK(memcmp(again, weights, vit_tensor_layout(&cfg, NULL) * sizeof(float)) == 0,
                  "export then import gives the same parameters");
            check_forward(&cfg, again, files->expected, "exported, imported back");
            free(again);
        }
    }
    free(weights);
}

static void the_ema_exports_as_the_pytorch_files(void) {
    export_and_compare(&tiny_ref, "run_mlp");
}

static void a_swiglu_ema_exports_as_the_pytorch_files(void) {
    export_and_compare(&tiny_ref_swiglu, "run_swiglu");
}

static void export_errors_name_the_problem(void) {
    ViTConfig cfg = load_model(tiny_ref.yaml);
    const char *imported = import_into(tiny_ref.hf, NULL, &cfg, "export_errors.h5");
    if (!imported) return;
    float *weights = read_params(imported, &cfg);
    DdError err = {{0}};
    const char *run_dir = make_run("run_errors", tiny_ref.yaml, weights, 0);
    CHECK(student_export(run_dir, "b", scratch_path("nope"), NULL, &err) != 0 &&
          strstr(err.message, "expected a student called 'b', found only 's'"), "%.900s", err.message);
    CHECK(student_export(scratch_path("no_run"), "s", scratch_path("nope"), NULL, &err) != 0 &&
          strstr(err.message, "no_run/checkpoints, found none"), "%.900s", err.message);
    /* The checkpoint's own config.yaml (written with the state) wins over the run's. */
    char command[2 * CHECKPOINT_PATH_MAX + 64], folder[CHECKPOINT_PATH_MAX];
    long iteration;
    CHECK(checkpoint_find_latest(run_dir, folder, sizeof folder, &iteration, NULL, NULL, &err) == 1, "checkpoint");
    snprintf(command, sizeof command, "sed 's/name: s$/name: t/' '%s/config.yaml' > '%s/config.yaml'", run_dir, folder);
    CHECK(system(command) == 0, "%.900s", command);
    CHECK(student_export(run_dir, "s", scratch_path("nope"), NULL, &err) != 0 &&
          strstr(err.message, "found only 't'") && strstr(err.message, folder), "%.900s", err.message);
    run_dir = make_run("run_key_bias", tiny_ref.yaml, weights, 1);
    CHECK(student_export(run_dir, "s", scratch_path("nope"), NULL, &err) != 0 &&
          strstr(err.message, "layer.0.attention.qkv_proj.bias") && strstr(err.message, "expected zeros"), "%.900s",
          err.message);
    snprintf(command, sizeof command, "rm -rf '%s/checkpoints'", run_dir);
    CHECK(system(command) == 0, "%.900s", command);
    CHECK(student_export(run_dir, "s", scratch_path("nope"), NULL, &err) != 0 && strstr(err.message, "found none"),
          "%.900s", err.message);
    free(weights);
}

/* Export then import of initialised weights is the identity, also for a
 * model without registers (Hugging Face keeps an empty register tensor). */
static void a_model_without_registers_round_trips(void) {
    ViTConfig cfg = load_model(tiny_ref.yaml);
    cfg.registers = 0;
    ViTParams params = {0};
    DdError err = {{0}};
    CHECK(vit_params_alloc(&params, &cfg, &nn_cpu_backend, &err) == 0 &&
          vit_params_init(&params, &cfg, &nn_cpu_backend, 5, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return;
    float *host = malloc(params.count * sizeof(float));
    ViTParams view = {0};
    nn_cpu_backend.copy_to_host(host, params.memory, params.count * sizeof(float));
    CHECK(vit_params_view(&view, &cfg, host, &err) == 0, "%.900s", err.message);
    const char *folder = scratch_path("no_registers");
    CHECK(weights_export_hugging_face(folder, &cfg, &view, 32, &err) == 0, "%.900s", err.message);
    SafetensorsSet set;
    CHECK(safetensors_set_open(&set, folder, &err) == 0, "%.900s", err.message);
    if (!test_state.failed_checks) {
        const SafetensorsEntry *registers = safetensors_set_find(&set, "embeddings.register_tokens");
        CHECK(registers && registers->tensor->shape.ndim == 3 && registers->tensor->shape.dims[1] == 0,
              "an empty [1, 0, D] register tensor is written");
        safetensors_set_close(&set);
    }
    const char *back = import_into(folder, NULL, &cfg, "no_registers.h5");
    if (back) {
        float *again = read_params(back, &cfg);
        CHECK(again && memcmp(again, host, params.count * sizeof(float)) == 0, "export then import is the identity");
        free(again);
    }
    free(view.blocks);
    free(host);
    vit_params_free(&params, &nn_cpu_backend);
}

TEST_MAIN(TEST(hf_and_original_names_import_to_the_pytorch_forward),
          TEST(sharded_bf16_and_f16_files_import_to_the_pytorch_forward), TEST(heads_import_from_their_own_file),
          TEST(files_that_do_not_fit_the_yaml_are_refused), TEST(prefixed_names_are_found_or_chosen),
          TEST(the_ema_exports_as_the_pytorch_files),
          TEST(a_swiglu_ema_exports_as_the_pytorch_files), TEST(export_errors_name_the_problem),
          TEST(a_model_without_registers_round_trips))
