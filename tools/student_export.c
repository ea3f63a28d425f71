/*
 * student_export.c - RUN_DIR -> the student's run config and newest
 * checkpoint -> its EMA weights -> a Hugging Face folder (student_export.h).
 */
#include "tools/student_export.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/checkpoint.h"
#include "nn/tensor_file.h"
#include "nn/vit.h"
#include "nn/weights_export.h"
#include "tools/run_config.h"

static void print_warning(void *log, const char *message) {
    if (log) fprintf(log, "export: warning: %s\n", message);
}

/* The student called name in the run's config.yaml. */
static int find_student(const RunConfig *run, const char *config_path, const char *name,
                        const StudentConfig **student, DdError *err) {
    char names[512] = "";
    size_t used = 0;
    for (int i = 0; i < run->student_count; i++) {
        if (strcmp(run->students[i].name, name) == 0) {
            *student = &run->students[i];
            return 0;
        }
        if (used < sizeof names)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s'%s'", i ? ", " : "", run->students[i].name);
    }
    return dd_fail(err, "%s: expected a student called '%s', found only %s", config_path, name, names);
}

int student_export(const char *run_dir, const char *student_name, const char *out_dir, FILE *log, DdError *err) {
    char config_path[CHECKPOINT_PATH_MAX + 16], folder[CHECKPOINT_PATH_MAX], state_path[CHECKPOINT_PATH_MAX + 80];
    RunConfig *run = malloc(sizeof *run);
    if (!run) return dd_fail(err, "out of memory for the run config");
    const StudentConfig *student = NULL;
    long iteration = 0;
    int status = 0;
    int found = checkpoint_find_latest(run_dir, folder, sizeof folder, &iteration, print_warning, log, err);
    if (found == 0)
        status = dd_fail(err, "%s: expected a verified checkpoint in %s/checkpoints, found none", run_dir, run_dir);
    else if (found < 0)
        status = -1;
    if (status == 0) {   /* the config the checkpoint was written with, else the run's */
        snprintf(config_path, sizeof config_path, "%s/config.yaml", folder);
        if (access(config_path, F_OK) != 0) snprintf(config_path, sizeof config_path, "%s/config.yaml", run_dir);
        status = run_config_load(run, config_path, err);
    }
    if (status == 0) status = find_student(run, config_path, student_name, &student, err);
    const ViTConfig *cfg = student ? &student->model : NULL;
    float *memory = NULL;
    ViTParams ema = {0};
    TensorFile file;
    if (status == 0) {
        snprintf(state_path, sizeof state_path, "%s/student_%s.h5", folder, student_name);
        memory = malloc(vit_tensor_layout(cfg, NULL) * sizeof(float));
        if (!memory) status = dd_fail(err, "model '%s': out of host memory", cfg->name);
        if (status == 0) status = vit_params_view(&ema, cfg, memory, err);
        if (status == 0 && (status = tensor_file_open(&file, state_path, err)) == 0) {
            status = tensor_file_read_vit_params(&file, "ema.", cfg, &ema, err);
            tensor_file_close(&file);
        }
    }
    if (status == 0) status = weights_export_hugging_face(out_dir, cfg, &ema, run->crops.global_size, err);
    if (status == 0 && log)
        fprintf(log, "export: the EMA of student '%s' (model '%s', %zu parameters) at iteration %ld -> "
                     "%s/model.safetensors, %s/config.json\n",
                student_name, cfg->name, vit_param_count(cfg), iteration, out_dir, out_dir);
    free(ema.blocks);
    free(memory);
    free(run);
    return status;
}
