/*
 * cmd_plan.c - `distill plan CONFIG --devices N [--device-memory GIB]
 * [--device-tflops X] [--even-slices] [--reference R1,R2,...]`: the group
 * planner (schedule/planner.h) on a run file: per group its ranks, images per
 * rank, predicted seconds per iteration, idle fraction and bytes per
 * iteration, then the ETA of the whole schedule. Also the planner's inputs
 * for a run (run_plan_inputs), which `distill run` plans with.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/teacher_payload.h"
#include "schedule/cost_model.h"
#include "tools/commands.h"
#include "schedule/planner.h"
#include "tools/run_config.h"

#define GIB 1073741824.0

static const char usage[] =
    "usage: distill plan CONFIG --devices N [--device-memory GIB] [--device-tflops X]\n"
    "                    [--even-slices] [--reference R1,R2,...]\n"
    "\n"
    "Plans a run on N identical devices: how many ranks the teacher and each student\n"
    "get and how many images each rank takes, so that the iteration time (the slowest\n"
    "group) is as small as possible within device memory. Prints per group: ranks,\n"
    "images per rank, predicted seconds per iteration, idle fraction, bytes per\n"
    "iteration (teacher rows sent or received; gradients all-reduced per rank), memory\n"
    "per rank; then the ETA of iterations + cooldown. Ranks fixed in the config are kept.\n"
    "\n"
    "  --devices N          devices (ranks) of the job, required\n"
    "  --device-memory GIB  memory of one device (default 80)\n"
    "  --device-tflops X    peak dense TFLOP/s of one device (default 790, H100 bf16);\n"
    "                       the teacher sustains 60% of it, students 45%\n"
    "  --even-slices        every rank of a group takes the same number of images\n"
    "  --reference R1,...   also predict the reference's layout: the teacher spread\n"
    "                       over every device, student s trained on Rs devices\n"
    "\n"
    "Memory per rank is `distill info`'s model; all-reduce of bf16 gradients over\n"
    "47 GB/s links, not overlapped. See docs/planning.md.\n";

static CropShape run_crop_shape(const RunConfig *c) {
    const IbotMaskConfig *m = &c->objective.ibot_mask;
    return (CropShape){c->crops.global_size, c->crops.global_count, c->crops.local_size, c->crops.local_count,
                       m->probability * 0.5 * (m->min_ratio + m->max_ratio)};
}

void run_plan_inputs(const RunConfig *c, PlanGroupInput *groups) {
    const CropShape crops = run_crop_shape(c);
    const ViTConfig *t = &c->teacher.model;
    groups[0] = (PlanGroupInput){
        .name = t->name,
        .is_teacher = 1,
        .flops_per_image = teacher_flops_per_image(t, &crops),
        .state_bytes = rank_state_bytes(t, NULL, &crops, 1),
        .activation_bytes_per_image = rank_activation_bytes(t, &crops, 1, 1),
        .fixed_ranks = c->teacher.ranks,
    };
    for (int s = 0; s < c->student_count; s++) {
        const ViTConfig *m = &c->students[s].model;
        groups[1 + s] = (PlanGroupInput){
            .name = c->students[s].name,
            .flops_per_image = student_flops_per_image(m, t, &crops),
            .state_bytes = rank_state_bytes(m, t, &crops, 0),
            .activation_bytes_per_image = rank_activation_bytes(m, &crops, 1, 0),
            .gradient_bytes = PLAN_GRADIENT_BYTES_PER_PARAM * (double)trained_param_count(m),
            .fixed_ranks = c->students[s].ranks,
        };
    }
}

int plan_run_ranks(const RunConfig *config, int world_size, int *ranks, DdError *err) {
    PlanGroupInput groups[PLAN_MAX_GROUPS];
    run_plan_inputs(config, groups);
    PlanDevices devices = plan_h100_devices(world_size);
    Plan plan;
    if (plan_groups(&plan, groups, 1 + config->student_count, config->global_batch, &devices, 0, err)) return -1;
    for (int g = 0; g < plan.group_count; g++) ranks[g] = plan.groups[g].ranks;
    return 0;
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

static void print_plan(const char *title, const Plan *plan, const RunConfig *c, const PlanGroupInput *groups,
                       double row_bytes, int shared_teacher) {
    printf("%s\n", title);
    printf("  %-8s %-14s %6s %14s %9s %7s %11s %13s %11s\n", "role", "group", "ranks", "images/rank", "s/iter",
           "idle", "rows/iter", "grads/rank", "mem/rank");
    for (int g = 0; g < plan->group_count; g++) {
        const GroupPlan *p = &plan->groups[g];
        char images[32], wire[24], grads[24], memory[24];
        if (p->ranks_with_most == p->ranks) snprintf(images, sizeof images, "%d", p->most_images);
        else snprintf(images, sizeof images, "%dx%d+%dx%d", p->ranks_with_most, p->most_images,
                      p->ranks - p->ranks_with_most, p->most_images - 1);
        /* the teacher sends each student group its rows; a student receives them */
        double rows = g == 0 ? row_bytes * c->global_batch * (plan->group_count - 1) : row_bytes * c->global_batch;
        double gradients = p->ranks > 1 ? 2.0 * groups[g].gradient_bytes : 0;
        if (shared_teacher && g == 0) snprintf(memory, sizeof memory, "sharded");
        else snprintf(memory, sizeof memory, "%.1f GiB", p->memory_bytes / GIB);
        printf("  %-8s %-14s %6d %14s %9.3f %6.1f%% %11s %13s %11s\n", g == 0 ? "teacher" : "student",
               groups[g].name, p->ranks, images, p->seconds, 100 * p->idle_fraction,
               shared_teacher ? "-" : in_decimal_bytes(rows, wire, sizeof wire),
               in_decimal_bytes(gradients, grads, sizeof grads), memory);
    }
    printf("  iteration %.3f s (worst idle %.1f%%); ETA of %d + %d iterations: ", plan->seconds_per_iteration,
           100 * plan->worst_idle_fraction, c->iterations, c->cooldown);
    print_eta(plan->seconds_per_iteration * ((double)c->iterations + c->cooldown));
    printf("\n");
}

int cmd_plan(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        fputs(usage, stdout);
        return 0;
    }
    const char *path = NULL, *reference = NULL;
    double devices = 0, memory_gib = PLAN_H100_MEMORY_BYTES / GIB, tflops = PLAN_H100_PEAK_FLOPS / 1e12;
    int even = 0;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(argv[i], "--devices") == 0) bad = parse_number(argv[i], next, 1, PLAN_MAX_DEVICES, &devices), i++;
        else if (strcmp(argv[i], "--device-memory") == 0) bad = parse_number(argv[i], next, 1e-6, 1e6, &memory_gib), i++;
        else if (strcmp(argv[i], "--device-tflops") == 0) bad = parse_number(argv[i], next, 1e-6, 1e6, &tflops), i++;
        else if (strcmp(argv[i], "--reference") == 0) reference = next, bad = next == NULL, i++;
        else if (strcmp(argv[i], "--even-slices") == 0) even = 1;
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
    PlanDevices d = {.count = (int)devices, .memory_bytes = memory_gib * GIB, .peak_flops = tflops * 1e12,
                     .link_bytes_per_second = PLAN_LINK_BYTES_PER_SECOND};
    int reference_ranks[PLAN_MAX_GROUPS];
    if (reference && parse_ranks(reference, reference_ranks, c.student_count)) return 2;
    const ViTConfig *t = &c.teacher.model;
    const int side = c.crops.global_size / t->patch_size;
    double row_bytes = payload_mean_bytes(&c.objective.ibot_mask, c.seed, 1024, c.crops.global_count, side, side,
                                          t->dino_head.bottleneck, t->ibot_head.bottleneck);
    Plan plan;
    if (plan_groups(&plan, groups, group_count, c.global_batch, &d, even, &err)) {
        fprintf(stderr, "distill plan: %s\n", err.message);
        return 1;
    }
    char title[256];
    snprintf(title, sizeof title, "plan of %s: %d devices (%.1f GiB, %.0f TFLOP/s peak), global batch %d%s", c.name,
             d.count, memory_gib, tflops, c.global_batch, even ? ", even slices" : "");
    print_plan(title, &plan, &c, groups, row_bytes, 0);
    if (reference) {
        Plan shared;
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
    printf("\nmodel: teacher at %.0f%%, students at %.0f%% of the peak; student all-reduce of bf16 gradients over "
           "%.0f GB/s links; rows: %.1f KB per image per student group\n", 100 * PLAN_TEACHER_EFFICIENCY,
           100 * PLAN_STUDENT_EFFICIENCY, PLAN_LINK_BYTES_PER_SECOND / 1e9, row_bytes / 1e3);
    return 0;
}
