/*
 * cmd_import.c - `distill import SRC OUT.h5 --model MODEL.yaml [--heads FILE]
 * [--prefix P]`: DINOv3 weights (Hugging Face or original names, safetensors)
 * into the project's teacher weights file (weights_import.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "nn/vit_config.h"
#include "nn/weights_import.h"
#include "tools/commands.h"

static void print_import_help(FILE *out) {
    fprintf(out,
            "usage: distill import SRC OUT.h5 --model MODEL.yaml [--heads FILE] [--prefix P]\n"
            "\n"
            "Converts DINOv3 weights into the teacher weights file OUT.h5 (HDF5, fp32).\n"
            "SRC is a .safetensors file, a model.safetensors.index.json of shards, or a\n"
            "Hugging Face model folder, in Hugging Face DINOv3ViTModel names (embeddings.*,\n"
            "layer.N.attention.q_proj, ...) or the original DINOv3 names (blocks.N.attn.qkv,\n"
            "ls1.gamma, storage_tokens, ...); F32, F16 and BF16 are read. Every tensor's name\n"
            "and shape is checked against MODEL.yaml.\n"
            "\n"
            "  --model FILE   the architecture (configs/models/NAME.yaml), required\n"
            "  --heads FILE   DINO and iBOT heads in DINOv3 names (dino_head.mlp.0.weight, ...,\n"
            "                 dino_head.last_layer.weight, ibot_head.*); without it the teacher\n"
            "                 heads will be random, and OUT.h5 records that\n"
            "  --prefix P     the prefix in front of every name of SRC (default: found from\n"
            "                 the file, e.g. 'teacher.backbone.'; that of the heads always is)\n");
}

int cmd_import(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        print_import_help(stdout);
        return 0;
    }
    static const struct option long_options[] = {
        {"model", required_argument, 0, 'm'}, {"heads", required_argument, 0, 'e'},
        {"prefix", required_argument, 0, 'p'}, {0, 0, 0, 0},
    };
    const char *model_path = NULL;
    WeightsImport job = {.log = stdout};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'e': job.heads = optarg; break;
        case 'p': job.prefix = optarg; break;
        default: print_import_help(stderr); return 2;
        }
    }
    if (optind != argc - 2 || !model_path) {
        fprintf(stderr, "distill import: expected SRC, OUT.h5 and --model FILE, found %d arguments%s\n\n",
                argc - optind, model_path ? "" : " and no --model");
        print_import_help(stderr);
        return 2;
    }
    job.source = argv[optind];
    job.output = argv[optind + 1];
    DdError err;
    ViTConfig model;
    if (vit_config_load(&model, model_path, &err) != 0) {
        fprintf(stderr, "distill import: %s\n", err.message);
        return 1;
    }
    job.model = &model;
    if (weights_import(&job, &err) != 0) {
        fprintf(stderr, "distill import: %s\n", err.message);
        return 1;
    }
    return 0;
}
