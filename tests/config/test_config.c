/*
 * test_config.c - the config files that must load, and what loading them
 * means: every model and run file loads, the published architectures are
 * what the files say, defaults fill what a file leaves out, includes and
 * path strings override as documented, and a struct written back as YAML
 * loads to the same struct.
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/vit_config.h"
#include "tests/test.h"
#include "tools/run_config.h"

static RunConfig run;  /* static: a RunConfig is a few KiB */

/* Calls visit on every file matching pattern; returns how many there were. */
static int for_each_file(const char *pattern, void (*visit)(const char *path)) {
    glob_t found;
    if (glob(pattern, 0, NULL, &found) != 0) return 0;
    for (size_t i = 0; i < found.gl_pathc; i++) visit(found.gl_pathv[i]);
    int count = (int)found.gl_pathc;
    globfree(&found);
    return count;
}

static void load_model_file(const char *path) {
    ViTConfig cfg;
    DdError err = {{0}};
    CHECK(vit_config_load(&cfg, path, &err) == 0, "%s", err.message);
}

static void load_run_file(const char *path) {
    DdError err = {{0}};
    CHECK(run_config_load(&run, path, &err) == 0, "%s", err.message);
}

static void every_model_file_loads(void) {
    int count = for_each_file("configs/models/*.yaml", load_model_file);
    CHECK(count >= 14, "only %d model files", count);
}

static void every_run_file_loads(void) {
    int count = for_each_file("configs/runs/*.yaml", load_run_file);
    CHECK(count >= 2, "only %d run files", count);
}

static ViTConfig load_model(const char *path) {
    ViTConfig cfg = {0};
    DdError err = {{0}};
    CHECK(vit_config_load(&cfg, path, &err) == 0, "%s", err.message);
    return cfg;
}

/* The DESIGN table: all patch 16 with 4 registers. */
static void the_published_family_matches_the_design_table(void) {
    static const struct {
        const char *path;
        int dim, depth, heads;
        FfnKind ffn;
        int hidden, qkv_bias;
    } family[] = {
        {"configs/models/vits16.yaml", 384, 12, 6, FFN_MLP, 1536, 1},
        {"configs/models/vits16plus.yaml", 384, 12, 6, FFN_SWIGLU, 1536, 1},
        {"configs/models/vitb16.yaml", 768, 12, 12, FFN_MLP, 3072, 1},
        {"configs/models/vitl16.yaml", 1024, 24, 16, FFN_MLP, 4096, 1},
        {"configs/models/vith16plus.yaml", 1280, 32, 20, FFN_SWIGLU, 5120, 1},
        {"configs/models/vit7b16.yaml", 4096, 40, 32, FFN_SWIGLU, 8192, 0},
    };
    for (size_t i = 0; i < sizeof family / sizeof family[0]; i++) {
        ViTConfig c = load_model(family[i].path);
        CHECK(c.patch_size == 16 && c.registers == 4 && c.in_channels == 3, "%s: patch/registers", family[i].path);
        CHECK(c.dim == family[i].dim && c.depth == family[i].depth && c.num_heads == family[i].heads,
              "%s: %d x %d, %d heads", family[i].path, c.dim, c.depth, c.num_heads);
        CHECK(c.ffn == family[i].ffn && c.ffn_hidden == family[i].hidden, "%s: ffn", family[i].path);
        CHECK(c.qkv_bias == family[i].qkv_bias, "%s: qkv_bias %d", family[i].path, c.qkv_bias);
    }
}

static void defaults_fill_what_a_file_leaves_out(void) {
    static const char text[] = "name: m\npatch_size: 16\ndim: 64\ndepth: 1\nnum_heads: 4\nffn: mlp\nffn_hidden: 128\n";
    ViTConfig c;
    DdError err = {{0}};
    CHECK(config_load_text(&vit_config_schema, &c, text, strlen(text), "inline.yaml", &err) == 0, "%s",
          err.message);
    CHECK(c.in_channels == 3 && c.qkv_bias == 1 && c.registers == 4, "in_channels/qkv_bias/registers");
    CHECK(c.layerscale_init == 1e-5f && c.norm_eps == 1e-5f && c.rope_base == 100.0f, "layerscale/eps/rope");
    CHECK(c.dino_head.layers == 3 && c.dino_head.hidden == 8192 && c.dino_head.bottleneck == 512 &&
              c.dino_head.prototypes == 262144,
          "dino head %d %d %d %d", c.dino_head.layers, c.dino_head.hidden, c.dino_head.bottleneck,
          c.dino_head.prototypes);
    CHECK(c.ibot_head.layers == 3 && c.ibot_head.hidden == 8192 && c.ibot_head.bottleneck == 384 &&
              c.ibot_head.prototypes == 98304,
          "ibot head");

    CropConfig crops;
    CHECK(config_set_defaults(&crop_config_schema, &crops, &err) == 0, "%s", err.message);
    CHECK(crops.global_size == 256 && crops.global_count == 2 && crops.local_size == 112 && crops.local_count == 8,
          "crops %d x %d + %d x %d", crops.global_count, crops.global_size, crops.local_count, crops.local_size);
    CHECK(config_set_defaults(&vit_config_schema, &c, &err) == -1 &&
              strcmp(err.message, "expected a value for required key 'name', found none") == 0,
          "set_defaults of a model: '%s'", err.message);
}

static void an_include_supplies_what_the_keys_beside_it_do_not(void) {
    ViTConfig g = load_model("configs/models/vitg16.yaml");
    CHECK(strcmp(g.name, "vitg16") == 0, "name %s", g.name);
    CHECK(g.dim == 1536 && g.depth == 40 && g.num_heads == 24 && g.ffn_hidden == 4096, "vitg16 overrides");
    CHECK(g.ffn == FFN_SWIGLU && g.qkv_bias == 1 && g.patch_size == 16, "vitg16 from vith16plus");

    ViTConfig s = load_model("configs/models/tiny_ref_swiglu.yaml");
    ViTConfig r = load_model("configs/models/tiny_ref.yaml");
    CHECK(s.ffn == FFN_SWIGLU && s.ffn_hidden == 48 && s.qkv_bias == 0, "tiny_ref_swiglu overrides");
    CHECK(s.dim == r.dim && s.depth == r.depth && s.num_heads == r.num_heads && s.patch_size == r.patch_size &&
              memcmp(&s.dino_head, &r.dino_head, sizeof s.dino_head) == 0,
          "tiny_ref_swiglu keeps the rest of tiny_ref");
}

static ViTConfig load_inline(const char *text) {
    ViTConfig c = {0};
    DdError err = {{0}};
    /* Named as if it were in configs/models/, so includes resolve there. */
    CHECK(config_load_text(&vit_config_schema, &c, text, strlen(text), "configs/models/inline.yaml", &err) == 0,
          "%s", err.message);
    return c;
}

static void nested_mappings_merge_and_paths_replace(void) {
    /* tiny_ref's dino_head is {3, 64, 32, 128}; heads/tiny_dino.yaml is {3, 64, 64, 256}. */
    ViTConfig merged = load_inline("include: tiny_ref.yaml\ndino_head: {prototypes: 512}\n");
    CHECK(merged.dino_head.layers == 3 && merged.dino_head.hidden == 64 && merged.dino_head.bottleneck == 32 &&
              merged.dino_head.prototypes == 512,
          "a mapping merges into the included head: %d %d %d %d", merged.dino_head.layers,
          merged.dino_head.hidden, merged.dino_head.bottleneck, merged.dino_head.prototypes);

    ViTConfig replaced = load_inline("include: tiny_ref.yaml\ndino_head: heads/tiny_dino.yaml\n");
    CHECK(replaced.dino_head.bottleneck == 64 && replaced.dino_head.prototypes == 256, "a path replaces");

    ViTConfig fresh = load_inline("include: tiny_ref.yaml\ndino_head: {include: heads/tiny_dino.yaml, hidden: 32}\n");
    CHECK(fresh.dino_head.hidden == 32 && fresh.dino_head.bottleneck == 64 && fresh.dino_head.prototypes == 256,
          "a mapping with an include starts from that file");

    ViTConfig defaults = load_inline("include: tiny_ref.yaml\ndino_head: {include: heads/tiny_dino.yaml}\n"
                                     "ibot_head: {layers: 2}\n");
    CHECK(defaults.ibot_head.layers == 2 && defaults.ibot_head.hidden == 64 && defaults.ibot_head.prototypes == 96,
          "keys the include leaves out keep it");
}

static void the_demo_and_family_runs_say_what_they_mean(void) {
    DdError err = {{0}};
    CHECK(run_config_load(&run, "configs/runs/demo.yaml", &err) == 0, "%s", err.message);
    CHECK(strcmp(run.teacher.model.name, "tiny_teacher") == 0, "teacher %s", run.teacher.model.name);
    static const char *const demo_students[] = {"tiny_s", "tiny_b", "tiny_l", "tiny_hplus"};
    CHECK(run.student_count == 4, "%d students", run.student_count);
    for (int i = 0; i < run.student_count && i < 4; i++)
        CHECK(strcmp(run.students[i].model.name, demo_students[i]) == 0, "student %d is %s", i,
              run.students[i].model.name);
    CHECK(run.iterations > 0 && run.cooldown > 0, "demo has a cooldown");

    CHECK(run_config_load(&run, "configs/runs/dinov3-family.yaml", &err) == 0, "%s", err.message);
    CHECK(strcmp(run.teacher.model.name, "vit7b16") == 0, "teacher %s", run.teacher.model.name);
    static const char *const family[] = {"vits16", "vitb16", "vitl16", "vith16plus"};
    CHECK(run.student_count == 4, "%d students", run.student_count);
    for (int i = 0; i < run.student_count && i < 4; i++)
        CHECK(strcmp(run.students[i].model.name, family[i]) == 0, "student %d is %s", i,
              run.students[i].model.name);
    CHECK(run.iterations == 1000000 && run.cooldown == 250000 && run.global_batch == 4096, "schedule");
    CHECK(run.crops.global_count == 2 && run.crops.global_size == 256 && run.crops.local_count == 8 &&
              run.crops.local_size == 112,
          "crops");
}

/* Writes object as YAML, loads that text, and compares. */
static void check_round_trip(const ConfigSchema *schema, const void *object, void *copy, const char *what) {
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&text, &length);
    DdError err = {{0}};
    CHECK(config_write(out, schema, object, &err) == 0, "%s: %s", what, err.message);
    fclose(out);
    CHECK(config_load_text(schema, copy, text, length, what, &err) == 0, "%s: %s", what, err.message);
    CHECK(memcmp(object, copy, schema->size) == 0, "%s: differs after a round trip:\n%s", what, text);
    free(text);
}

static void round_trip_model(const char *path) {
    ViTConfig c = load_model(path), copy;
    check_round_trip(&vit_config_schema, &c, &copy, path);
}

static void round_trip_run(const char *path) {
    static RunConfig copy;
    load_run_file(path);
    check_round_trip(&run_config_schema, &run, &copy, path);
}

static void writing_back_and_loading_gives_the_same_struct(void) {
    for_each_file("configs/models/*.yaml", round_trip_model);
    for_each_file("configs/runs/*.yaml", round_trip_run);
    /* Odd values: a name YAML would read as null, floats that need 9 digits. */
    ViTConfig c = load_model("configs/models/tiny_ref.yaml"), copy;
    strncpy(c.name, "null", sizeof c.name);  /* zero-padded, as a load leaves it */
    c.layerscale_init = 0.1f;
    c.norm_eps = 3.14159274e-7f;
    c.rope_base = 12345.678f;
    check_round_trip(&vit_config_schema, &c, &copy, "odd values");
}

static void validate_checks_structs_built_in_code(void) {
    ViTConfig c = load_model("configs/models/vits16.yaml");
    DdError err = {{0}};
    CHECK(vit_config_validate(&c, &err) == 0, "%s", err.message);
    c.dim = 100;
    CHECK(vit_config_validate(&c, &err) == -1 &&
              strcmp(err.message, "expected a divisor of dim 100 for 'num_heads', found 6") == 0,
          "'%s'", err.message);
    c.dim = 384;
    c.depth = 0;
    CHECK(vit_config_validate(&c, &err) == -1 &&
              strcmp(err.message, "expected integer in [1, 65536] for 'depth', found '0'") == 0,
          "'%s'", err.message);
    c.depth = 12;
    c.ffn = (FfnKind)7;
    CHECK(vit_config_validate(&c, &err) == -1 &&
              strcmp(err.message, "expected one of mlp, swiglu for 'ffn', found '7'") == 0,
          "'%s'", err.message);
}

static void head_counts_follow_the_layer_shapes(void) {
    HeadConfig dino = {.layers = 3, .hidden = 8192, .bottleneck = 512, .prototypes = 262144};
    size_t mlp = (384 * 8192 + 8192) + (8192 * 8192 + 8192) + (8192 * 512 + 512);
    CHECK(head_mlp_param_count(&dino, 384) == mlp, "mlp %zu", head_mlp_param_count(&dino, 384));
    CHECK(head_prototype_param_count(&dino) == (size_t)512 * 262144, "prototypes");
    CHECK(head_param_count(&dino, 384) == mlp + (size_t)512 * 262144, "both");
    HeadConfig single = {.layers = 1, .hidden = 99, .bottleneck = 16, .prototypes = 10};
    CHECK(head_mlp_param_count(&single, 32) == 32 * 16 + 16, "one layer: %zu", head_mlp_param_count(&single, 32));
}

static void the_schema_of_a_file_is_picked_by_its_keys(void) {
    const ConfigSchema *const kinds[] = {&vit_config_schema, &run_config_schema};
    CHECK(config_pick_schema(kinds, 2, "configs/models/vits16.yaml") == 0, "model file");
    CHECK(config_pick_schema(kinds, 2, "configs/models/vitg16.yaml") == 0, "model file with an include");
    CHECK(config_pick_schema(kinds, 2, "configs/runs/demo.yaml") == 1, "run file");
    CHECK(config_pick_schema(kinds, 2, "tests/config/bad/no_such_file.yaml") == 0, "missing file");
}

TEST_MAIN(TEST(every_model_file_loads), TEST(every_run_file_loads),
          TEST(the_published_family_matches_the_design_table), TEST(defaults_fill_what_a_file_leaves_out),
          TEST(an_include_supplies_what_the_keys_beside_it_do_not), TEST(nested_mappings_merge_and_paths_replace),
          TEST(the_demo_and_family_runs_say_what_they_mean), TEST(writing_back_and_loading_gives_the_same_struct),
          TEST(validate_checks_structs_built_in_code), TEST(head_counts_follow_the_layer_shapes),
          TEST(the_schema_of_a_file_is_picked_by_its_keys))
