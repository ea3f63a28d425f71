/*
 * cmd_bench.c - `distill bench`: times one student training step (forward,
 * backward, AdamW) and one teacher forward of a model YAML, and measures an
 * sgemm ceiling in the same run, so every figure is also a fraction of what
 * the machine's matmul reaches right now. --only train|forward times one of
 * the two and allocates only what that one needs (a forward alone: the
 * parameters and the forward activations, 4 B per parameter, not 16).
 * --compare-epilogues times the same again with the CUDA linear layers'
 * cuBLASLt epilogues off (nn_cuda_fuse_epilogues) and prints the ratio.
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

/* What a run times: both (the default), or one of them (--only). */
typedef enum BenchMode { BENCH_BOTH, BENCH_TRAIN, BENCH_FORWARD } BenchMode;
static const char *const bench_mode_names[] = {"both", "train", "forward"};

typedef struct BenchOptions {
    const char *model_path;
    const char *backend;
    BenchMode mode;
    int batch;
    int image_size;
    int steps;     /* 0: print what would be allocated, allocate and time nothing */
    int warmup;
    int compare_epilogues;   /* also time with the cuBLASLt epilogues off */
} BenchOptions;

/* Bytes a run holds on the backend, by kind, from the model's shapes. */
typedef struct BenchMemory {
    size_t parameters;           /* 4 B per parameter, + the bf16 copy of the block matrices where blocks are bf16 */
    size_t gradients_moments;    /* gradients and two AdamW moments: 12 B per parameter */
    size_t train_activations;    /* a training step's activations and backward scratch */
    size_t forward_activations;  /* a forward's activations, one block's buffers reused */
    size_t inputs;               /* the images, and dout[B, T, D] for the backward */
    size_t sgemm_probe;          /* the ceiling's matmul, allocated while it is measured */
} BenchMemory;

static void print_bench_help(FILE *out) {
    fprintf(out,
            "usage: distill bench MODEL.yaml [--only train|forward] [--batch N]\n"
            "                     [--image-size PX] [--steps N]\n"
            "                     [--warmup N] [--backend cpu|cpu-bf16|cuda|cuda-fp32]\n"
            "                     [--compare-epilogues]\n\n"
            "Times one student training step (forward + backward + AdamW) and one teacher\n"
            "forward (no activations kept) of the model, and an sgemm of the model's largest\n"
            "matmul shape in the same run. Prints images/s, achieved GFLOP/s and that as a\n"
            "fraction of the sgemm ceiling, the memory allocated on the backend, then one\n"
            "machine-readable line starting 'bench'.\n\n"
            "  --only MODE      train: the training step alone; forward: the teacher forward\n"
            "                   alone, with the parameters and forward activations only (no\n"
            "                   gradients, AdamW moments or training activations). Default both\n"
            "  --batch N        images per step (default 16)\n"
            "  --image-size PX  square crop side, a multiple of the patch size (default 224)\n"
            "  --steps N        timed steps; the median is reported (default 5); 0 prints the\n"
            "                   memory the run would allocate and allocates nothing\n"
            "  --warmup N       untimed steps first (default 1)\n"
            "  --backend NAME   cpu (default), cpu-bf16 (cpu with bf16 ViT blocks, as cuda),\n"
            "                   cuda (bf16 tensor-core matmuls) or cuda-fp32 (exact fp32\n"
            "                   matmuls: the ones compared with the CPU)\n"
            "  --compare-epilogues  (cuda backends) time everything a second time with the\n"
            "                   biases added and the bias gradients summed by kernels of their\n"
            "                   own instead of in cuBLASLt's epilogues, and print how much\n"
            "                   faster the fused run is (a ratio of the two, same process)\n\n"
            "distill bench data --help: crops/s per core of the data loader instead.\n");
}

static double peak_rss_mib(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss / 1024.0;
}

static int parse_bench_mode(BenchMode *mode, const char *value) {
    for (int m = BENCH_TRAIN; m <= BENCH_FORWARD; m++) {
        if (strcmp(value, bench_mode_names[m]) == 0) {
            *mode = (BenchMode)m;
            return 0;
        }
    }
    fprintf(stderr, "distill bench: expected train or forward for --only, found '%s'\n", value);
    return -1;
}

static int parse_bench_options(BenchOptions *o, int argc, char **argv) {
    static const struct option long_options[] = {
        {"batch", required_argument, 0, 'b'},  {"image-size", required_argument, 0, 's'},
        {"steps", required_argument, 0, 'n'},  {"warmup", required_argument, 0, 'w'},
        {"backend", required_argument, 0, 'k'}, {"only", required_argument, 0, 'o'},
        {"compare-epilogues", no_argument, 0, 'e'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0},
    };
    *o = (BenchOptions){.backend = "cpu", .mode = BENCH_BOTH, .batch = 16, .image_size = 224,
                        .steps = 5, .warmup = 1};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
        char *end = NULL;
        long value = 0;
        if (c == 'b' || c == 's' || c == 'n' || c == 'w') {
            value = strtol(optarg, &end, 10);
            if (*end || value < (c == 'w' || c == 'n' ? 0 : 1) || value > 100000) {
                fprintf(stderr, "distill bench: expected a %s integer for --%s, found '%s'\n",
                        c == 'w' || c == 'n' ? "non-negative" : "positive",
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
        case 'e': o->compare_epilogues = 1; break;
        case 'o':
            if (parse_bench_mode(&o->mode, optarg) != 0) return -1;
            break;
        default: return -1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "distill bench: expected one model file, found %d arguments\n", argc - optind);
        return -1;
    }
    o->model_path = argv[optind];
    if (o->compare_epilogues && strncmp(o->backend, "cuda", 4) != 0) {
        fprintf(stderr, "distill bench: --compare-epilogues weighs the cuBLASLt epilogues of the cuda backends; "
                "--backend is %s\n", o->backend);
        return -1;
    }
    return 0;
}

static int mode_trains(BenchMode mode) { return mode != BENCH_FORWARD; }
static int mode_forwards(BenchMode mode) { return mode != BENCH_TRAIN; }

/* The bytes a run of this mode allocates on the backend for batch B of S x S
 * px crops with T tokens; the sgemm probe is [N, C] @ [OC, C]^T -> [N, OC]. */
static BenchMemory bench_memory(const ViTConfig *cfg, const NnBackend *be, BenchMode mode, int B, int S, int T,
                                int N, int C, int OC) {
    const size_t f = sizeof(float), params = vit_tensor_layout(cfg, NULL);
    const int bf16 = be->block_bf16;   /* bf16 copies of the block matrices and the probe's operands */
    BenchMemory m = {.parameters = params * f + (bf16 ? vit_params_bf16_bytes(cfg, mode_trains(mode)) : 0)};
    m.inputs = (size_t)B * cfg->in_channels * S * S * f;
    if (mode_trains(mode)) {
        m.gradients_moments = 3 * params * f;
        m.train_activations = vit_activation_bytes(cfg, B, S, S, 1, bf16);
        m.inputs += (size_t)B * T * cfg->dim * f;
    }
    if (mode_forwards(mode)) m.forward_activations = vit_activation_bytes(cfg, B, S, S, 0, bf16);
    m.sgemm_probe = ((size_t)N * C + (size_t)OC * C + (size_t)N * OC) * (f + (bf16 ? 2 : 0));
    return m;
}

static size_t bench_memory_held(const BenchMemory *m) {
    return m->parameters + m->gradients_moments + m->train_activations + m->forward_activations +
           m->inputs;
}

/* "812.0 MiB" or "25.03 GiB" into out[32]: MiB at the least, so the line
 * parses alike for every model (cmd_info.c's in_bytes goes down to bytes) */
static const char *format_bytes(char *out, size_t bytes) {
    if (bytes >= (size_t)1 << 30) snprintf(out, 32, "%.2f GiB", bytes / (double)(1 << 30));
    else snprintf(out, 32, "%.1f MiB", bytes / (double)(1 << 20));
    return out;
}

/* "  memory: 117.7 MiB allocated on cpu = parameters 4.0 MiB + ...; peak RSS ..." */
static void print_bench_memory(const BenchMemory *m, const char *backend, int allocated) {
    char a[32], b[32];
    printf("  memory: %s %s on %s = parameters %s", format_bytes(a, bench_memory_held(m)),
           allocated ? "allocated" : "to allocate (--steps 0: nothing allocated)", backend,
           format_bytes(b, m->parameters));
    if (m->gradients_moments)
        printf(" + gradients and AdamW moments %s", format_bytes(a, m->gradients_moments));
    if (m->train_activations) printf(" + training activations %s", format_bytes(a, m->train_activations));
    if (m->forward_activations) printf(" + forward activations %s", format_bytes(a, m->forward_activations));
    printf(" + inputs %s, and %s for the sgemm probe while it runs; peak RSS %.1f MiB\n",
           format_bytes(a, m->inputs), format_bytes(b, m->sgemm_probe), peak_rss_mib());
}

/* The median seconds of `steps` training steps (forward, backward, AdamW)
 * after `warmup` untimed ones. */
static double time_training_steps(const NnBackend *be, const ViTConfig *cfg, ViTParams *params,
                                  ViTParams *grads, ViTParams *moment1, ViTParams *moment2,
                                  ViTActivations *train, const float *images, const float *dout,
                                  int warmup, int steps) {
    double times[32];
    for (int i = 0; i < warmup + steps; i++) {
        be->synchronize();
        double t0 = dd_now_seconds();
        be->zero(grads->memory, grads->count * sizeof(float));
        vit_forward(be, cfg, params, train, images, NULL);
        vit_backward(be, cfg, params, grads, train, dout, NULL, NULL);
        be->adamw_update(params->memory, grads->memory, moment1->memory, moment2->memory,
                         (long)params->count, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.04f, i + 1);
        be->synchronize();
        if (i >= warmup) times[i - warmup] = dd_now_seconds() - t0;
    }
    return median_of(times, steps);
}

/* The median seconds of `steps` forwards after `warmup` untimed ones. */
static double time_forwards(const NnBackend *be, const ViTConfig *cfg, const ViTParams *params,
                            ViTActivations *infer, const float *images, int warmup, int steps) {
    double times[32];
    for (int i = 0; i < warmup + steps; i++) {
        be->synchronize();
        double t0 = dd_now_seconds();
        vit_forward(be, cfg, params, infer, images, NULL);
        be->synchronize();
        if (i >= warmup) times[i - warmup] = dd_now_seconds() - t0;
    }
    return median_of(times, steps);
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
    const int B = o.batch, S = o.image_size, P = cfg.patch_size;
    if (S % P) {
        fprintf(stderr, "distill bench: expected an --image-size that is a multiple of %s's patch size %d, "
                "found %d\n", cfg.name, P, S);
        return 2;
    }
    const int T = 1 + cfg.registers + (S / P) * (S / P);
    const int ffn_width = cfg.ffn == FFN_SWIGLU ? 2 * cfg.ffn_hidden : cfg.ffn_hidden;
    const double flops_forward = vit_forward_flops(&cfg, S, S) * B;
    const int trains = mode_trains(o.mode), forwards = mode_forwards(o.mode);
    const BenchMemory memory = bench_memory(&cfg, be, o.mode, B, S, T, B * T, cfg.dim, ffn_width);

    printf("model %s on %s: batch %d, %dx%d px, %d tokens, %.2f GFLOP per image forward\n",
           cfg.name, be->name, B, S, S, T, flops_forward / B * 1e-9);
    if (o.steps == 0) {
        print_bench_memory(&memory, be->name, 0);
        printf("bench model=%s backend=%s only=%s batch=%d image_size=%d backend_bytes=%zu\n", cfg.name,
               be->name, bench_mode_names[o.mode], B, S, bench_memory_held(&memory));
        return 0;
    }

    ViTParams params = {0}, grads = {0}, moment1 = {0}, moment2 = {0};
    ViTActivations train = {0}, infer = {0};
    float *images = NULL, *dout = NULL;
    int status = 1;
    if (vit_params_alloc(&params, &cfg, be, &err) || vit_params_alloc_bf16(&params, &cfg, be, trains, &err) ||
        vit_params_init(&params, &cfg, be, 0, &err) ||
        (trains && (vit_params_alloc(&grads, &cfg, be, &err) || vit_params_alloc(&moment1, &cfg, be, &err) ||
                    vit_params_alloc(&moment2, &cfg, be, &err) ||
                    vit_activations_alloc(&train, &cfg, be, B, S, S, 1, &err))) ||
        (forwards && vit_activations_alloc(&infer, &cfg, be, B, S, S, 0, &err))) {
        char total[32];
        fprintf(stderr, "distill bench: %s (the run needs %s on %s in all: --steps 0 prints the parts)\n",
                err.message, format_bytes(total, bench_memory_held(&memory)), be->name);
        goto done;
    }
    images = device_random_buffer(be, (size_t)B * cfg.in_channels * S * S, 3, 1.0f);
    if (trains) dout = device_random_buffer(be, (size_t)B * T * cfg.dim, 4, 1e-3f);
    if (!images || (trains && !dout)) {
        fprintf(stderr, "distill bench: out of %s memory for inputs\n", be->name);
        goto done;
    }
    if (trains) vit_set_rope(&train, &cfg, be, 1.0f);
    if (forwards) vit_set_rope(&infer, &cfg, be, 1.0f);

    /* measured before and after the model, so a busy spell does not lower it */
    double ceiling = sgemm_ceiling_gflops(be, B * T, cfg.dim, ffn_width, 10);
    /* [0] as the backend runs; [1] with the cuBLASLt epilogues off (--compare-epilogues) */
    double train_s[2] = {0, 0}, forward_s[2] = {0, 0};
    for (int off = 0; off <= o.compare_epilogues; off++) {
        if (off) nn_cuda_fuse_epilogues(0);
        if (trains)
            train_s[off] = time_training_steps(be, &cfg, &params, &grads, &moment1, &moment2, &train, images,
                                               dout, o.warmup, o.steps);
        if (forwards) forward_s[off] = time_forwards(be, &cfg, &params, &infer, images, o.warmup, o.steps);
        if (off) nn_cuda_fuse_epilogues(1);
    }
    double ceiling_after = sgemm_ceiling_gflops(be, B * T, cfg.dim, ffn_width, 10);
    if (ceiling_after > ceiling) ceiling = ceiling_after;
    double train_gflops = trains ? 3.0 * flops_forward / train_s[0] * 1e-9 : 0;
    double forward_gflops = forwards ? flops_forward / forward_s[0] * 1e-9 : 0;

    /* The probe is the GEMM the blocks run: bf16 operands where they are
     * bf16 (block_bf16), else the fp32 matmul; the line says which. (The
     * key of the bench line stays sgemm_gflops for the scripts that read it.) */
    const char *ceiling_kind = be->block_bf16 ? "bf16 GEMM" : "sgemm";
    printf("  %s ceiling (%d x %d x %d):  %8.1f GFLOP/s\n", ceiling_kind, B * T, cfg.dim, ffn_width, ceiling);
    if (trains)
        printf("  training step  %8.3f s  %8.2f images/s  %8.1f GFLOP/s  %5.1f%% of %s\n", train_s[0],
               B / train_s[0], train_gflops, 100.0 * train_gflops / ceiling, ceiling_kind);
    if (forwards)
        printf("  forward        %8.3f s  %8.2f images/s  %8.1f GFLOP/s  %5.1f%% of %s\n", forward_s[0],
               B / forward_s[0], forward_gflops, 100.0 * forward_gflops / ceiling, ceiling_kind);
    if (o.compare_epilogues && trains)
        printf("  training step, epilogues off  %8.3f s  %8.2f images/s: fused runs %.3fx as fast\n", train_s[1],
               B / train_s[1], train_s[1] / train_s[0]);
    if (o.compare_epilogues && forwards)
        printf("  forward, epilogues off        %8.3f s  %8.2f images/s: fused runs %.3fx as fast\n", forward_s[1],
               B / forward_s[1], forward_s[1] / forward_s[0]);
    print_bench_memory(&memory, be->name, 1);
    /* the fields of what was not timed are left out */
    printf("bench model=%s backend=%s only=%s batch=%d image_size=%d sgemm_gflops=%.2f", cfg.name, be->name,
           bench_mode_names[o.mode], B, S, ceiling);
    if (trains) printf(" train_images_per_s=%.4f train_gflops=%.2f", B / train_s[0], train_gflops);
    if (forwards) printf(" forward_images_per_s=%.4f forward_gflops=%.2f", B / forward_s[0], forward_gflops);
    if (o.compare_epilogues && trains) printf(" train_epilogue_speedup=%.4f", train_s[1] / train_s[0]);
    if (o.compare_epilogues && forwards) printf(" forward_epilogue_speedup=%.4f", forward_s[1] / forward_s[0]);
    printf(" backend_bytes=%zu peak_rss_mib=%.1f\n", bench_memory_held(&memory), peak_rss_mib());
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
