/*
 * cmd_export.c - `distill export RUN_DIR --student NAME OUT_DIR`: a student's
 * EMA weights as a Hugging Face DINOv3ViTModel folder (student_export.h).
 */
#include <getopt.h>
#include <stdio.h>

#include "tools/commands.h"
#include "tools/student_export.h"

static void print_export_help(FILE *out) {
    fprintf(out,
            "usage: distill export RUN_DIR --student NAME OUT_DIR\n"
            "\n"
            "Writes the EMA weights of student NAME from the newest verified checkpoint of\n"
            "RUN_DIR as OUT_DIR/model.safetensors (F32, Hugging Face DINOv3ViTModel names)\n"
            "and OUT_DIR/config.json, so that PyTorch loads it with\n"
            "    transformers.DINOv3ViTModel.from_pretrained(\"OUT_DIR\")\n"
            "The architecture comes from RUN_DIR/config.yaml. OUT_DIR is created if missing.\n");
}

int cmd_export(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        print_export_help(stdout);
        return 0;
    }
    static const struct option long_options[] = {{"student", required_argument, 0, 's'}, {0, 0, 0, 0}};
    const char *student = NULL;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (c != 's') {
            print_export_help(stderr);
            return 2;
        }
        student = optarg;
    }
    if (optind != argc - 2 || !student) {
        fprintf(stderr, "distill export: expected RUN_DIR, OUT_DIR and --student NAME, found %d arguments%s\n\n",
                argc - optind, student ? "" : " and no --student");
        print_export_help(stderr);
        return 2;
    }
    DdError err;
    if (student_export(argv[optind], student, argv[optind + 1], stdout, &err) != 0) {
        fprintf(stderr, "distill export: %s\n", err.message);
        return 1;
    }
    return 0;
}
