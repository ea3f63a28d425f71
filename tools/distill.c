/*
 * distill.c - the one executable: `distill COMMAND [ARGS]`, a table of
 * subcommands (commands.h), each with its own --help.
 */
#include <stdio.h>
#include <string.h>

#include "nn/backend.h"
#include "tools/commands.h"

static const Command commands[] = {
    {"run", "distil the teacher into every student of a run (the demo without CONFIG)", cmd_run},
    {"plan", "plan ranks and images per rank of each group for N devices", cmd_plan},
    {"info", "print parameters, FLOPs and memory of a model or run config", cmd_info},
    {"bench", "time a training step and a teacher forward against the sgemm ceiling", cmd_bench},
    {"pack", "turn an image folder into HDF5 shards", cmd_pack},
    {"import", "convert DINOv3 safetensors weights into a teacher weights file", cmd_import},
    {"export", "write a student's EMA weights as a Hugging Face DINOv3ViT folder", cmd_export},
    {"top", "watch a run: images/s, busy %, loss and ETA per group, refreshed", cmd_top},
    {"plot", "plot images/s per group over iterations of a run as an SVG", cmd_plot},
};
static const int command_count = (int)(sizeof commands / sizeof commands[0]);

int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
    return 0;
}

static void print_usage(FILE *out) {
    fprintf(out, "usage: distill COMMAND [ARGS]   (distill COMMAND --help for its options)\n\n"
                 "dinodistill: one frozen teacher, many student ViTs, one run.\n\ncommands:\n");
    for (int i = 0; i < command_count; i++)
        fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    nn_cpu_select_blas_kernels(argv);
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    for (int i = 0; i < command_count; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "distill: unknown command '%s'\n\n", argv[1]);
    print_usage(stderr);
    return 2;
}
