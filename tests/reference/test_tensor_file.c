/*
 * test_tensor_file.c - nn/tensor_file: round trips, atomic writes, and a
 * clear error (never a crash) for a missing tensor, a wrong shape, a
 * missing file, a file that is not HDF5 and a truncated file.
 *
 * Every case works in one private temporary folder, removed at exit.
 */
#include <ftw.h>
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/tensor_file.h"
#include "tests/test.h"

/* Messages go into CHECK as "%.900s": a DdError message is as long as the
 * harness's whole failure line, so an uncapped one would be truncated. */

/* ---- a private scratch folder ------------------------------------------- */

static char scratch_folder[256];

static int remove_entry(const char *path, const struct stat *info, int kind, struct FTW *walk) {
    return remove(path);
}

static void remove_scratch_folder(void) {
    if (scratch_folder[0]) nftw(scratch_folder, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* path of file `name` inside the scratch folder (created on first use). */
static const char *scratch_path(const char *name, char path[512]) {
    if (!scratch_folder[0]) {
        const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(scratch_folder, sizeof scratch_folder, "%s/dd_tensor_file_XXXXXX", tmp);
        if (!mkdtemp(scratch_folder)) {
            perror("mkdtemp");
            exit(2);
        }
        atexit(remove_scratch_folder);
    }
    snprintf(path, 512, "%s/%s", scratch_folder, name);
    return path;
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

static long file_size(const char *path) {
    FILE *stream = fopen(path, "rb");
    if (!stream) return -1;
    fseek(stream, 0, SEEK_END);
    long size = ftell(stream);
    fclose(stream);
    return size;
}

/* ---- a small file of three tensors ------------------------------------------ */

/* weight[2, 3], bias[3], scale[] (rank 0) */
static const float example_weight[6] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-7f, -4e5f};
static const float example_bias[3] = {0.125f, -0.5f, 7.0f};
static const float example_scale[1] = {1.3f};

static int write_example(const char *path, DdError *err) {
    const NamedTensor tensors[] = {
        {"layer.0.weight", {2, {2, 3}}, example_weight},
        {"layer.0.bias", {1, {3}}, example_bias},
        {"scale", {0, {0}}, example_scale},
    };
    return tensor_file_write(path, tensors, 3, err);
}

static void round_trip(void) {
    char path[512];
    DdError err = {{0}};
    scratch_path("round_trip.h5", path);
    CHECK(write_example(path, &err) == 0, "write: %.900s", err.message);

    TensorFile file;
    CHECK(tensor_file_open(&file, path, &err) == 0, "open: %.900s", err.message);
    if (test_state.failed_checks) return;
    float weight[6] = {0}, bias[3] = {0}, scale[1] = {0};
    const TensorShape weight_shape = {2, {2, 3}}, bias_shape = {1, {3}}, scale_shape = {0, {0}};
    CHECK(tensor_file_read(&file, "layer.0.weight", &weight_shape, weight, &err) == 0, "%.900s", err.message);
    CHECK(tensor_file_read(&file, "layer.0.bias", &bias_shape, bias, &err) == 0, "%.900s", err.message);
    CHECK(tensor_file_read(&file, "scale", &scale_shape, scale, &err) == 0, "%.900s", err.message);
    CHECK(memcmp(weight, example_weight, sizeof weight) == 0, "weight differs after the round trip");
    CHECK(memcmp(bias, example_bias, sizeof bias) == 0, "bias differs after the round trip");
    CHECK(scale[0] == example_scale[0], "scale: expected %g, found %g", example_scale[0], scale[0]);
    CHECK(tensor_file_contains(&file, "layer.0.bias"), "contains: layer.0.bias not found");
    CHECK(!tensor_file_contains(&file, "layer.1.bias"), "contains: found layer.1.bias");

    TensorShape shape;
    CHECK(tensor_file_shape(&file, "layer.0.weight", &shape, &err) == 0, "%.900s", err.message);
    CHECK(tensor_shape_equal(&shape, &weight_shape), "shape of layer.0.weight");

    /* Listed sorted by name, with shapes. */
    TensorFileEntry *entries = NULL;
    int count = 0;
    CHECK(tensor_file_list(&file, &entries, &count, &err) == 0, "list: %.900s", err.message);
    CHECK(count == 3, "list: expected 3 tensors, found %d", count);
    if (count == 3) {
        char text[TENSOR_SHAPE_TEXT_MAX];
        CHECK(strcmp(entries[0].name, "layer.0.bias") == 0, "list[0] is '%s'", entries[0].name);
        CHECK(strcmp(entries[1].name, "layer.0.weight") == 0, "list[1] is '%s'", entries[1].name);
        CHECK(strcmp(entries[2].name, "scale") == 0, "list[2] is '%s'", entries[2].name);
        CHECK(strcmp(tensor_shape_format(&entries[1].shape, text), "[2, 3]") == 0, "list[1] shape %s", text);
        CHECK(strcmp(tensor_shape_format(&entries[2].shape, text), "[]") == 0, "list[2] shape %s", text);
    }
    free(entries);
    tensor_file_close(&file);
}

static void missing_tensor(void) {
    char path[512];
    DdError err = {{0}};
    scratch_path("missing_tensor.h5", path);
    CHECK(write_example(path, &err) == 0, "write: %.900s", err.message);
    TensorFile file;
    CHECK(tensor_file_open(&file, path, &err) == 0, "open: %.900s", err.message);
    if (test_state.failed_checks) return;
    float out[4];
    const TensorShape shape = {2, {2, 2}};
    CHECK(tensor_file_read(&file, "layer.1.weight", &shape, out, &err) == -1, "read should fail");
    printf("  message: %s\n", err.message);
    CHECK(strstr(err.message, path) != NULL, "message does not name the file: %.900s", err.message);
    CHECK(strstr(err.message, "'layer.1.weight'") != NULL, "message does not name the tensor: %.900s", err.message);
    CHECK(strstr(err.message, "[2, 2]") != NULL, "message does not give the shape: %.900s", err.message);
    CHECK(strstr(err.message, "not found") != NULL, "message: %.900s", err.message);
    tensor_file_close(&file);
}

static void wrong_shape(void) {
    char path[512];
    DdError err = {{0}};
    scratch_path("wrong_shape.h5", path);
    CHECK(write_example(path, &err) == 0, "write: %.900s", err.message);
    TensorFile file;
    CHECK(tensor_file_open(&file, path, &err) == 0, "open: %.900s", err.message);
    if (test_state.failed_checks) return;
    float out[6] = {0};
    const TensorShape transposed = {2, {3, 2}}, flat = {1, {6}};
    CHECK(tensor_file_read(&file, "layer.0.weight", &transposed, out, &err) == -1, "read should fail");
    printf("  message: %s\n", err.message);
    CHECK(strstr(err.message, path) && strstr(err.message, "'layer.0.weight'") &&
              strstr(err.message, "expected shape [3, 2], found [2, 3]"),
          "message: %.900s", err.message);
    CHECK(tensor_file_read(&file, "layer.0.weight", &flat, out, &err) == -1, "rank must be checked too");
    CHECK(strstr(err.message, "expected shape [6], found [2, 3]"), "message: %.900s", err.message);
    for (int i = 0; i < 6; i++) CHECK(out[i] == 0.0f, "a failed read wrote into the buffer");
    tensor_file_close(&file);
}

static void missing_file(void) {
    char path[512];
    DdError err = {{0}};
    TensorFile file;
    CHECK(tensor_file_open(&file, scratch_path("does_not_exist.h5", path), &err) == -1, "open should fail");
    printf("  message: %s\n", err.message);
    CHECK(strstr(err.message, path) && strstr(err.message, "No such file"), "message: %.900s", err.message);
}

static void not_an_hdf5_file(void) {
    char path[512];
    DdError err = {{0}};
    scratch_path("weights.yaml", path);
    FILE *stream = fopen(path, "w");
    CHECK(stream != NULL, "cannot create %s", path);
    if (!stream) return;
    fputs("dim: 384\ndepth: 12\n", stream);
    fclose(stream);
    TensorFile file;
    CHECK(tensor_file_open(&file, path, &err) == -1, "open should fail");
    printf("  message: %s\n", err.message);
    CHECK(strstr(err.message, path) && strstr(err.message, "not an HDF5 file"), "message: %.900s", err.message);

    /* An empty file too. */
    stream = fopen(path, "w");
    if (stream) fclose(stream);
    CHECK(tensor_file_open(&file, path, &err) == -1, "open of an empty file should fail");
    CHECK(strstr(err.message, "not an HDF5 file"), "message: %.900s", err.message);
}

static void truncated_file(void) {
    char path[512];
    DdError err = {{0}};
    scratch_path("truncated.h5", path);
    CHECK(write_example(path, &err) == 0, "write: %.900s", err.message);
    long full = file_size(path);
    CHECK(full > 100, "file of %ld bytes", full);
    /* Cut it at several points: inside the superblock, inside the metadata,
     * and one byte short of the end. Each must fail cleanly at open or read. */
    const long cuts[] = {12, 100, full / 2, full - 1};
    for (int c = 0; c < 4; c++) {
        CHECK(write_example(path, &err) == 0, "write: %.900s", err.message);
        CHECK(truncate(path, cuts[c]) == 0, "truncate");
        TensorFile file;
        int opened = tensor_file_open(&file, path, &err) == 0;
        if (opened) {
            float weight[6];
            const TensorShape shape = {2, {2, 3}};
            int read = tensor_file_read(&file, "layer.0.weight", &shape, weight, &err);
            tensor_file_close(&file);
            CHECK(read == -1, "a file cut at %ld of %ld bytes was read without error", cuts[c], full);
        }
        printf("  cut at %ld of %ld bytes: %s\n", cuts[c], full, err.message);
        CHECK(strstr(err.message, path) != NULL, "message does not name the file: %.900s", err.message);
    }
}

static void atomic_write(void) {
    char path[512];
    DdError err = {{0}};
    scratch_path("atomic.h5", path);
    CHECK(write_example(path, &err) == 0, "write: %.900s", err.message);
    long before = file_size(path);

    /* An aborted rewrite leaves the old file and no temporary behind. */
    TensorFileWriter writer;
    CHECK(tensor_writer_open(&writer, path, &err) == 0, "open writer: %.900s", err.message);
    const float values[2] = {1, 2};
    const TensorShape shape = {1, {2}};
    CHECK(tensor_writer_add(&writer, "only", &shape, values, &err) == 0, "%.900s", err.message);
    CHECK(file_exists(writer.temp_path), "no temporary file while writing");
    CHECK(tensor_writer_add(&writer, "only", &shape, values, &err) == -1, "a name added twice");
    CHECK(strstr(err.message, "'only' written twice"), "message: %.900s", err.message);
    CHECK(tensor_writer_add(&writer, "a/b", &shape, values, &err) == -1, "a name with '/'");
    CHECK(strstr(err.message, "contains '/'"), "message: %.900s", err.message);
    tensor_writer_abort(&writer);
    CHECK(!file_exists(writer.temp_path), "temporary file left behind: %.900s", writer.temp_path);
    CHECK(file_size(path) == before, "old file changed by an aborted write");

    TensorFile file;
    CHECK(tensor_file_open(&file, path, &err) == 0, "%.900s", err.message);
    if (file.handle >= 0) {
        CHECK(tensor_file_contains(&file, "layer.0.bias") && !tensor_file_contains(&file, "only"),
              "old contents replaced by an aborted write");
        tensor_file_close(&file);
    }

    /* A committed rewrite replaces it. */
    CHECK(tensor_file_write(path, &(NamedTensor){"only", {1, {2}}, values}, 1, &err) == 0, "%.900s", err.message);
    CHECK(tensor_file_open(&file, path, &err) == 0, "%.900s", err.message);
    if (file.handle >= 0) {
        CHECK(tensor_file_contains(&file, "only") && !tensor_file_contains(&file, "layer.0.bias"),
              "committed write did not replace the file");
        tensor_file_close(&file);
    }

    /* A folder that does not exist: a clear error, nothing created. */
    CHECK(tensor_file_write(scratch_path("no_such_folder/x.h5", path), NULL, 0, &err) == -1,
          "write into a missing folder should fail");
    printf("  message: %s\n", err.message);
    CHECK(strstr(err.message, path) != NULL, "message: %.900s", err.message);
}

/* Datasets written by other tools: fp64 is converted, integers are refused. */
static void foreign_datasets(void) {
    char path[512];
    DdError err = {{0}};
    scratch_path("foreign.h5", path);
    hid_t handle = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(handle >= 0, "H5Fcreate");
    if (handle < 0) return;
    const double doubles[3] = {0.1, -2.5, 1e10};
    const int32_t ints[3] = {1, 2, 3};
    hsize_t dims[1] = {3};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t d64 = H5Dcreate2(handle, "fp64", H5T_IEEE_F64BE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d64, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, doubles);
    hid_t di = H5Dcreate2(handle, "int32", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(di, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ints);
    H5Gclose(H5Gcreate2(handle, "a_group", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Dclose(d64);
    H5Dclose(di);
    H5Sclose(space);
    H5Fclose(handle);

    TensorFile file;
    CHECK(tensor_file_open(&file, path, &err) == 0, "%.900s", err.message);
    if (test_state.failed_checks) return;
    float out[3];
    const TensorShape shape = {1, {3}};
    CHECK(tensor_file_read(&file, "fp64", &shape, out, &err) == 0, "%.900s", err.message);
    for (int i = 0; i < 3; i++)
        CHECK(out[i] == (float)doubles[i], "fp64[%d]: expected %g, found %g", i, doubles[i], out[i]);
    CHECK(tensor_file_read(&file, "int32", &shape, out, &err) == -1, "int32 read as float");
    printf("  message: %s\n", err.message);
    CHECK(strstr(err.message, "'int32'") && strstr(err.message, "floating-point"), "message: %.900s", err.message);
    TensorFileEntry *entries = NULL;
    int count = 0;
    CHECK(tensor_file_list(&file, &entries, &count, &err) == 0, "%.900s", err.message);
    CHECK(count == 1 && strcmp(entries[0].name, "fp64") == 0, "list: expected only fp64, found %d", count);
    free(entries);
    tensor_file_close(&file);
}

/* ---- ViT parameters ----------------------------------------------------------- */

static ViTConfig tiny_config(int dim) {
    ViTConfig cfg = {.patch_size = 8, .in_channels = 3, .dim = dim, .depth = 2, .num_heads = 2,
                     .ffn = FFN_MLP, .ffn_hidden = 64, .qkv_bias = 1, .registers = 4,
                     .layerscale_init = 1e-5f, .norm_eps = 1e-5f, .rope_base = 100.0f};
    snprintf(cfg.name, sizeof cfg.name, "tiny_dim%d", dim);
    return cfg;
}

/* A host parameter buffer of cfg's layout: *memory (free() it) and views
 * (vit_params_free(params, NULL) them). */
static size_t host_params(const ViTConfig *cfg, ViTParams *params, float **memory) {
    ViTTensorInfo *layout = calloc((size_t)vit_tensor_count(cfg), sizeof *layout);
    size_t count = vit_tensor_layout(cfg, layout);
    free(layout);
    *memory = calloc(count, sizeof(float));
    DdError err = {{0}};
    CHECK(vit_params_view(params, cfg, *memory, &err) == 0, "%.900s", err.message);
    return count;
}

static void vit_params_round_trip(void) {
    char path[512];
    DdError err = {{0}};
    scratch_path("vit.h5", path);
    ViTConfig cfg = tiny_config(32), wider = tiny_config(64);
    ViTParams saved, loaded, wider_params;
    float *saved_memory, *loaded_memory, *wider_memory;
    size_t count = host_params(&cfg, &saved, &saved_memory);
    host_params(&cfg, &loaded, &loaded_memory);
    host_params(&wider, &wider_params, &wider_memory);
    for (size_t i = 0; i < count && !test_state.failed_checks; i++)
        saved_memory[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;

    CHECK(vit_params_save(path, &cfg, &saved, &err) == 0, "save: %.900s", err.message);
    CHECK(vit_params_load(path, &cfg, &loaded, &err) == 0, "load: %.900s", err.message);
    CHECK(memcmp(saved_memory, loaded_memory, count * sizeof(float)) == 0,
          "parameters differ after the round trip");

    /* A model of another width: the first tensor whose shape differs is named. */
    CHECK(vit_params_load(path, &wider, &wider_params, &err) == -1, "a dim-32 file loaded as dim 64");
    printf("  message: %s\n", err.message);
    CHECK(strstr(err.message, path) && strstr(err.message, "'embeddings.patch_embeddings.weight'") &&
              strstr(err.message, "expected shape [64, 192], found [32, 192]"),
          "message: %.900s", err.message);

    /* A file without the parameters (the example file): the tensor is named. */
    scratch_path("not_vit.h5", path);
    CHECK(write_example(path, &err) == 0, "%.900s", err.message);
    CHECK(vit_params_load(path, &cfg, &loaded, &err) == -1, "loaded from a file without parameters");
    printf("  message: %s\n", err.message);
    CHECK(strstr(err.message, "'embeddings.patch_embeddings.weight'") && strstr(err.message, "not found"),
          "message: %.900s", err.message);
    vit_params_free(&saved, NULL);  /* the views; the host buffers are ours */
    vit_params_free(&loaded, NULL);
    vit_params_free(&wider_params, NULL);
    free(wider_memory);
    free(saved_memory);
    free(loaded_memory);
}

TEST_MAIN(TEST(round_trip), TEST(missing_tensor), TEST(wrong_shape), TEST(missing_file),
          TEST(not_an_hdf5_file), TEST(truncated_file), TEST(atomic_write), TEST(foreign_datasets),
          TEST(vit_params_round_trip))
