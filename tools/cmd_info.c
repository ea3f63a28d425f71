/*
 * cmd_info.c - `distill info FILE.yaml... [--batch N]`: for every model of the
 * model or run files given, its parameters (backbone; DINO and iBOT heads,
 * MLP and prototypes apart), its forward FLOPs per crop at the global and
 * local crop sizes, and the memory one rank needs for it with N images.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/teacher_payload.h"
#include "nn/vit.h"
#include "schedule/cost_model.h"
#include "tools/commands.h"
#include "tools/run_config.h"

enum { DEFAULT_BATCH = 32, MAX_BATCH = 1 << 16 };

static const char usage[] =
    "usage: distill info FILE.yaml... [--batch N] [--bf16-blocks]\n"
    "\n"
    "For every model of a model file (configs/models/) or of a run file (configs/runs/:\n"
    "the teacher, then each student), prints its parameters (backbone; DINO and iBOT\n"
    "heads, MLP and prototypes apart), its forward FLOPs per crop at the global and\n"
    "local crop sizes (the run's crops, else 256 and 112 px), and its memory per rank\n"
    "with N images per rank (default 32), each cut into the global and local crops\n"
    "(the run's, else 2 x 256 px + 8 x 112 px):\n"
    "  trained (students, model files): 20 B per parameter (weights, gradients, AdamW\n"
    "      m and v, EMA) + training activations of every crop;\n"
    "  frozen (the teacher of a run): 4 B per parameter + inference activations of\n"
    "      the global crops.\n"
    "--bf16-blocks: as on the cuda backend (and cpu-bf16): the blocks' inner activations\n"
    "in bf16 and bf16 copies of the block matrices in the state (2 B per parameter\n"
    "trained, one block's frozen); without\n"
    "it, every activation in fp32, as on cpu and cuda-fp32. `distill plan` uses bf16 blocks.\n"
    "A file that does not load prints the loader's message and exits with status 1.\n";

/* 21.6M, 6.72G, 840K: a count in 6 characters or so. */
static const char *with_unit(double value, char *out, size_t cap) {
    static const char units[] = " KMGTP";
    int u = 0;
    while (value >= 1000 && u < 5) value /= 1000, u++;
    if (u == 0) snprintf(out, cap, "%.0f", value);
    else snprintf(out, cap, value < 10 ? "%.2f%c" : "%.1f%c", value, units[u]);
    return out;
}

/* 1.5 GiB, 300.2 MiB: bytes in binary units. */
static const char *in_bytes(double bytes, char *out, size_t cap) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
    snprintf(out, cap, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
    return out;
}

/* The column titles name the crop sizes, so they are printed again when a
 * file's crops differ from the last ones shown. */
static void print_header(const CropConfig *crops) {
    char global[24], local[24];
    snprintf(global, sizeof global, "@%dpx", crops->global_size);
    snprintf(local, sizeof local, "@%dpx", crops->local_size);
    printf("%-8s %-16s %9s %9s %9s %9s %9s  %8s %8s  %10s %10s %10s\n", "", "", "", "DINO head", "", "iBOT head",
           "", "FLOPs", "FLOPs", "weights", "activ-", "memory");
    printf("%-8s %-16s %9s %9s %9s %9s %9s  %8s %8s  %10s %10s %10s\n", "role", "model", "backbone", "MLP",
           "protos", "MLP", "protos", global, local, "+ state", "ations", "per rank");
}

static void print_row(const char *role, const ViTConfig *cfg, const ModelCost *c) {
    char v[11][24];
    printf("%-8s %-16s %9s %9s %9s %9s %9s  %8s %8s  %10s %10s %10s\n", role, cfg->name,
           with_unit((double)c->backbone, v[0], 24), with_unit((double)c->dino_mlp, v[1], 24),
           with_unit((double)c->dino_prototypes, v[2], 24), with_unit((double)c->ibot_mlp, v[3], 24),
           with_unit((double)c->ibot_prototypes, v[4], 24), with_unit(c->flops_global, v[5], 24),
           with_unit(c->flops_local, v[6], 24), in_bytes(c->state_bytes, v[7], 24),
           in_bytes(c->activation_bytes, v[8], 24), in_bytes(c->state_bytes + c->activation_bytes, v[9], 24));
}

/* Prints the rows of one file; -1 (message printed) if it does not load.
 * shown: the crops of the last header, NULL before the first. */
static int print_file(const char *path, int batch, int bf16, CropConfig *shown, int *header_printed) {
    static const ConfigSchema *const kinds[] = {&vit_config_schema, &run_config_schema};
    DdError err = {{0}};
    RunConfig run;
    ViTConfig model;
    CropConfig crops;
    int is_run = config_pick_schema(kinds, 2, path) == 1;
    int rc = is_run ? run_config_load(&run, path, &err) : vit_config_load(&model, path, &err);
    if (rc == 0 && is_run) crops = run.crops;
    else if (rc == 0) rc = config_set_defaults(&crop_config_schema, &crops, &err);
    if (rc) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    if (!*header_printed || memcmp(shown, &crops, sizeof crops) != 0) {
        if (*header_printed) printf("\n");
        print_header(&crops);
        *shown = crops;
        *header_printed = 1;
    }
    /* no masks here: the iBOT rows and the slice's buffers are `distill plan`'s */
    const CropShape shape = {.global_size = crops.global_size, .global_count = crops.global_count,
                             .local_size = crops.local_size, .local_count = crops.local_count};
    if (!is_run) {
        ModelCost c = model_cost(&model, &shape, batch, 0, bf16);
        print_row("model", &model, &c);
        return 0;
    }
    ModelCost teacher = model_cost(&run.teacher.model, &shape, batch, 1, bf16);
    print_row("teacher", &run.teacher.model, &teacher);
    for (int i = 0; i < run.student_count; i++) {
        ModelCost c = model_cost(&run.students[i].model, &shape, batch, 0, bf16);
        print_row("student", &run.students[i].model, &c);
    }
    /* what the teacher sends: rows of bf16 bottlenecks, never pixels */
    const ViTConfig *t = &run.teacher.model;
    const int side = crops.global_size / t->patch_size, samples = 4096;
    double bytes = payload_mean_bytes(&run.objective.ibot_mask, run.seed, samples, crops.global_count, side, side,
                                      t->dino_head.bottleneck, t->ibot_head.bottleneck);
    printf("%-8s teacher rows: %.1f KB per image per student group (bf16; masks of %d sampled images), "
           "%.2f MB per iteration per group\n", "wire", bytes / 1e3, samples, bytes * run.global_batch / 1e6);
    return 0;
}

static int parse_batch(const char *text, int *batch) {
    char *end = NULL;
    long value = text ? strtol(text, &end, 10) : 0;
    if (!text || *end || value < 1 || value > MAX_BATCH) {
        fprintf(stderr, "distill info: expected an integer in [1, %d] after --batch, found '%s'\n", MAX_BATCH,
                text ? text : "nothing");
        return -1;
    }
    *batch = (int)value;
    return 0;
}

int cmd_info(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    int batch = DEFAULT_BATCH, files = 0, bf16 = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batch") == 0) {
            if (parse_batch(i + 1 < argc ? argv[i + 1] : NULL, &batch)) return 2;
            i++;
        } else if (strcmp(argv[i], "--bf16-blocks") == 0) {
            bf16 = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "distill info: unknown option '%s'\n\n%s", argv[i], usage);
            return 2;
        } else {
            files++;
        }
    }
    if (files == 0) {
        fputs(usage, stderr);
        return 2;
    }
    int failed = 0, header_printed = 0;
    CropConfig shown;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--batch") == 0) i++;
        else if (strcmp(argv[i], "--bf16-blocks") == 0) continue;
        else if (print_file(argv[i], batch, bf16, &shown, &header_printed)) failed = 1;
    }
    if (header_printed)
        printf("\nFLOPs: one forward of one crop. Memory per rank for %d images per rank: trained models keep\n"
               "20 B per parameter and training activations of every crop and DINO head; a run's frozen\n"
               "teacher keeps 4 B per parameter and inference activations of the global crops and head MLPs\n"
               "(`distill plan` adds the iBOT head on masked patches and a slice's targets and crops).\n"
               "%s\n", batch, bf16 ? "Blocks in bf16 (as on cuda): their inner activations in bf16, and bf16 "
                                    "copies of the block matrices (a trained model's all, a frozen one's one block's)."
                                  : "Every activation in fp32 (as on cpu; --bf16-blocks for cuda's bf16 blocks).");
    return failed;
}
