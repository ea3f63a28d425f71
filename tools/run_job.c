/*
 * run_job.c - one rank of a `distill run` job (see run_job.h).
 *
 * Every rank loads the same config and derives the same plan, so roles need
 * no messages. Rank 0 (the first teacher rank) owns the run folder: the
 * effective config, the plan, the status lines, the checkpoint commits.
 * Group leaders (rank 0 of each student group) write their student's state
 * into the checkpoint and send rank 0 a metrics window every monitor.every
 * iterations; rank 0 adds the teacher's own, prints a status line per
 * group, appends the records to RUN_DIR/metrics.jsonl, serves them on the
 * Prometheus endpoint (monitor.port) and plots RUN_DIR/throughput.svg at the
 * end (tools/metrics.h, docs/metrics.md). With `balancer.enabled`, every
 * window's end is also where the ranks' busy times reach rank 0 and the
 * balancer's decision comes back (tools/balancer.h, docs/balancer.md); each
 * checkpoint keeps the slices it moved, for a restart to go on with them.
 */
#include "tools/run_job.h"

#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/proportional_plan.h"
#include "nn/checkpoint.h"
#include "schedule/planner.h"
#include "students/student_rank.h"
#include "teacher/teacher_rank.h"
#include "tools/balancer.h"
#include "tools/balancer_slices.h"
#include "tools/commands.h"
#include "tools/metrics.h"
#include "tools/run_device.h"
#include "tools/plot_svg.h"
#include "tools/prometheus.h"

enum { STATUS_TAG = 32767 + 1, MAX_SKIPS = 256 };

typedef struct Job {
    RunConfig config;
    RunJobOptions options;
    RankLayout layout;
    Comm comm;
    const NnBackend *be;
    RunSchedules schedules;
    long total;                      /* iterations + cooldown */
    long first;                      /* first iteration to run (resume) */
    char resume_folder[CHECKPOINT_PATH_MAX];
    long skips[MAX_SKIPS];           /* iterations whose batch is skipped (rollback after a NaN) */
    int skip_count;
    TeacherRank teacher;             /* teacher ranks, and student ranks the plan gives teacher images */
    StudentRank student;
    int teacher_member;              /* this rank's index among the teacher's members, -1: none */
    MetricsWindow status;            /* the leader's pending record */
    MPI_Request status_request;
    /* rank 0: every group's metrics, where they go */
    MetricsBoard board;
    FILE *metrics_file;              /* RUN_DIR/metrics.jsonl, appended */
    PrometheusEndpoint *endpoint;    /* NULL: monitor.port 0 */
    /* the online balancer: its state on rank 0, its decisions everywhere */
    Balancer balancer;
    double slowness;                 /* DD_INJECT_SLOW's factor for this rank (1: none) */
    int plan_overridden;             /* the plan came from RUN_DIR/plan_override */
    int replan_pending;              /* a re-plan waits for the next checkpoint */
    int replan_ranks[LAYOUT_MAX_GROUPS];
    int exit_status;                 /* 0, or RUN_EXIT_REPLAN */
    int planned_micro_batch[LAYOUT_MAX_GROUPS];   /* the planner's, per student group (0: none) */
    int sharded_state[LAYOUT_MAX_GROUPS];   /* per student group: its ranks shard its optimizer state */
} Job;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int run_rank_count(const RunConfig *c) {
    if (c->ranks > 0) return c->ranks;
    int total = c->teacher.ranks > 0 ? c->teacher.ranks : 1;
    for (int s = 0; s < c->student_count; s++) total += c->students[s].ranks > 0 ? c->students[s].ranks : 1;
    return total;
}

static int is_rank0(const Job *job) { return job->comm.world_rank == 0; }

/* Stops every rank of the job at once: a failure on one rank is a failure
 * of the run, and the last checkpoint is where it resumes. */
static void abort_job(Job *job, const char *message, int code) {
    fprintf(stderr, "distill run: rank %d: %s\n", job->comm.world_rank, message);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

/* A failure every rank meets alike (a bad config, the run folder): rank 0
 * says it once and stops the job; the other ranks wait to be stopped. */
static void fail_collectively(Job *job, const char *message, int code) {
    if (job->comm.world_rank == 0) abort_job(job, message, code);
    MPI_Barrier(MPI_COMM_WORLD);
    exit(code);
}

/* mkdir -p */
static int make_folders(const char *path, DdError *err) {
    char partial[CHECKPOINT_PATH_MAX];
    if (snprintf(partial, sizeof partial, "%s", path) >= (int)sizeof partial) return dd_fail(err, "%s: path too long", path);
    for (char *p = partial + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(partial, 0755) != 0 && errno != EEXIST)
            return dd_fail(err, "%s: cannot create folder %s: %s", path, partial, strerror(errno));
        *p = '/';
    }
    if (mkdir(partial, 0755) != 0 && errno != EEXIST)
        return dd_fail(err, "%s: cannot create the run folder: %s", path, strerror(errno));
    return 0;
}

/* ---- the plan -------------------------------------------------------------- */

/* Whether each student group shards its optimizer state on `ranks` ranks
 * that the planner did not choose (a re-plan, the fallback): as the config
 * forces, else as the planner would choose for those ranks. */
static void choose_sharded_states(Job *job, const int *ranks, int world_size) {
    const RunConfig *c = &job->config;
    PlanGroupInput inputs[PLAN_MAX_GROUPS];
    run_plan_inputs(c, inputs);
    const PlanDevices devices = run_plan_devices(c, world_size);
    for (int g = 1; g <= c->student_count; g++) {
        const PlanGroupInput on = plan_group_on(&inputs[g], &devices, c->global_batch, ranks[g]);
        job->sharded_state[g] = c->shard_optimizer_state == SHARD_ALWAYS ||
                                (c->shard_optimizer_state == SHARD_AUTO && on.sharded_state_bytes > 0);
    }
}

/* Cost of one image for each group: the teacher's forward on the global
 * crops; a student's forward and backward (3x) on every crop. */
static void group_costs(const RunConfig *c, double *costs) {
    const CropConfig *k = &c->crops;
    costs[0] = k->global_count * vit_forward_flops(&c->teacher.model, k->global_size, k->global_size);
    for (int s = 0; s < c->student_count; s++) {
        const ViTConfig *m = &c->students[s].model;
        costs[1 + s] = 3.0 * (k->global_count * vit_forward_flops(m, k->global_size, k->global_size) +
                              k->local_count * vit_forward_flops(m, k->local_size, k->local_size));
    }
}

static int make_plan(Job *job, int world_size, DdError *err) {
    const RunConfig *c = &job->config;
    const int groups = 1 + c->student_count;
    double costs[LAYOUT_MAX_GROUPS];
    int ranks[LAYOUT_MAX_GROUPS];
    /* ranks written in the config are kept; the rest are planned */
    int fixed = 0, fixed_ranks = 0;
    for (int g = 0; g < groups; g++) {
        ranks[g] = g == 0 ? c->teacher.ranks : c->students[g - 1].ranks;
        fixed += ranks[g] > 0;
        fixed_ranks += ranks[g];
    }
    if (fixed == groups && fixed_ranks != world_size)
        return dd_fail(err, "the config gives its groups %d ranks in all, found %d MPI ranks", fixed_ranks, world_size);
    if (c->balancer.enabled && balancer_read_override(job->options.run_dir, ranks, groups, world_size)) {
        job->plan_overridden = 1;   /* the balancer's re-plan (tools/balancer.h) */
        choose_sharded_states(job, ranks, world_size);
        return rank_layout_init(&job->layout, groups, ranks, c->global_batch, err);
    }
    /* the planner (tools/cmd_plan.c, schedule/planner.h) on H100-class
     * devices: only the costs' ratios matter for ranks, so a CPU run plans
     * the same; if it finds no layout (memory of the H100 model, too few
     * ranks), the proportional plan below decides or reports */
    static Plan plan;   /* large */
    DdError planner_err = {{0}};
    if (plan_run(c, world_size, &plan, &planner_err) == 0) {
        for (int g = 0; g < groups; g++) ranks[g] = plan.groups[g].ranks;
        for (int g = 1; g < groups; g++) job->planned_micro_batch[g] = plan.groups[g].micro_batch;
        for (int g = 1; g < groups; g++) job->sharded_state[g] = plan.groups[g].sharded_state;
        if (rank_layout_init(&job->layout, groups, ranks, c->global_batch, err) != 0) return -1;
        return plan.spread_teacher ? rank_layout_spread_teacher(&job->layout, plan.teacher_images, err) : 0;
    }
    if (fixed < groups) {
        group_costs(c, costs);
        double free_costs[LAYOUT_MAX_GROUPS];
        int free_ranks[LAYOUT_MAX_GROUPS], n = 0;
        for (int g = 0; g < groups; g++)
            if (ranks[g] == 0) free_costs[n++] = costs[g];
        if (proportional_plan(free_ranks, free_costs, n, world_size - fixed_ranks, c->global_batch, err) != 0)
            return -1;
        n = 0;
        for (int g = 0; g < groups; g++)
            if (ranks[g] == 0) ranks[g] = free_ranks[n++];
    }
    choose_sharded_states(job, ranks, world_size);
    return rank_layout_init(&job->layout, groups, ranks, c->global_batch, err);
}

static void print_plan(const Job *job, FILE *out) {
    const RunConfig *c = &job->config;
    fprintf(out, "plan: %d ranks, global batch %d, %ld iterations (%d + cooldown %d)\n", job->layout.world_size,
            c->global_batch, job->total, c->iterations, c->cooldown);
    for (int g = 0; g < job->layout.group_count; g++) {
        int begin, end;
        rank_layout_slice(&job->layout, g, 0, &begin, &end);
        fprintf(out, "  %-8s %-14s ranks %d-%d (%d), %d images on its first rank\n", g == 0 ? "teacher" : "student",
                g == 0 ? c->teacher.model.name : c->students[g - 1].name, job->layout.first_rank[g],
                job->layout.first_rank[g] + job->layout.ranks[g] - 1, job->layout.ranks[g], end - begin);
    }
    const RankLayout *l = &job->layout;
    for (int m = l->ranks[0]; m < l->teacher_members; m++) {
        int group_rank, begin, end;
        const int world = rank_layout_member_rank(l, LAYOUT_TEACHER_GROUP, m);
        const int g = rank_layout_group_of(l, world, &group_rank);
        rank_layout_slice(l, LAYOUT_TEACHER_GROUP, m, &begin, &end);
        fprintf(out, "  teacher  also on rank %d (%s rank %d): %d images in its spare time\n", world,
                c->students[g - 1].name, group_rank, end - begin);
    }
    fprintf(out, "  optimizer state (AdamW moments, EMA) sharded over the group's ranks:");
    int sharded = 0;
    for (int g = 1; g < job->layout.group_count; g++)
        if (job->sharded_state[g] && job->layout.ranks[g] > 1)
            fprintf(out, "%s %s", sharded++ ? "," : "", c->students[g - 1].name);
    fprintf(out, "%s\n", sharded ? "" : " none");
    if (job->plan_overridden) fprintf(out, "  ranks per group from the balancer's re-plan (plan_override)\n");
    const ViTConfig *t = &c->teacher.model;
    const int side = c->crops.global_size / t->patch_size;
    fprintf(out, "  teacher rows on the wire: %.1f KB per image per student group (bf16, mean over 1024 images' masks)\n",
            payload_mean_bytes(&c->objective.ibot_mask, c->seed, 1024, c->crops.global_count, side, side,
                               t->dino_head.bottleneck, t->ibot_head.bottleneck) / 1e3);
}

/* ---- the run folder, resume and skips ------------------------------------ */

/* what: 0 the config, 1 the plan, 2 the slices (tools/balancer_slices.h). */
static int write_text_file(const char *folder, const char *name, const Job *job, int what, DdError *err) {
    char path[CHECKPOINT_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    FILE *out = fopen(path, "w");
    if (!out) return dd_fail(err, "%s: cannot write: %s", path, strerror(errno));
    int status = 0;
    if (what == 0) status = config_write(out, &run_config_schema, &job->config, err);
    else if (what == 1) print_plan(job, out);
    else balancer_slices_print(out, &job->layout);
    if (fclose(out) != 0 && status == 0) status = dd_fail(err, "%s: write failed", path);
    return status;
}

static void read_skips(Job *job) {
    char path[CHECKPOINT_PATH_MAX];
    snprintf(path, sizeof path, "%s/skip_iterations", job->options.run_dir);
    FILE *in = fopen(path, "r");
    if (!in) return;
    long k;
    while (job->skip_count < MAX_SKIPS && fscanf(in, "%ld", &k) == 1) job->skips[job->skip_count++] = k;
    fclose(in);
}

static int skipped(const Job *job, long k) {
    for (int i = 0; i < job->skip_count; i++)
        if (job->skips[i] == k) return 1;
    return 0;
}

static void warn_rank0(void *ctx, const char *message) {
    (void)ctx;
    fprintf(stderr, "distill run: warning: %s\n", message);
}

/* Rank 0 prepares the folder and finds the checkpoint to resume from; every
 * rank learns the result. */
static int prepare_run_dir(Job *job, DdError *err) {
    int ok = 1;
    long first = 0;
    char folder[CHECKPOINT_PATH_MAX] = "";
    if (is_rank0(job)) {
        if (make_folders(job->options.run_dir, err) != 0) ok = 0;
        if (ok && (write_text_file(job->options.run_dir, "config.yaml", job, 0, err) != 0 ||
                   write_text_file(job->options.run_dir, "plan.txt", job, 1, err) != 0))
            ok = 0;
        if (ok) {
            int found = checkpoint_find_latest(job->options.run_dir, folder, sizeof folder, &first, warn_rank0, NULL, err);
            if (found < 0) ok = 0;
            if (found == 0) first = 0, folder[0] = '\0';
        }
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!ok) fail_collectively(job, err->message, 1);
    MPI_Bcast(&first, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    MPI_Bcast(folder, sizeof folder, MPI_CHAR, 0, MPI_COMM_WORLD);
    job->first = first;
    snprintf(job->resume_folder, sizeof job->resume_folder, "%s", folder);
    read_skips(job);
    return 0;
}

/* ---- checkpoints ------------------------------------------------------------ */

static int checkpoint_all(Job *job, long done, DdError *err) {
    CheckpointWriter writer;
    int ok = 1;
    if (job->teacher_member >= 0 && teacher_rank_drain(&job->teacher, err) != 0) return -1;
    MPI_Barrier(MPI_COMM_WORLD);
    if (is_rank0(job)) ok = checkpoint_begin(&writer, job->options.run_dir, done, err) == 0;
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!ok) return is_rank0(job) ? -1 : dd_fail(err, "rank 0 could not begin the checkpoint");
    MPI_Bcast(&writer, sizeof writer, MPI_BYTE, 0, MPI_COMM_WORLD);
    int mine = 1;
    DdError local;
    if (job->comm.group_index != LAYOUT_TEACHER_GROUP) {   /* the group's rank 0 writes, every rank gathers */
        char name[128], path[CHECKPOINT_PATH_MAX];
        snprintf(name, sizeof name, "student_%s.h5", job->config.students[job->comm.group_index - 1].name);
        const int writes = job->comm.group_rank == 0;
        DdError ignored;   /* a failure after the first */
        mine = !writes || checkpoint_file_path(&writer, name, path, sizeof path, &local) == 0;
        if (student_state_save(&job->student.student, job->be, &job->student.group, writes && mine ? path : NULL,
                               mine ? &local : &ignored) != 0)
            mine = 0;
    }
    if (is_rank0(job))
        mine = write_text_file(writer.partial_dir, "config.yaml", job, 0, &local) == 0 &&
               write_text_file(writer.partial_dir, "plan.txt", job, 1, &local) == 0 &&
               write_text_file(writer.partial_dir, "slices", job, 2, &local) == 0;
    if (!mine) fprintf(stderr, "distill run: rank %d: checkpoint %ld: %s\n", job->comm.world_rank, done, local.message);
    MPI_Allreduce(&mine, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (is_rank0(job)) {
        if (ok) ok = checkpoint_commit(&writer, job->config.checkpoint.keep, err) == 0;
        else {
            checkpoint_abandon(&writer);
            dd_fail(err, "checkpoint of iteration %ld abandoned (a rank could not write its state); the previous "
                    "checkpoint stays", done);
        }
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!ok) return is_rank0(job) ? -1 : dd_fail(err, "checkpoint of iteration %ld failed on rank 0", done);
    if (is_rank0(job)) printf("checkpoint: iteration %ld written to %s/checkpoints\n", done, job->options.run_dir);
    return 0;
}

/* ---- metrics and status lines ----------------------------------------------- */

/* What a leader accumulates over a monitor window. */
typedef struct Window {
    double start, busy, bytes;
    long steps;
    StudentStepReport last;          /* students */
} Window;

static void window_add_student_step(Window *w, const StudentStepReport *report) {
    w->busy += report->busy_seconds;
    w->bytes += (double)report->bytes_received;
    w->steps++;
    w->last = *report;
}

static void window_add_teacher_step(Window *w, const TeacherRank *teacher) {
    w->busy += teacher->busy_seconds;
    w->bytes += (double)teacher->bytes_sent;
    w->steps++;
}

/* The leader's window as rank 0 takes it. */
static MetricsWindow window_metrics(const Job *job, const Window *w, long k) {
    const int teacher = job->comm.group_index == LAYOUT_TEACHER_GROUP;
    DataLoader *loader = teacher ? job->teacher.loader : job->student.loader;
    const LossTerms *l = &w->last.losses;
    return (MetricsWindow){
        .group = job->comm.group_index, .iteration = (double)(k + 1), .steps = (double)w->steps,
        .seconds = now_seconds() - w->start, .images = (double)w->steps * job->config.global_batch,
        .busy_seconds = w->busy, .bytes = w->bytes, .loss = l->total, .dino_local = l->dino_local,
        .dino_global = l->dino_global, .ibot = l->ibot, .koleo = l->koleo, .lr = w->last.values.lr,
        .data_errors = loader ? (double)data_problems_snapshot(&data_loader_data_set(loader)->problems, NULL) : 0,
    };
}

static void leader_send_status(Job *job, const Window *w, long k) {
    if (job->status_request != MPI_REQUEST_NULL) MPI_Wait(&job->status_request, MPI_STATUS_IGNORE);
    job->status = window_metrics(job, w, k);
    MPI_Isend(&job->status, METRICS_WINDOW_DOUBLES, MPI_DOUBLE, 0, STATUS_TAG, MPI_COMM_WORLD, &job->status_request);
}

/* Rank 0 folds a window into the board: a status line, a JSONL record, the
 * endpoint's copy. */
static void rank0_take(Job *job, const MetricsWindow *w) {
    const GroupMetrics *r = metrics_board_add(&job->board, w);
    if (!r) return;
    const double kb_per_image = w->images > 0 ? w->bytes * r->ranks / w->images / 1e3 : 0;
    if (r->teacher)   /* the teacher sends every image's row to each student group */
        printf("[%6.0f/%ld] %-8s %7.1f img/s  busy %3.0f%%  %.1f KB/img sent per student group\n", r->iteration,
               job->total, r->group, r->images_per_second, 100 * r->busy_fraction,
               kb_per_image / (job->layout.group_count - 1));
    else
        printf("[%6.0f/%ld] %-8s %7.1f img/s  busy %3.0f%%  loss %.4f (dino local %.4f, global %.4f, ibot %.4f, "
               "koleo %.4f)  lr %.3g  %.1f KB/img\n",
               r->iteration, job->total, r->group, r->images_per_second, 100 * r->busy_fraction, r->loss,
               r->dino_local, r->dino_global, r->ibot, r->koleo, r->lr, kb_per_image);
    fflush(stdout);
    if (job->metrics_file) {
        metrics_write_json(job->metrics_file, r);
        fflush(job->metrics_file);
    }
    if (job->endpoint) prometheus_publish(job->endpoint, &job->board);
}

static void rank0_print_statuses(Job *job) {
    int waiting = 1;
    while (waiting) {
        MPI_Iprobe(MPI_ANY_SOURCE, STATUS_TAG, MPI_COMM_WORLD, &waiting, MPI_STATUS_IGNORE);
        if (!waiting) break;
        MetricsWindow w;
        MPI_Recv(&w, METRICS_WINDOW_DOUBLES, MPI_DOUBLE, MPI_ANY_SOURCE, STATUS_TAG, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        rank0_take(job, &w);
    }
}

/* Rank 0 opens metrics.jsonl (appending: a resumed run goes on in the same
 * file) and the endpoint, and names the board's rows. */
static int rank0_open_metrics(Job *job, DdError *err) {
    const RunConfig *c = &job->config;
    const char *names[METRICS_MAX_GROUPS];
    names[0] = "teacher";
    for (int s = 0; s < c->student_count && s + 1 < METRICS_MAX_GROUPS; s++) names[1 + s] = c->students[s].name;
    metrics_board_init(&job->board, names, job->layout.ranks, job->layout.group_count, job->total);
    char path[CHECKPOINT_PATH_MAX];
    snprintf(path, sizeof path, "%s/metrics.jsonl", job->options.run_dir);
    job->metrics_file = fopen(path, "a");
    if (!job->metrics_file) return dd_fail(err, "%s: cannot append: %s", path, strerror(errno));
    if (c->monitor.port > 0) {
        if (prometheus_open(&job->endpoint, c->monitor.bind, c->monitor.port, err) != 0) return -1;
        prometheus_publish(job->endpoint, &job->board);
        printf("metrics: http://%s:%d/metrics\n", c->monitor.bind, c->monitor.port);
    }
    return 0;
}

static void rank0_close_metrics(Job *job) {
    if (job->metrics_file) fclose(job->metrics_file);
    job->metrics_file = NULL;
    prometheus_close(job->endpoint);
    job->endpoint = NULL;
    DdError err;
    if (plot_run_folder(job->options.run_dir, NULL, &err) != 0)
        fprintf(stderr, "distill run: warning: no throughput plot: %s\n", err.message);
}

/* ---- the online balancer ---------------------------------------------------- */

/* A move of images decided at the end of iteration first - 1: every rank
 * updates its layout (the teacher sends by it, the students receive by
 * it), the group's ranks move their slices; nothing of iteration first has
 * been posted yet. A teacher move has no helpers (balancer.h): the members
 * are the teacher group's ranks, which drain their sends of iteration
 * first - 1 (received already) before their buffers change. */
static void apply_move(Job *job, const BalancerDecision *d, long first) {
    DdError err;
    if (rank_layout_set_slices(&job->layout, d->group, d->images, &err) != 0) abort_job(job, err.message, 1);
    const int mine = job->comm.group_index == d->group;
    if (mine && d->group == LAYOUT_TEACHER_GROUP &&
        teacher_rank_move_slice(&job->teacher, &job->layout, job->be, first, &err) != 0)
        abort_job(job, err.message, 1);
    if (mine && d->group != LAYOUT_TEACHER_GROUP &&
        student_rank_move_slice(&job->student, &job->layout, job->be, first, &err) != 0)
        abort_job(job, err.message, 1);
    if (is_rank0(job)) balancer_forget_group(&job->balancer, &job->layout, d->group);
}

static const char *group_name(const Job *job, int g) {
    return g == 0 ? "teacher" : job->config.students[g - 1].name;
}

/* At the end of a monitor window, on every rank: each rank's busy seconds
 * per iteration reach rank 0 (the gather also holds the teacher here, so
 * it has posted nothing beyond iteration k); rank 0 folds them into the
 * balancer, logs, and broadcasts its decision, which every rank applies
 * from iteration k + 1 (a move) or at the next checkpoint (a re-plan). */
static void balance_at_window_end(Job *job, const Window *w, long k) {
    const double mine = w->steps > 0 ? w->busy / (double)w->steps : 0;
    static double busy[BALANCER_MAX_RANKS];
    MPI_Gather(&mine, 1, MPI_DOUBLE, busy, 1, MPI_DOUBLE, 0, job->comm.world);
    BalancerDecision d = {.action = BALANCER_NONE};
    if (is_rank0(job)) {
        d = balancer_observe(&job->balancer, &job->layout, busy, w->steps, k + 1);
        for (int g = 0; g < job->layout.group_count && g < METRICS_MAX_GROUPS; g++) {
            job->board.groups[g].imbalance = job->balancer.imbalance[g];
            job->board.groups[g].balancer_moves_total = job->balancer.moves[g];
            char line[BALANCER_TEXT_MAX];
            balancer_describe_group(&job->balancer, &job->layout, g, line, sizeof line);
            if (job->layout.ranks[g] > 1) printf("balancer: [%ld] %s %s\n", k + 1, group_name(job, g), line);
        }
        printf("balancer: [%ld] groups imbalance %.3f\n", k + 1, job->balancer.across);
        if (d.action == BALANCER_MOVE_IMAGES)
            printf("balancer: move images in %s from iteration %ld: %s\n", group_name(job, d.group), k + 1, d.text);
        if (d.action == BALANCER_REPLAN) printf("balancer: re-plan: %s\n", d.text);
        fflush(stdout);
    }
    MPI_Bcast(&d, sizeof d, MPI_BYTE, 0, job->comm.world);
    if (d.action == BALANCER_MOVE_IMAGES) apply_move(job, &d, k + 1);
    if (d.action == BALANCER_REPLAN) {
        job->replan_pending = 1;
        memcpy(job->replan_ranks, d.ranks, sizeof job->replan_ranks);
    }
}

/* At resume, with the balancer on: the slices of the checkpoint (written
 * there by rank 0, tools/balancer_slices.h) replace the plan's when they
 * fit its groups and members, so the balancer's moves survive a restart;
 * rank 0 reads them and every rank applies the same. */
static void resume_balancer_slices(Job *job) {
    if (!job->config.balancer.enabled || !job->resume_folder[0]) return;
    const int count = balancer_slices_count(&job->layout);
    int *images = malloc((size_t)count * sizeof *images);
    if (!images) abort_job(job, "out of memory for the balancer's slices", 1);
    int found = 0;
    DdError err;
    if (is_rank0(job)) {
        char path[CHECKPOINT_PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/slices", job->resume_folder);
        found = balancer_slices_read(path, &job->layout, images, &err);
        if (found < 0)
            printf("balancer: starting on the plan's slices, the checkpoint's do not fit it: %s\n", err.message);
        found = found > 0 && balancer_slices_differ(&job->layout, images);
    }
    MPI_Bcast(&found, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (found) {
        MPI_Bcast(images, count, MPI_INT, 0, MPI_COMM_WORLD);
        if (balancer_slices_apply(&job->layout, images, &err) != 0) abort_job(job, err.message, 1);
    }
    free(images);
    if (found && is_rank0(job)) {
        const char *names[LAYOUT_MAX_GROUPS];
        for (int g = 0; g < job->layout.group_count; g++) names[g] = group_name(job, g);
        char text[BALANCER_TEXT_MAX];
        balancer_slices_describe(&job->layout, names, text, sizeof text);
        printf("resuming with the balancer's slices: %s\n", text);
    }
}

/* After the checkpoint of iteration done: rank 0 writes the override, and
 * the job stops for the supervisor to start it on the new plan. Returns 1
 * when the job stops. */
static int stop_for_replan(Job *job, long done) {
    DdError err;
    int ok = 1;
    if (is_rank0(job)) {
        ok = balancer_write_override(job->options.run_dir, job->replan_ranks, job->layout.group_count, &err) == 0;
        if (ok) printf("balancer: stopping at the checkpoint of iteration %ld to restart on the new plan\n", done);
        else fprintf(stderr, "distill run: warning: no re-plan: %s\n", err.message);
        fflush(stdout);
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    job->replan_pending = 0;
    if (ok) job->exit_status = RUN_EXIT_REPLAN;
    return ok;
}

/* DD_INJECT_SLOW (tools/balancer.h): the step's compute stretched. */
static void slow_down(const Job *job, double *busy_seconds) {
    *busy_seconds += balancer_slow_down(job->slowness, *busy_seconds);
}

/* ---- the loop -------------------------------------------------------------- */

/* The teacher's part of a rank: a teacher rank's whole work, or the
 * teacher images a student rank computes in its spare time. */
static int open_teacher_part(Job *job, DdError *err) {
    const RunConfig *c = &job->config;
    TeacherRankOptions o = {
        .model = &c->teacher.model, .weights_path = c->teacher.weights[0] ? c->teacher.weights : NULL,
        .seed = c->seed, .data = &c->data, .crops = &c->crops, .ibot_mask = &c->objective.ibot_mask,
        .global_batch = c->global_batch, .prefetch = c->prefetch, .first_iteration = job->first,
    };
    if (is_rank0(job) && !o.weights_path)
        printf("teacher: no weights file given: backbone and heads are drawn from the seed %llu\n",
               (unsigned long long)c->seed);
    if (teacher_rank_open(&job->teacher, &o, &job->comm, &job->layout, job->be, err) != 0) return -1;
    if (is_rank0(job) && o.weights_path && !job->teacher.teacher.heads_from_file)
        printf("teacher: %s has no head weights: the DINO and iBOT heads are random (drawn from the seed)\n",
               o.weights_path);
    return 0;
}

/* Student s's micro-batch: the config's, else the planner's when the slice
 * does not fit at once (2 at least while KoLeo needs neighbours). */
static int micro_batch_of(const Job *job, int s) {
    const RunConfig *c = &job->config;
    if (c->students[s].micro_batch > 0) return c->students[s].micro_batch;
    int planned = job->planned_micro_batch[1 + s];
    if (planned > 0 && planned < 2 && c->objective.koleo_weight > 0) planned = 2;
    return planned;
}

static int open_role(Job *job, DdError *err) {
    const RunConfig *c = &job->config;
    job->teacher_member = rank_layout_teacher_member(&job->layout, job->comm.world_rank);
    if (job->teacher_member >= 0 && open_teacher_part(job, err) != 0) return -1;
    if (job->comm.group_index == LAYOUT_TEACHER_GROUP) return 0;
    const int s = job->comm.group_index - 1;
    StudentRankOptions o = {
        .name = c->students[s].name, .model = &c->students[s].model, .teacher = &c->teacher.model,
        .teacher_weights = c->teacher.weights[0] ? c->teacher.weights : NULL, .model_index = 1 + s, .seed = c->seed,
        .data = &c->data, .crops = &c->crops, .objective = &c->objective, .optimizer = &c->optimizer,
        .schedules = &job->schedules, .global_batch = c->global_batch, .first_iteration = job->first,
        .micro_batch = micro_batch_of(job, s), .overlap_gradient_sums = c->overlap_gradient_sums,
        .shard_optimizer_state = job->sharded_state[1 + s],
    };
    if (student_rank_open(&job->student, &o, &job->comm, &job->layout, job->be, err) != 0) return -1;
    if (job->resume_folder[0]) {
        char path[CHECKPOINT_PATH_MAX + 128];
        snprintf(path, sizeof path, "%s/student_%s.h5", job->resume_folder, c->students[s].name);
        if (student_state_load(&job->student.student, job->be, path, err) != 0)
            return dd_fail_context(err, "resuming student '%s'", c->students[s].name);
    }
    return 0;
}

/* Records iteration k as one to skip, for the restart after a NaN. */
static void remember_skip(Job *job, long k) {
    char path[CHECKPOINT_PATH_MAX];
    snprintf(path, sizeof path, "%s/skip_iterations", job->options.run_dir);
    FILE *out = fopen(path, "a");
    if (out) {
        fprintf(out, "%ld\n", k);
        fclose(out);
    }
}

/* A skipped iteration's batch is drawn and dropped, as on every rank. */
static void drop_batch(Job *job, DataLoader *loader) {
    const DataBatch *batch;
    DdError err;
    if (!loader) return;
    if (data_loader_next(loader, &batch, &err) != 0) abort_job(job, err.message, 1);
    data_loader_release(loader, batch);
}

static long run_loop(Job *job) {
    const RunConfig *c = &job->config;
    DdError err;
    const int teacher = job->comm.group_index == LAYOUT_TEACHER_GROUP;
    const int leader = job->comm.group_rank == 0;   /* a student group's, or rank 0 for the teacher */
    long end = job->total;
    if (job->options.stop_after > 0 && job->options.stop_after < end) end = job->options.stop_after;
    Window window = {.start = now_seconds()};
    for (long k = job->first; k < end; k++) {
        int skip = skipped(job, k);
        double teacher_busy = 0;
        if (job->teacher_member >= 0) {   /* first: every student rank waits for these rows */
            if (skip) drop_batch(job, job->teacher.loader);
            else {
                if (teacher_rank_step(&job->teacher, k, &job->comm, &job->layout, job->be, &err) != 0)
                    abort_job(job, err.message, 1);
                slow_down(job, &job->teacher.busy_seconds);
                teacher_busy = job->teacher.busy_seconds;
            }
        }
        if (teacher) {
            if (!skip) window_add_teacher_step(&window, &job->teacher);
            if (is_rank0(job)) rank0_print_statuses(job);
        } else if (skip) {
            drop_batch(job, job->student.loader);
        } else {
            StudentStepReport report;
            if (student_rank_step(&job->student, k, &job->comm, &job->layout, job->be, &report, &err) != 0) {
                int nonfinite = strstr(err.message, "not finite") != NULL;
                if (nonfinite && c->on_nan == NAN_ROLLBACK) remember_skip(job, k);
                abort_job(job, err.message, nonfinite ? RUN_EXIT_NAN : 1);
            }
            slow_down(job, &report.busy_seconds);
            report.busy_seconds += teacher_busy;   /* a rank spreading the teacher is busy with both */
            window_add_student_step(&window, &report);
        }
        if ((k + 1) % c->monitor.every == 0 || k + 1 == end) {
            if (leader && !teacher) leader_send_status(job, &window, k);
            else if (is_rank0(job)) {
                MetricsWindow own = window_metrics(job, &window, k);
                rank0_take(job, &own);
            }
            if (c->balancer.enabled && k + 1 < end) balance_at_window_end(job, &window, k);
            window = (Window){.start = now_seconds()};
        }
        if ((k + 1) % c->checkpoint.every == 0 || k + 1 == job->total) {
            if (checkpoint_all(job, k + 1, &err) != 0) abort_job(job, err.message, 1);
            if (is_rank0(job)) rank0_print_statuses(job);
            if (job->replan_pending && k + 1 < end && stop_for_replan(job, k + 1)) {
                end = k + 1;
                break;
            }
        }
    }
    if (job->teacher_member >= 0 && teacher_rank_drain(&job->teacher, &err) != 0) abort_job(job, err.message, 1);
    if (job->status_request != MPI_REQUEST_NULL) MPI_Wait(&job->status_request, MPI_STATUS_IGNORE);
    MPI_Barrier(MPI_COMM_WORLD);
    if (is_rank0(job)) rank0_print_statuses(job);
    return end;
}

int run_job(const RunJobOptions *options, int argc, char **argv) {
    MPI_Init(&argc, &argv);
    static Job job;   /* large; one per process */
    memset(&job, 0, sizeof job);
    job.teacher_member = -1;
    job.options = *options;
    job.status_request = MPI_REQUEST_NULL;
    DdError err;
    int world_rank = 0, world_size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    job.comm.world_rank = world_rank;

    job.be = run_backend_for_rank(options->backend, &err);
    if (!job.be) fail_collectively(&job, err.message, 1);
    if (run_config_load(&job.config, options->config_path, &err) != 0) fail_collectively(&job, err.message, 1);
    const RunConfig *c = &job.config;
    job.total = (long)c->iterations + c->cooldown;
    if (run_schedules_make(&job.schedules, &c->schedules, c->warmup, c->iterations, c->cooldown, &err) != 0 ||
        make_plan(&job, world_size, &err) != 0 || comm_init(&job.comm, &job.layout, &err) != 0)
        fail_collectively(&job, err.message, 1);
    char reductions[320] = "";
    if (!nn_backend_on_host(job.be) &&
        run_device_reductions(&job.comm, job.be, reductions, sizeof reductions, &err) != 0)
        fail_collectively(&job, err.message, 1);
    /* the cores of this machine are shared by its ranks */
    int local_ranks = getenv("OMPI_COMM_WORLD_LOCAL_SIZE") ? atoi(getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) : 1;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN) / (local_ranks > 0 ? local_ranks : 1);
    omp_set_num_threads(threads > 0 ? threads : 1);

    job.slowness = balancer_injected_slowness(world_rank);
    balancer_init(&job.balancer, &c->balancer);
    if (c->balancer.enabled && world_size > BALANCER_MAX_RANKS) {
        if (world_rank == 0) printf("balancer: off: %d ranks, at most %d balanced\n", world_size, BALANCER_MAX_RANKS);
        job.config.balancer.enabled = 0;
    }
    prepare_run_dir(&job, &err);
    resume_balancer_slices(&job);
    if (is_rank0(&job)) {
        print_plan(&job, stdout);
        if (reductions[0]) printf("%s\n", reductions);
        if (job.first > 0) printf("resuming from %s (iteration %ld)\n", job.resume_folder, job.first);
        fflush(stdout);
    }
    if (is_rank0(&job) && rank0_open_metrics(&job, &err) != 0) abort_job(&job, err.message, 1);
    if (open_role(&job, &err) != 0) abort_job(&job, err.message, 1);
    if (is_rank0(&job)) job.board.groups[0].teacher_heads_random = !job.teacher.teacher.heads_from_file;
    double start = now_seconds();
    long end = run_loop(&job);
    if (is_rank0(&job)) {
        printf("done: iterations %ld to %ld of %ld in %.1f s; run folder %s\n", job.first, end, job.total,
               now_seconds() - start, options->run_dir);
        rank0_close_metrics(&job);
        printf("metrics: %s/metrics.jsonl, plot %s/throughput.svg\n", options->run_dir, options->run_dir);
        fflush(stdout);
    }
    if (job.teacher_member >= 0) teacher_rank_close(&job.teacher, job.be);
    if (job.comm.group_index != LAYOUT_TEACHER_GROUP) student_rank_close(&job.student, job.be);
    comm_free(&job.comm);
    rank_layout_free(&job.layout);
    MPI_Finalize();
    return job.exit_status;
}
