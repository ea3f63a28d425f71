/*
 * cmd_plan.c - `distill plan CONFIG --devices N [--device-memory GIB]
 * [--device-tflops X] [--even-slices] [--reference R1,R2,...]`: the group
 * planner (schedule/planner.h) on a run file: per group its ranks, images per
 * rank, predicted seconds per iteration, idle fraction and bytes per
 * iteration, then the ETA of the whole schedule. With --calibrate, each
 * group's speed is first measured on this process's device (tools/calibrate.h)
 * and the plan is for devices like it. Also the planner's inputs for a run
 * (run_plan_inputs, run_plan_devices: the config's devices section), which
 * `distill run` plans with.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/teacher_payload.h"
#include "schedule/cost_model.h"
#include "tools/calibrate.h"
#include "tools/commands.h"
#include "schedule/planner.h"
#include "tools/run_config.h"

#define GIB 1073741824.0

static const char usage[] =
    "usage: distill plan CONFIG --devices N [--device-memory GIB] [--device-tflops X]\n"
    "                    [--even-slices] [--no-spread] [--reference R1,R2,...]\n"
    "                    [--calibrate [--backend cpu|cpu-bf16|cuda|cuda-fp32]]\n"
    "\n"
    "Plans a run on N identical devices: how many ranks the teacher and each student\n"
    "get and how many images each rank takes, so that the iteration time (the slowest\n"
    "group) is as small as possible within device memory. Prints per group: ranks,\n"
    "images per rank, teacher images its ranks compute in their spare time, the\n"
    "micro-batch that fits the memory, predicted seconds per iteration, idle fraction\n"
    "(mean over its ranks), bytes per iteration (teacher rows sent or received;\n"
    "gradients all-reduced per rank), memory per rank; then the ETA of iterations +\n"
    "cooldown. Ranks fixed in the config are kept.\n"
    "\n"
    "  --devices N          devices (ranks) of the job, required\n"
    "  --device-memory GIB  memory of one device (default: the config's devices:\n"
    "                       memory_gib, else 80)\n"
    "  --device-tflops X    peak dense TFLOP/s of one device (default: devices:\n"
    "                       peak_tflops, else 790, H100 bf16); a group without a\n"
    "                       sustained_tflops sustains 60% of it (teacher), 45% (students)\n"
    "  --even-slices        every rank of a group takes the same number of images\n"
    "  --no-spread          teacher images only on the teacher's ranks (by default\n"
    "                       student ranks with spare time take some, unless the\n"
    "                       config says teacher: {spread: false})\n"
    "  --reference R1,...   also predict the reference's layout: the teacher spread\n"
    "                       over every device, student s trained on Rs devices\n"
    "  --calibrate          first time each group on this machine's device (models at\n"
    "                       1 and 2 blocks, extrapolated to their depth) and plan for\n"
    "                       devices like it: prints the speeds and a devices: section\n"
    "                       that gives them in the config instead\n"
    "  --backend NAME       the device --calibrate times: cpu (default), cpu-bf16\n"
    "                       (cpu with bf16 ViT blocks, as cuda), cuda (bf16\n"
    "                       tensor-core matmuls) or cuda-fp32 (exact fp32 matmuls)\n"
    "\n"
    "Memory per rank is `distill info --bf16-blocks`'s model (GPUs run the cuda\n"
    "backend, whose ViT blocks keep bf16 activations), except that a student rank keeps\n"
    "1/n of its group's AdamW moments and EMA (n ranks) where the config says\n"
    "shard_optimizer_state: true, or, with auto (the default), where that makes the\n"
    "group faster on its ranks. Gradient collectives in fp32 over the links\n"
    "(devices: link_gb_per_s, 47 GB/s by default): the sums and the gather (a\n"
    "sharded state's with its block matrices in bf16), the part that\n"
    "overlap_gradient_sums runs during the backward hidden behind it.\n"
    "See docs/planning.md.\n";

static CropShape run_crop_shape(const RunConfig *c) {
    const IbotMaskConfig *m = &c->objective.ibot_mask;
    return (CropShape){c->crops.global_size, c->crops.global_count, c->crops.local_size, c->crops.local_count,
                       m->probability * 0.5 * (m->min_ratio + m->max_ratio), m->probability > 0 ? m->max_ratio : 0};
}

/* A student's sustained FLOP/s from the devices section; 0 if not given. */
static double student_sustained_flops(const RunConfig *c, const char *name) {
    for (int i = 0; i < c->devices.student_count; i++)
        if (strcmp(c->devices.students[i].name, name) == 0) return c->devices.students[i].sustained_tflops * 1e12;
    return 0;
}

/* The devices section describes GPUs, which run the "cuda" table: blocks
 * in bf16 (activations and a bf16 copy of each backbone). */
enum { PLAN_BLOCK_BF16 = 1 };

void run_plan_inputs(const RunConfig *c, PlanGroupInput *groups) {
    const CropShape crops = run_crop_shape(c);
    const ViTConfig *t = &c->teacher.model;
    const RankState teacher_state = rank_state(t, NULL, &crops, 1, PLAN_BLOCK_BF16);   /* nothing shardable */
    groups[0] = (PlanGroupInput){
        .name = t->name,
        .is_teacher = 1,
        .flops_per_image = teacher_flops_per_image(t, &crops),
        .sustained_flops = c->devices.teacher.sustained_tflops * 1e12,
        .state_bytes = teacher_state.replicated_bytes,
        .activation_bytes_per_image = rank_activation_bytes(t, &crops, 1, 1, PLAN_BLOCK_BF16),
        .fixed_ranks = c->teacher.ranks,
    };
    for (int s = 0; s < c->student_count; s++) {
        const ViTConfig *m = &c->students[s].model;
        const RankState state = rank_state(m, t, &crops, 0, PLAN_BLOCK_BF16);
        const int sharded = c->shard_optimizer_state != SHARD_NEVER;   /* each rank may keep 1/n of the AdamW
                                                                         * moments and EMA */
        groups[1 + s] = (PlanGroupInput){
            .name = c->students[s].name,
            .flops_per_image = student_flops_per_image(m, t, &crops),
            .sustained_flops = student_sustained_flops(c, c->students[s].name),
            .state_bytes = state.replicated_bytes + (sharded ? 0 : state.shardable_bytes),
            .sharded_state_bytes = sharded ? state.shardable_bytes : 0,
            .shard_auto = c->shard_optimizer_state == SHARD_AUTO,
            .activation_bytes_per_image = rank_activation_bytes(m, &crops, 1, 0, PLAN_BLOCK_BF16),
            .slice_bytes_per_image = rank_slice_bytes_per_image(m, t, &crops),
            .gradient_bytes = PLAN_GRADIENT_BYTES_PER_PARAM * (double)trained_param_count(m),
            .gather_bytes = (double)student_gather_bytes(m, PLAN_BLOCK_BF16),
            .overlap_sums = c->overlap_gradient_sums,
            .fixed_ranks = c->students[s].ranks,
        };
    }
}

PlanDevices run_plan_devices(const RunConfig *c, int count) {
    const DevicesConfig *d = &c->devices;
    return (PlanDevices){.count = count, .memory_bytes = d->memory_gib * GIB, .peak_flops = d->peak_tflops * 1e12,
                         .link_bytes_per_second = d->link_gb_per_s * 1e9};
}

int plan_run(const RunConfig *config, int world_size, Plan *plan, DdError *err) {
    PlanGroupInput groups[PLAN_MAX_GROUPS];
    run_plan_inputs(config, groups);
    PlanDevices devices = run_plan_devices(config, world_size);
    const PlanOptions options = {.spread_teacher = config->teacher.spread};
    return plan_groups(plan, groups, 1 + config->student_count, config->global_batch, &devices, &options, err);
}

static int parse_number(const char *option, const char *text, double low, double high, double *value) {
    char *end = NULL;
    double v = text ? strtod(text, &end) : NAN;
    if (!text || *end || !(v >= low && v <= high)) {
        fprintf(stderr, "distill plan: expected a number in [%g, %g] after %s, found '%s'\n", low, high, option,
                text ? text : "nothing");
        return -1;
    }
    *value = v;
    return 0;
}

/* "48,48,80,120" -> ranks[0..count-1]; count must be the students'. */
static int parse_ranks(const char *text, int *ranks, int expected) {
    int n = 0;
    const char *p = text;
    while (p && *p && n < PLAN_MAX_GROUPS) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > PLAN_MAX_DEVICES || (*end && *end != ',')) break;
        ranks[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (!p || *p || n != expected) {
        fprintf(stderr, "distill plan: expected %d comma-separated rank counts after --reference (one per "
                        "student), found '%s'\n", expected, text ? text : "nothing");
        return -1;
    }
    return 0;
}

/* 1.2 GB, 340 KB: bytes in decimal units, as the wire is counted. */
static const char *in_decimal_bytes(double bytes, char *out, size_t cap) {
    static const char *const units[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (bytes >= 1000 && u < 4) bytes /= 1000, u++;
    snprintf(out, cap, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
    return out;
}

static void print_eta(double seconds) {
    long s = (long)llround(seconds);
    printf("%ldd %02ldh %02ldm", s / 86400, s / 3600 % 24, s / 60 % 60);
}

/* "4x1024", "26x111+11x110": images per rank of a group's plan. */
static void format_images(const GroupPlan *p, char *out, size_t cap) {
    if (p->ranks_with_most == p->ranks || p->most_images == 0) snprintf(out, cap, "%d", p->most_images);
    else snprintf(out, cap, "%dx%d+%dx%d", p->ranks_with_most, p->most_images, p->ranks - p->ranks_with_most,
                  p->most_images - 1);
}

/* A student group's hosted teacher images: "-", or "12 (3-4/rank)". */
static void format_hosted(const GroupPlan *p, char *out, size_t cap) {
    if (p->teacher_images == 0) snprintf(out, cap, "-");
    else if (p->teacher_images_least == p->teacher_images_most)
        snprintf(out, cap, "%d (%d/rank)", p->teacher_images, p->teacher_images_most);
    else snprintf(out, cap, "%d (%d-%d/rank)", p->teacher_images, p->teacher_images_least, p->teacher_images_most);
}

static void print_plan(const char *title, const Plan *plan, const RunConfig *c, const PlanGroupInput *groups,
                       double row_bytes, int shared_teacher) {
    printf("%s\n", title);
    printf("  %-8s %-14s %6s %14s %16s %6s %9s %7s %11s %13s %11s\n", "role", "group", "ranks", "images/rank",
           "+teacher images", "micro", "s/iter", "idle", "rows/iter", "grads/rank", "mem/rank");
    for (int g = 0; g < plan->group_count; g++) {
        const GroupPlan *p = &plan->groups[g];
        char images[32], hosted[32], wire[24], grads[24], memory[24];
        format_images(p, images, sizeof images);
        if (g == 0) snprintf(hosted, sizeof hosted, "-");
        else format_hosted(p, hosted, sizeof hosted);
        /* the teacher sends each student group its rows; a student receives them */
        double rows = g == 0 ? row_bytes * c->global_batch * (plan->group_count - 1) : row_bytes * c->global_batch;
        /* the sums, then the all-reduce's second half or a sharded state's gather */
        const double after_sums = p->sharded_state ? groups[g].gather_bytes : groups[g].gradient_bytes;
        double gradients = p->ranks > 1 ? groups[g].gradient_bytes + after_sums : 0;
        if (shared_teacher && g == 0) snprintf(memory, sizeof memory, "sharded");
        else snprintf(memory, sizeof memory, "%.1f GiB", p->memory_bytes / GIB);
        printf("  %-8s %-14s %6d %14s %16s %6d %9.3f %6.1f%% %11s %13s %11s\n", g == 0 ? "teacher" : "student",
               groups[g].name, p->ranks, images, hosted, p->micro_batch, p->seconds, 100 * p->idle_fraction,
               shared_teacher ? "-" : in_decimal_bytes(rows, wire, sizeof wire),
               in_decimal_bytes(gradients, grads, sizeof grads), memory);
    }
    printf("  iteration %.3f s (worst idle %.1f%%); ETA of %d + %d iterations: ", plan->seconds_per_iteration,
           100 * plan->worst_idle_fraction, c->iterations, c->cooldown);
    print_eta(plan->seconds_per_iteration * ((double)c->iterations + c->cooldown));
    printf("\n  optimizer state (AdamW moments, EMA) sharded over the group's ranks:");
    int sharded = 0;
    for (int g = 1; g < plan->group_count; g++)
        if (plan->groups[g].sharded_state) printf("%s %s", sharded++ ? "," : "", groups[g].name);
    static const char *const modes[] = {[SHARD_AUTO] = "auto", [SHARD_ALWAYS] = "true", [SHARD_NEVER] = "false"};
    printf("%s (shard_optimizer_state: %s)\n", sharded ? "" : " none", modes[c->shard_optimizer_state]);
}

/* --calibrate: times every group on the backend, prints the table, and
 * plans for devices like this one (their speeds, the ceiling as the peak). */
static int calibrate_groups(const RunConfig *c, const char *backend, PlanGroupInput *groups, PlanDevices *d) {
    char why[256];
    const NnBackend *be = nn_backend_by_name(backend, why, sizeof why);
    if (!be) {
        fprintf(stderr, "distill plan: %s\n", why);
        return -1;
    }
    static Calibration cal;
    DdError err = {{0}};
    const CropShape crops = run_crop_shape(c);
    if (calibrate_run(&cal, c, &crops, groups, be, &err)) {
        fprintf(stderr, "distill plan: calibration: %s\n", err.message);
        return -1;
    }
    calibration_print(&cal, c, groups, d);
    for (int g = 0; g < cal.group_count; g++) groups[g].sustained_flops = cal.groups[g].sustained_flops;
    d->peak_flops = cal.ceiling_flops;
    return 0;
}

/* "vit7b16 0.29 TFLOP/s, vits16 at 45% of the peak, ...": each group's speed. */
static void print_speeds(const PlanGroupInput *groups, int group_count) {
    for (int g = 0; g < group_count; g++) {
        if (groups[g].sustained_flops > 0) printf("%s%s %.4g TFLOP/s", g ? ", " : "", groups[g].name,
                                                  groups[g].sustained_flops / 1e12);
        else printf("%s%s at %.0f%% of the peak", g ? ", " : "", groups[g].name,
                    100 * (groups[g].is_teacher ? PLAN_TEACHER_EFFICIENCY : PLAN_STUDENT_EFFICIENCY));
    }
}

int cmd_plan(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    const char *path = NULL, *reference = NULL, *backend = "cpu";
    double devices = 0, memory_gib = NAN, tflops = NAN;   /* NAN: the config's devices section */
    int even = 0, no_spread = 0, calibrate = 0;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(argv[i], "--devices") == 0) bad = parse_number(argv[i], next, 1, PLAN_MAX_DEVICES, &devices), i++;
        else if (strcmp(argv[i], "--device-memory") == 0) bad = parse_number(argv[i], next, 1e-6, 1e6, &memory_gib), i++;
        else if (strcmp(argv[i], "--device-tflops") == 0) bad = parse_number(argv[i], next, 1e-6, 1e6, &tflops), i++;
        else if (strcmp(argv[i], "--reference") == 0) reference = next, bad = next == NULL, i++;
        else if (strcmp(argv[i], "--even-slices") == 0) even = 1;
        else if (strcmp(argv[i], "--no-spread") == 0) no_spread = 1;
        else if (strcmp(argv[i], "--calibrate") == 0) calibrate = 1;
        else if (strcmp(argv[i], "--backend") == 0) backend = next, bad = next == NULL, i++;
        else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "distill plan: unexpected argument '%s'\n\n%s", argv[i], usage);
            return 2;
        } else path = argv[i];
        if (bad) return 2;
    }
    if (!path || devices != floor(devices) || devices < 1) {
        fprintf(stderr, "distill plan: expected CONFIG and an integer --devices N\n\n%s", usage);
        return 2;
    }
    RunConfig c;
    DdError err = {{0}};
    if (run_config_load(&c, path, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    PlanGroupInput groups[PLAN_MAX_GROUPS];
    run_plan_inputs(&c, groups);
    const int group_count = 1 + c.student_count;
    PlanDevices d = run_plan_devices(&c, (int)devices);
    if (!isnan(memory_gib)) d.memory_bytes = memory_gib * GIB;
    if (!isnan(tflops)) d.peak_flops = tflops * 1e12;
    if (calibrate && calibrate_groups(&c, backend, groups, &d)) return 1;
    int reference_ranks[PLAN_MAX_GROUPS];
    if (reference && parse_ranks(reference, reference_ranks, c.student_count)) return 2;
    const ViTConfig *t = &c.teacher.model;
    const int side = c.crops.global_size / t->patch_size;
    double row_bytes = payload_mean_bytes(&c.objective.ibot_mask, c.seed, 1024, c.crops.global_count, side, side,
                                          t->dino_head.bottleneck, t->ibot_head.bottleneck);
    static Plan plan, plain;   /* large */
    const PlanOptions options = {.even_slices_only = even, .spread_teacher = c.teacher.spread && !no_spread};
    /* without the spread only when the plan spreads: its comparison line */
    if (plan_groups(&plan, groups, group_count, c.global_batch, &d, &options, &err) ||
        (plan.spread_teacher &&
         plan_groups(&plain, groups, group_count, c.global_batch, &d, &(PlanOptions){.even_slices_only = even}, &err))) {
        fprintf(stderr, "distill plan: %s\n", err.message);
        return 1;
    }
    char title[256];
    snprintf(title, sizeof title, "plan of %s: %d devices (%.1f GiB, %.4g TFLOP/s peak), global batch %d%s", c.name,
             d.count, d.memory_bytes / GIB, d.peak_flops / 1e12, c.global_batch, even ? ", even slices" : "");
    print_plan(title, &plan, &c, groups, row_bytes, 0);
    if (plan.spread_teacher)
        printf("  teacher spread over spare student time; without it: %.3f s per iteration, worst idle %.1f%%\n",
               plain.seconds_per_iteration, 100 * plain.worst_idle_fraction);
    if (reference) {
        static Plan shared;
        int used = 0;
        for (int s = 0; s < c.student_count; s++) used += reference_ranks[s];
        PlanDevices rd = d;
        rd.count = used;
        if (plan_predict_shared_teacher(&shared, groups, group_count, c.global_batch, &rd, reference_ranks, &err)) {
            fprintf(stderr, "distill plan: %s\n", err.message);
            return 1;
        }
        snprintf(title, sizeof title, "\nreference layout: teacher spread over all %d devices, students on %s", used,
                 reference);
        print_plan(title, &shared, &c, groups, row_bytes, 1);
    }
    printf("\nmodel: ");
    print_speeds(groups, group_count);
    printf("; student gradient sums and gather in fp32 (a sharded state's gather with block matrices in bf16) "
           "over %.0f GB/s links%s; rows: %.1f KB per image per student group\n", d.link_bytes_per_second / 1e9,
           c.overlap_gradient_sums ? " (the sums during the backward)" : "", row_bytes / 1e3);
    return 0;
}
