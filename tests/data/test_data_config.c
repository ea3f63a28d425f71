/*
 * test_data_config.c - the `data:` section of a run file: the demo run
 * trains on synthetic images, the family run mixes LVD shards with 10%
 * ImageNet batches, a run without the section gets the synthetic default
 * and the DINOv2/v3 recipe, and malformed sections fail with a message that
 * names the place.
 */
#include <string.h>

#include "data/data_config.h"
#include "tests/test.h"
#include "tools/run_config.h"

static RunConfig run;

static void the_demo_and_family_runs_name_their_sources(void) {
    DdError err = {{0}};
    CHECK(run_config_load(&run, "configs/runs/demo.yaml", &err) == 0, "%s", err.message);
    const DataSourceConfig *sources = NULL;
    int count = data_config_sources(&run.data, &sources);
    CHECK(count == 1 && strcmp(sources[0].source, "synthetic") == 0 && sources[0].images == 4096 &&
              sources[0].image_size == 96 && sources[0].classes == 10,
          "demo: %d sources, '%s'", count, sources[0].source);
    CHECK(run_config_load(&run, "configs/runs/dinov3-family.yaml", &err) == 0, "%s", err.message);
    count = data_config_sources(&run.data, &sources);
    CHECK(count == 2 && strncmp(sources[0].source, "hdf5:", 5) == 0 && strncmp(sources[1].source, "folder:", 7) == 0 &&
              sources[0].weight == 0.9 && sources[1].weight == 0.1,
          "family sources");
}

static void defaults_are_the_dinov3_recipe(void) {
    DdError err = {{0}};
    static const char text[] = "name: r\niterations: 10\nglobal_batch: 8\n"
                               "teacher: {model: ../models/tiny_teacher.yaml}\n"
                               "students: [{name: s, model: ../models/tiny_s.yaml}]\n";
    CHECK(config_load_text(&run_config_schema, &run, text, strlen(text), "configs/runs/inline.yaml", &err) == 0, "%s",
          err.message);
    const DataConfig *d = &run.data;
    const DataSourceConfig *sources = NULL;
    CHECK(d->source_count == 0 && data_config_sources(d, &sources) == 1 && strcmp(sources[0].source, "synthetic") == 0,
          "no data section: the synthetic source");
    const DataAugmentConfig *a = &d->augment;
    CHECK(a->global_scale.min == 0.32f && a->global_scale.max == 1.0f && a->local_scale.min == 0.05f &&
              a->local_scale.max == 0.32f,
          "scales");
    CHECK(a->jitter.probability == 0.8f && a->jitter.brightness == 0.4f && a->jitter.contrast == 0.4f &&
              a->jitter.saturation == 0.2f && a->jitter.hue == 0.1f && a->grayscale == 0.2f && a->flip == 0.5f,
          "jitter");
    CHECK(a->first_global.blur == 1.0f && a->other_globals.blur == 0.1f && a->other_globals.solarize == 0.2f &&
              a->locals.blur == 0.5f && a->first_global.solarize == 0 && a->locals.solarize == 0,
          "per-crop probabilities");
    CHECK(a->mean.red == 0.485f && a->std.blue == 0.225f, "ImageNet normalisation");
    CHECK(d->rope_rescale.min == 0.5f && d->rope_rescale.max == 2.0f && d->loader.threads == 1 && d->loader.prefetch == 3,
          "rope rescale, loader");
}

static void expect_error(const char *section, const char *needle) {
    DataConfig config;
    DdError err = {{0}};
    int rc = config_load_text(&data_config_schema, &config, section, strlen(section), "data.yaml", &err);
    CHECK(rc == -1 && strstr(err.message, needle), "'%s' gave '%s', expected '%s'", section, rc ? err.message : "success",
          needle);
}

static void malformed_sections_name_the_place(void) {
    expect_error("sources: [{source: \"s3://bucket\"}]\n",
                 "data.yaml:1:20: expected 'synthetic', 'folder:PATH' or 'hdf5:PATH-or-glob'");
    expect_error("sources: [{source: synthetic, weight: 0}]\n", "expected a positive 'weight', found 0");
    expect_error("sources: [{source: \"folder:\"}]\n", "expected 'synthetic'");
    expect_error("augment: {global_scale: {min: 0.9, max: 0.5}}\n", "expected 'max' at least 'min'");
    expect_error("augment: {jitter: {probability: 1.5}}\n", "data.yaml:1:33:");
    expect_error("loader: {threads: 0}\n", "'threads'");
    expect_error("augment: {blur: 0.5}\n", "blur");
}

TEST_MAIN(TEST(the_demo_and_family_runs_name_their_sources), TEST(defaults_are_the_dinov3_recipe),
          TEST(malformed_sections_name_the_place))
