/*
 * test_config_errors.c - malformed config files and the exact message each
 * one gets: the files in tests/config/bad/ (one mistake each, in a table),
 * and inputs made at run time (too large, too deep, too many includes).
 * Messages name paths relative to the repository root, where meson runs
 * this test.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/vit_config.h"
#include "tests/test.h"
#include "tools/run_config.h"

#define BAD_DIR "tests/config/bad"

typedef struct BadFile {
    const char *file;              /* in BAD_DIR */
    const ConfigSchema *schema;    /* loaded as a model or a run */
    const char *message;           /* the whole message, exactly */
} BadFile;

static const BadFile bad_files[] = {
    {"bad_indentation.yaml", &vit_config_schema,
     "tests/config/bad/bad_indentation.yaml:6:12: expected valid YAML, found mapping values are not allowed in this context"},
    {"bad_nested_indentation.yaml", &vit_config_schema,
     "tests/config/bad/bad_nested_indentation.yaml:11:3: expected key (while parsing a block mapping started at 2:1), found something else"},
    {"binary_garbage.yaml", &vit_config_schema,
     "tests/config/bad/binary_garbage.yaml:1:1: expected UTF-8 text, found invalid leading UTF-8 octet (0x89)"},
    {"bool_yes.yaml", &vit_config_schema,
     "tests/config/bad/bool_yes.yaml:9:11: expected true or false for 'qkv_bias', found 'yes'"},
    {"cycle2_a.yaml", &vit_config_schema,
     "tests/config/bad/cycle2_b.yaml:2:10: expected no include cycle, found tests/config/bad/cycle2_a.yaml -> tests/config/bad/cycle2_b.yaml -> tests/config/bad/cycle2_a.yaml"},
    {"cycle2_b.yaml", &vit_config_schema,
     "tests/config/bad/cycle2_a.yaml:2:10: expected no include cycle, found tests/config/bad/cycle2_b.yaml -> tests/config/bad/cycle2_a.yaml -> tests/config/bad/cycle2_b.yaml"},
    {"cycle3_a.yaml", &vit_config_schema,
     "tests/config/bad/cycle3_c.yaml:3:10: expected no include cycle, found tests/config/bad/cycle3_a.yaml -> tests/config/bad/cycle3_b.yaml -> tests/config/bad/cycle3_c.yaml -> tests/config/bad/cycle3_a.yaml"},
    {"cycle3_b.yaml", &vit_config_schema,
     "tests/config/bad/cycle3_a.yaml:2:10: expected no include cycle, found tests/config/bad/cycle3_b.yaml -> tests/config/bad/cycle3_c.yaml -> tests/config/bad/cycle3_a.yaml -> tests/config/bad/cycle3_b.yaml"},
    {"cycle3_c.yaml", &vit_config_schema,
     "tests/config/bad/cycle3_b.yaml:2:10: expected no include cycle, found tests/config/bad/cycle3_c.yaml -> tests/config/bad/cycle3_a.yaml -> tests/config/bad/cycle3_b.yaml -> tests/config/bad/cycle3_c.yaml"},
    {"dim_not_divisible.yaml", &vit_config_schema,
     "tests/config/bad/dim_not_divisible.yaml:6:12: expected a divisor of dim 100 for 'num_heads', found 6"},
    {"duplicate_key.yaml", &vit_config_schema,
     "tests/config/bad/duplicate_key.yaml:8:1: expected each key once, found 'dim' again (first at 4:1)"},
    {"empty.yaml", &vit_config_schema,
     "tests/config/bad/empty.yaml:1:1: expected a mapping, found an empty document"},
    {"empty_value.yaml", &vit_config_schema,
     "tests/config/bad/empty_value.yaml:4:5: expected integer in [1, 65536] for 'dim', found an empty value"},
    {"enum_typo.yaml", &vit_config_schema,
     "tests/config/bad/enum_typo.yaml:7:6: expected one of mlp, swiglu for 'ffn', found 'relu'"},
    {"float_for_int.yaml", &vit_config_schema,
     "tests/config/bad/float_for_int.yaml:4:6: expected integer in [1, 65536] for 'dim', found '1.5'"},
    {"float_nan.yaml", &vit_config_schema,
     "tests/config/bad/float_nan.yaml:9:18: expected number in [0, 10] for 'layerscale_init', found '.nan'"},
    {"float_out_of_range.yaml", &vit_config_schema,
     "tests/config/bad/float_out_of_range.yaml:9:11: expected number in [1e-12, 1] for 'norm_eps', found '2.5'"},
    {"head_dim_not_div4.yaml", &vit_config_schema,
     "tests/config/bad/head_dim_not_div4.yaml:6:12: expected dim / num_heads divisible by 4 for RoPE, found 72 / 4 = 18"},
    {"head_sequence.yaml", &vit_config_schema,
     "tests/config/bad/head_sequence.yaml:9:12: expected a mapping or an include path for 'dino_head', found a sequence"},
    {"head_unknown_key.yaml", &vit_config_schema,
     "tests/config/bad/head_unknown_key.yaml:11:3: expected a head key (layers, hidden, bottleneck, prototypes, include), found 'width'"},
    {"include_directory.yaml", &vit_config_schema,
     "tests/config/bad/include_directory.yaml:2:10: expected a regular file, found tests/config: a directory"},
    {"include_not_path.yaml", &vit_config_schema,
     "tests/config/bad/include_not_path.yaml:2:10: expected an include path, found a sequence"},
    {"include_wrong_kind.yaml", &vit_config_schema,
     "tests/config/good/run_base.yaml:3:1: expected a model key (name, patch_size, in_channels, dim, depth, num_heads, ffn, ffn_hidden, qkv_bias, registers, layerscale_init, norm_eps, rope_base, dino_head, ibot_head, include), found 'iterations'"},
    {"invalid_utf8.yaml", &vit_config_schema,
     "tests/config/bad/invalid_utf8.yaml:2:11: expected UTF-8 text, found invalid trailing UTF-8 octet (0x0A)"},
    {"mapping_for_int.yaml", &vit_config_schema,
     "tests/config/bad/mapping_for_int.yaml:4:6: expected integer in [1, 65536] for 'dim', found a mapping"},
    {"missing_dim.yaml", &vit_config_schema,
     "tests/config/bad/missing_dim.yaml:2:1: expected a value for required key 'dim', found none"},
    {"missing_include.yaml", &vit_config_schema,
     "tests/config/bad/missing_include.yaml:2:10: expected a readable file, found tests/config/bad/no_such_model.yaml: No such file or directory"},
    {"name_too_long.yaml", &vit_config_schema,
     "tests/config/bad/name_too_long.yaml:2:7: expected a string of 1 to 63 bytes for 'name', found 'a_model_name_that_is_far_too_long_to_fit_in_the_...'"},
    {"negative_depth.yaml", &vit_config_schema,
     "tests/config/bad/negative_depth.yaml:4:8: expected integer in [1, 65536] for 'depth', found '-3'"},
    {"negative_prototypes.yaml", &vit_config_schema,
     "tests/config/bad/negative_prototypes.yaml:10:15: expected integer in [1, 16777216] for 'prototypes', found '-96'"},
    {"only_comments.yaml", &vit_config_schema,
     "tests/config/bad/only_comments.yaml:1:1: expected a mapping, found an empty document"},
    {"overflow_int.yaml", &vit_config_schema,
     "tests/config/bad/overflow_int.yaml:4:6: expected integer in [1, 65536] for 'dim', found '99999999999999999999'"},
    {"overflow_int32.yaml", &vit_config_schema,
     "tests/config/bad/overflow_int32.yaml:8:13: expected integer in [1, 65536] for 'ffn_hidden', found '4294967296'"},
    {"quoted_int.yaml", &vit_config_schema,
     "tests/config/bad/quoted_int.yaml:4:6: expected integer in [1, 65536] for 'dim', found the string \"32\""},
    {"run_crop_not_patches.yaml", &run_config_schema,
     "tests/config/bad/run_crop_not_patches.yaml:4:15: expected a multiple of the patch size 8 for 'local_size', found 36"},
    {"run_duplicate_student.yaml", &run_config_schema,
     "tests/config/bad/run_duplicate_student.yaml:6:11: expected a student name not used before, found 's' again"},
    {"run_missing_teacher.yaml", &run_config_schema,
     "tests/config/bad/run_missing_teacher.yaml:2:1: expected a value for required key 'teacher', found none"},
    {"run_negative_seed.yaml", &run_config_schema,
     "tests/config/bad/run_negative_seed.yaml:3:7: expected unsigned integer for 'seed', found '-1'"},
    {"run_no_students.yaml", &run_config_schema,
     "tests/config/bad/run_no_students.yaml:3:11: expected a sequence of 1 to 16 mappings or include paths for 'students', found 0 entries"},
    {"run_patch_mismatch.yaml", &run_config_schema,
     "tests/config/bad/run_patch_mismatch.yaml:5:12: expected patch_size 8 as in the teacher for student 's', found 16"},
    {"run_prototype_mismatch.yaml", &run_config_schema,
     "tests/config/bad/run_prototype_mismatch.yaml:6:7: expected 256 DINO prototypes as in the teacher for student 's', found 512"},
    {"run_student_bad_model.yaml", &run_config_schema,
     "tests/config/bad/dim_not_divisible.yaml:6:12: expected a divisor of dim 100 for 'num_heads', found 6"},
    {"run_student_sequence.yaml", &run_config_schema,
     "tests/config/bad/run_student_sequence.yaml:4:5: expected a mapping or an include path for 'students', found a sequence"},
    {"run_students_mapping.yaml", &run_config_schema,
     "tests/config/bad/run_students_mapping.yaml:4:3: expected a sequence of 1 to 16 mappings or include paths for 'students', found a mapping"},
    {"run_too_many_students.yaml", &run_config_schema,
     "tests/config/bad/run_too_many_students.yaml:8:3: expected a sequence of 1 to 16 mappings or include paths for 'students', found 17 entries"},
    {"run_warmup_too_long.yaml", &run_config_schema,
     "tests/config/bad/run_warmup_too_long.yaml:3:9: expected at most iterations (10) for 'warmup', found 20"},
    {"self_include.yaml", &vit_config_schema,
     "tests/config/bad/self_include.yaml:2:10: expected no include cycle, found tests/config/bad/self_include.yaml -> tests/config/bad/self_include.yaml"},
    {"sequence_for_int.yaml", &vit_config_schema,
     "tests/config/bad/sequence_for_int.yaml:6:12: expected integer in [1, 65536] for 'num_heads', found a sequence"},
    {"sequence_key.yaml", &vit_config_schema,
     "tests/config/bad/sequence_key.yaml:3:1: expected a key, found a sequence"},
    {"tab_indentation.yaml", &vit_config_schema,
     "tests/config/bad/tab_indentation.yaml:10:1: expected valid YAML, found character that cannot start any token (while scanning for the next token started at 10:1)"},
    {"top_level_scalar.yaml", &vit_config_schema,
     "tests/config/bad/top_level_scalar.yaml:2:1: expected a mapping, found 'vits16'"},
    {"top_level_sequence.yaml", &vit_config_schema,
     "tests/config/bad/top_level_sequence.yaml:2:1: expected a mapping, found a sequence"},
    {"two_documents.yaml", &vit_config_schema,
     "tests/config/bad/two_documents.yaml:3:1: expected one document, found a second one"},
    {"undefined_alias.yaml", &vit_config_schema,
     "tests/config/bad/undefined_alias.yaml:3:6: expected valid YAML, found undefined alias"},
    {"unknown_key.yaml", &vit_config_schema,
     "tests/config/bad/unknown_key.yaml:4:1: expected a model key (name, patch_size, in_channels, dim, depth, num_heads, ffn, ffn_hidden, qkv_bias, registers, layerscale_init, norm_eps, rope_base, dino_head, ibot_head, include), found 'dimm'"},
    {"unterminated_quote.yaml", &vit_config_schema,
     "tests/config/bad/unterminated_quote.yaml:5:1: expected valid YAML, found unexpected end of stream (while scanning a quoted scalar started at 2:7)"},
    {"word_for_int.yaml", &vit_config_schema,
     "tests/config/bad/word_for_int.yaml:5:8: expected integer in [1, 65536] for 'depth', found 'twelve'"},
    {"zero_heads.yaml", &vit_config_schema,
     "tests/config/bad/zero_heads.yaml:6:12: expected integer in [1, 65536] for 'num_heads', found '0'"},
};
static const int bad_file_count = (int)(sizeof bad_files / sizeof bad_files[0]);

/* Big enough for either kind of file. */
typedef union AnyConfig {
    ViTConfig model;
    RunConfig run;
} AnyConfig;

static AnyConfig loaded;  /* static: a RunConfig is a few KiB */

/* Loads and checks the whole message; prints both on a mismatch. */
static void check_fails_with(const ConfigSchema *schema, const char *path, const char *expected) {
    DdError err = {{0}};
    int rc = config_load(schema, &loaded, path, &err);
    if (rc != -1 || strcmp(err.message, expected) != 0)
        printf("  %s\n    expected: %s\n    found:    %s\n", path, expected, rc ? err.message : "(loaded)");
    CHECK(rc == -1 && strcmp(err.message, expected) == 0, "%s: found '%s'", path, rc ? err.message : "(loaded)");
}

static void malformed_files_fail_with_exact_messages(void) {
    CHECK(bad_file_count >= 30, "only %d malformed files", bad_file_count);
    for (int i = 0; i < bad_file_count; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", BAD_DIR, bad_files[i].file);
        check_fails_with(bad_files[i].schema, path, bad_files[i].message);
    }
}

static void every_bad_file_is_in_the_table(void) {
    DIR *dir = opendir(BAD_DIR);
    CHECK(dir != NULL, "cannot open %s", BAD_DIR);
    if (!dir) return;
    int files = 0;
    for (struct dirent *entry = readdir(dir); entry; entry = readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        int found = 0;
        for (int i = 0; i < bad_file_count && !found; i++) found = strcmp(bad_files[i].file, entry->d_name) == 0;
        CHECK(found, "%s/%s is not in the table", BAD_DIR, entry->d_name);
        files++;
    }
    closedir(dir);
    CHECK(files == bad_file_count, "%d files for %d table rows", files, bad_file_count);
}

/* FILE:LINE:COLUMN: expected X, found Y */
static int has_message_form(const char *message) {
    const char *expected = strstr(message, ": expected ");
    if (!expected || !strstr(expected, ", found ")) return 0;
    int colons = 0;
    const char *p = expected - 1;
    for (; p > message && colons < 2; p--) {
        if (*p == ':') colons++;
        else if (*p < '0' || *p > '9') return 0;
    }
    return colons == 2 && p > message;
}

static void every_message_has_the_one_form(void) {
    for (int i = 0; i < bad_file_count; i++)
        CHECK(has_message_form(bad_files[i].message), "%s: '%s'", bad_files[i].file, bad_files[i].message);
}

static void a_missing_file_or_a_folder_is_named(void) {
    check_fails_with(&vit_config_schema, BAD_DIR "/no_such_file.yaml",
                     BAD_DIR "/no_such_file.yaml: expected a readable file, found No such file or directory");
    check_fails_with(&vit_config_schema, BAD_DIR, BAD_DIR ": expected a regular file, found a directory");
}

/* ---- inputs made at run time ------------------------------------------- */

/* A folder of files written by one test, removed at its end. */
typedef struct TempDir {
    char path[64];
    char files[24][128];
    int count;
} TempDir;

static int temp_dir_create(TempDir *t) {
    memset(t, 0, sizeof *t);
    snprintf(t->path, sizeof t->path, "/tmp/dd_config_test_XXXXXX");
    return mkdtemp(t->path) ? 0 : -1;
}

static const char *temp_file(TempDir *t, const char *name, const char *text, size_t length) {
    char joined[sizeof t->files[0]];
    snprintf(joined, sizeof joined, "%s/%s", t->path, name);
    char *path = memcpy(t->files[t->count++], joined, sizeof joined);
    FILE *f = fopen(path, "wb");
    if (!f) return path;
    fwrite(text, 1, length, f);
    fclose(f);
    return path;
}

static void temp_dir_remove(TempDir *t) {
    for (int i = 0; i < t->count; i++) unlink(t->files[i]);
    rmdir(t->path);
}

static void a_file_over_one_mebibyte_is_refused(void) {
    TempDir t;
    CHECK(temp_dir_create(&t) == 0, "mkdtemp failed");
    size_t length = CONFIG_MAX_FILE_BYTES + 1;
    char *text = malloc(length);
    memset(text, '#', length);
    const char *big = temp_file(&t, "big.yaml", text, length);
    free(text);
    static const char include_big[] = "include: big.yaml\n";
    const char *includer = temp_file(&t, "includer.yaml", include_big, strlen(include_big));
    char expected[512];
    snprintf(expected, sizeof expected, "%s: expected a file of at most 1048576 bytes, found 1048577 bytes", big);
    check_fails_with(&vit_config_schema, big, expected);
    snprintf(expected, sizeof expected,
             "%s:1:10: expected a file of at most 1048576 bytes, found %s: 1048577 bytes", includer, big);
    check_fails_with(&vit_config_schema, includer, expected);
    temp_dir_remove(&t);
}

/* d00.yaml includes d01.yaml ... includes d<last>.yaml, a whole model. */
static void write_include_chain(TempDir *t, int last) {
    char name[32], text[128];
    for (int i = 0; i < last; i++) {
        snprintf(name, sizeof name, "d%02d.yaml", i);
        snprintf(text, sizeof text, "include: d%02d.yaml\n", i + 1);
        temp_file(t, name, text, strlen(text));
    }
    static const char model[] = "name: deep\npatch_size: 8\ndim: 32\ndepth: 2\nnum_heads: 2\nffn: mlp\nffn_hidden: 64\n";
    snprintf(name, sizeof name, "d%02d.yaml", last);
    temp_file(t, name, model, strlen(model));
}

static void includes_nest_sixteen_files_deep_and_no_deeper(void) {
    TempDir t;
    CHECK(temp_dir_create(&t) == 0, "mkdtemp failed");
    write_include_chain(&t, CONFIG_MAX_INCLUDE_DEPTH - 1);
    DdError err = {{0}};
    CHECK(config_load(&vit_config_schema, &loaded, t.files[0], &err) == 0, "16 files: %s", err.message);
    CHECK(strcmp(loaded.model.name, "deep") == 0, "name '%s'", loaded.model.name);
    temp_dir_remove(&t);

    CHECK(temp_dir_create(&t) == 0, "mkdtemp failed");
    write_include_chain(&t, CONFIG_MAX_INCLUDE_DEPTH);
    char expected[512];
    snprintf(expected, sizeof expected, "%s:1:10: expected at most 16 nested includes, found %s at depth 17",
             t.files[15], t.files[16]);
    check_fails_with(&vit_config_schema, t.files[0], expected);
    temp_dir_remove(&t);
}

static void check_text_fails_with(const char *text, size_t length, const char *expected) {
    DdError err = {{0}};
    int rc = config_load_text(&vit_config_schema, &loaded, text, length, "inline.yaml", &err);
    CHECK(rc == -1 && strcmp(err.message, expected) == 0, "found '%s'", rc ? err.message : "(loaded)");
}

static void deep_nesting_stops_early(void) {
    /* 1 MiB of '[' would keep libyaml busy for hours. The root mapping is
     * the first level, so the 64th '[' (column 69) is one too many. */
    size_t length = CONFIG_MAX_FILE_BYTES - 16;
    char *text = malloc(length);
    memcpy(text, "name: x\ndim: ", 13);
    memset(text + 13, '[', length - 13);
    check_text_fails_with(text, length, "inline.yaml:2:69: expected at most 64 nested levels, found more");
    free(text);
}

static void many_anchors_stop_early(void) {
    size_t cap = 300 * 16, n = 0, column_of_257th = 0;
    char *text = malloc(cap);
    n += (size_t)snprintf(text + n, cap - n, "name: [");
    for (int i = 0; i < 300; i++) {
        if (i == CONFIG_MAX_ANCHORS) column_of_257th = n + 1;
        n += (size_t)snprintf(text + n, cap - n, "&a%d 1, ", i);
    }
    n += (size_t)snprintf(text + n, cap - n, "]\n");
    char expected[128];
    snprintf(expected, sizeof expected, "inline.yaml:1:%zu: expected at most 256 anchors, found more", column_of_257th);
    check_text_fails_with(text, n, expected);
    free(text);
}

static void text_over_one_mebibyte_is_refused(void) {
    size_t length = CONFIG_MAX_FILE_BYTES + 1;
    char *text = calloc(length, 1);
    check_text_fails_with(text, length, "inline.yaml: expected a file of at most 1048576 bytes, found 1048577 bytes");
    free(text);
}

static void a_nul_byte_is_not_text(void) {
    static const char text[] = "name: a\0b\n";
    check_text_fails_with(text, sizeof text - 1, "inline.yaml:1:8: expected UTF-8 text, found control characters are not allowed (0x00)");
}

TEST_MAIN(TEST(malformed_files_fail_with_exact_messages), TEST(every_bad_file_is_in_the_table),
          TEST(every_message_has_the_one_form), TEST(a_missing_file_or_a_folder_is_named),
          TEST(a_file_over_one_mebibyte_is_refused), TEST(includes_nest_sixteen_files_deep_and_no_deeper),
          TEST(deep_nesting_stops_early), TEST(many_anchors_stop_early), TEST(text_over_one_mebibyte_is_refused),
          TEST(a_nul_byte_is_not_text))
