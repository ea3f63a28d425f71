/*
 * cmd_bench.c - `distill bench`: times one student training step (forward,
 * backward, AdamW) and one teacher forward of a model YAML, and measures an
 * sgemm ceiling in the same run, so every figure is also a fraction of what
 * the machine's matmul reaches right now.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "nn/backend.h"
#include "nn/clock.h"
#include "nn/vit.h"
#include "nn/vit_config.h"
#include "tools/commands.h"
#include "tools/device_timing.h"

typedef struct BenchOptions {
    const char *model_path;
    const char *backend;
    int batch;
    int image_size;
    int steps;
    int warmup;
} BenchOptions;

static void print_bench_help(FILE *out) {
    fprintf(out,
            "usage: distill bench MODEL.yaml [--batch N] [--image-size PX] [--steps N]\n"
            "                     [--warmup N] [--backend cpu|cuda]\n\n"
            "Times one student training step (forward + backward + AdamW) and one teacher\n"
            "forward (no activations kept) of the model, and an sgemm of the model's largest\n"
            "matmul shape in the same run. Prints images/s, achieved GFLOP/s and that as a\n"
            "fraction of the sgemm ceiling, then one machine-readable line starting 'bench'.\n\n"
            "  --batch N        images per step (default 16)\n"
            "  --image-size PX  square crop side, a multiple of the patch size (default 224)\n"
            "  --steps N        timed steps; the median is reported (default 5)\n"
            "  --warmup N       untimed steps first (default 1)\n"
            "  --backend NAME   cpu (default) or cuda\n\n"
            "distill bench data --help: crops/s per core of the data loader instead.\n");
}

static double peak_rss_mib(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss / 1024.0;
}

static int parse_bench_options(BenchOptions *o, int argc, char **argv) {
    static const struct option long_options[] = {
        {"batch", required_argument, 0, 'b'},  {"image-size", required_argument, 0, 's'},
        {"steps", required_argument, 0, 'n'},  {"warmup", required_argument, 0, 'w'},
        {"backend", required_argument, 0, 'k'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (BenchOptions){.backend = "cpu", .batch = 16, .image_size = 224, .steps = 5, .warmup = 1};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        char *end = NULL;
        long value = 0;
        if (c != 'k' && c != 'h' && c != '?') {
            value = strtol(optarg, &end, 10);
            if (*end || value < (c == 'w' ? 0 : 1) || value > 100000) {
                fprintf(stderr, "distill bench: expected a positive integer for --%s, found '%s'\n",
                        long_options[c == 'b' ? 0 : c == 's' ? 1 : c == 'n' ? 2 : 3].name, optarg);
                return -1;
            }
        }
        switch (c) {
        case 'b': o->batch = (int)value; break;
        case 's': o->image_size = (int)value; break;
        case 'n': o->steps = (int)value > 31 ? 31 : (int)value; break;
        case 'w': o->warmup = (int)value; break;
        case 'k': o->backend = optarg; break;
        default: return -1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "distill bench: expected one model file, found %d arguments\n", argc - optind);
        return -1;
    }
    o->model_path = argv[optind];
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "data") == 0) return cmd_bench_data(argc - 1, argv + 1);
    if (wants_help(argc, argv)) {
        print_bench_help(stdout);
        return 0;
    }
    BenchOptions o;
    if (parse_bench_options(&o, argc, argv) != 0) {
        print_bench_help(stderr);
        return 2;
    }
    DdError err;
    ViTConfig cfg;
    if (vit_config_load(&cfg, o.model_path, &err) != 0) {
        fprintf(stderr, "distill bench: %s\n", err.message);
        return 1;
    }
    char why[256];
    const NnBackend *be = nn_backend_by_name(o.backend, why, sizeof why);
    if (!be) {
        fprintf(stderr, "distill bench: %s\n", why);
        return 1;
    }
    const int B = o.batch, S = o.image_size, C = cfg.in_channels;
    const size_t image_count = (size_t)B * C * S * S;

    ViTParams params = {0}, grads = {0}, moment1 = {0}, moment2 = {0};
    ViTActivations train = {0}, infer = {0};
    float *images = NULL, *dout = NULL;
    int status = 1;
    if (vit_params_alloc(&params, &cfg, be, &err) || vit_params_init(&params, &cfg, be, 0, &err) ||
        vit_params_alloc(&grads, &cfg, be, &err) || vit_params_alloc(&moment1, &cfg, be, &err) ||
        vit_params_alloc(&moment2, &cfg, be, &err) ||
        vit_activations_alloc(&train, &cfg, be, B, S, S, 1, &err) ||
        vit_activations_alloc(&infer, &cfg, be, B, S, S, 0, &err)) {
        fprintf(stderr, "distill bench: %s\n", err.message);
        goto done;
    }
    images = device_random_buffer(be, image_count, 3, 1.0f);
    dout = device_random_buffer(be, (size_t)B * train.T * cfg.dim, 4, 1e-3f);
    if (!images || !dout) {
        fprintf(stderr, "distill bench: out of %s memory for inputs\n", be->name);
        goto done;
    }
    vit_set_rope(&train, &cfg, be, 1.0f);
    vit_set_rope(&infer, &cfg, be, 1.0f);

    const int ffn_width = cfg.ffn == FFN_SWIGLU ? 2 * cfg.ffn_hidden : cfg.ffn_hidden;
    /* measured before and after the model, so a busy spell does not lower it */
    double ceiling = sgemm_ceiling_gflops(be, B * train.T, cfg.dim, ffn_width, 10);

    double train_times[32], forward_times[32];
    for (int i = 0; i < o.warmup + o.steps; i++) {
        be->synchronize();
        double t0 = dd_now_seconds();
        be->zero(grads.memory, grads.count * sizeof(float));
        vit_forward(be, &cfg, &params, &train, images, NULL);
        vit_backward(be, &cfg, &params, &grads, &train, dout, NULL);
        be->adamw_update(params.memory, grads.memory, moment1.memory, moment2.memory,
                         (long)params.count, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.04f, i + 1);
        be->synchronize();
        if (i >= o.warmup) train_times[i - o.warmup] = dd_now_seconds() - t0;
    }
    for (int i = 0; i < o.warmup + o.steps; i++) {
        be->synchronize();
        double t0 = dd_now_seconds();
        vit_forward(be, &cfg, &params, &infer, images, NULL);
        be->synchronize();
        if (i >= o.warmup) forward_times[i - o.warmup] = dd_now_seconds() - t0;
    }
    double ceiling_after = sgemm_ceiling_gflops(be, B * train.T, cfg.dim, ffn_width, 10);
    if (ceiling_after > ceiling) ceiling = ceiling_after;
    double train_s = median_of(train_times, o.steps), forward_s = median_of(forward_times, o.steps);
    double flops_forward = vit_forward_flops(&cfg, S, S) * B;
    double train_gflops = 3.0 * flops_forward / train_s * 1e-9;
    double forward_gflops = flops_forward / forward_s * 1e-9;
    double state_mib = (4.0 * params.count + train.count + infer.count) * 4.0 / (1 << 20);

    printf("model %s on %s: batch %d, %dx%d px, %d tokens, %.2f GFLOP per image forward\n",
           cfg.name, be->name, B, S, S, train.T, flops_forward / B * 1e-9);
    printf("  sgemm ceiling (%d x %d x %d):  %8.1f GFLOP/s\n", B * train.T, cfg.dim, ffn_width, ceiling);
    printf("  training step  %8.3f s  %8.2f images/s  %8.1f GFLOP/s  %5.1f%% of sgemm\n", train_s,
           B / train_s, train_gflops, 100.0 * train_gflops / ceiling);
    printf("  forward        %8.3f s  %8.2f images/s  %8.1f GFLOP/s  %5.1f%% of sgemm\n", forward_s,
           B / forward_s, forward_gflops, 100.0 * forward_gflops / ceiling);
    printf("  memory: %.1f MiB planned (parameters, gradients, moments, activations), peak RSS %.1f MiB\n",
           state_mib, peak_rss_mib());
    printf("bench model=%s backend=%s batch=%d image_size=%d sgemm_gflops=%.2f train_images_per_s=%.4f "
           "train_gflops=%.2f forward_images_per_s=%.4f forward_gflops=%.2f peak_rss_mib=%.1f\n",
           cfg.name, be->name, B, S, ceiling, B / train_s, train_gflops, B / forward_s, forward_gflops,
           peak_rss_mib());
    status = 0;
done:
    if (images) be->free(images);
    if (dout) be->free(dout);
    vit_activations_free(&train, be);
    vit_activations_free(&infer, be);
    vit_params_free(&params, be);
    vit_params_free(&grads, be);
    vit_params_free(&moment1, be);
    vit_params_free(&moment2, be);
    return status;
}
