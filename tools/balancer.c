/*
 * balancer.c - the online balancer's decisions (see balancer.h).
 */
#include "tools/balancer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/proportional_plan.h"

void balancer_init(Balancer *b, const BalancerConfig *config) {
    memset(b, 0, sizeof *b);
    b->config = *config;
    for (int r = 0; r < BALANCER_MAX_RANKS; r++) b->busy[r] = -1;
    for (int g = 0; g < LAYOUT_MAX_GROUPS; g++) b->above_since[g] = -1;
    b->across_above_since = -1;
}

void balancer_forget_group(Balancer *b, const RankLayout *layout, int group) {
    for (int r = 0; r < layout->ranks[group]; r++) b->busy[layout->first_rank[group] + r] = -1;
    b->above_since[group] = -1;
    b->settled[group] = 0;
    b->across_above_since = -1;
}

/* 1 when the balancer moves images inside the group: 2 to
 * BALANCER_MAX_GROUP_RANKS ranks and, for the teacher group, no helpers. */
static int moves_inside(const RankLayout *layout, int group) {
    if (layout->ranks[group] < 2 || layout->ranks[group] > BALANCER_MAX_GROUP_RANKS) return 0;
    /* a helper's busy time mixes its student's work and the teacher's */
    return group != LAYOUT_TEACHER_GROUP || layout->teacher_members == layout->ranks[group];
}

/* Mean and largest of a group's averages. */
static void group_times(const Balancer *b, const RankLayout *layout, int group, double *mean, double *slowest) {
    double sum = 0, most = 0;
    for (int r = 0; r < layout->ranks[group]; r++) {
        const double t = b->busy[layout->first_rank[group] + r];
        sum += t;
        if (t > most) most = t;
    }
    *mean = sum / layout->ranks[group];
    *slowest = most;
}

static double imbalance_of(double mean, double slowest) { return mean > 0 ? slowest / mean - 1 : 0; }

void balancer_split_by_speed(int *images, const double *seconds_per_image, int ranks, int batch) {
    double speed[BALANCER_MAX_GROUP_RANKS], total = 0, share[BALANCER_MAX_GROUP_RANKS];
    for (int r = 0; r < ranks; r++) total += speed[r] = 1.0 / fmax(seconds_per_image[r], 1e-12);
    int given = 0;
    for (int r = 0; r < ranks; r++) {   /* one image each, the rest by speed */
        share[r] = (batch - ranks) * speed[r] / total;
        images[r] = 1 + (int)floor(share[r]);
        share[r] -= floor(share[r]);
        given += images[r];
    }
    while (given < batch) {   /* largest remainders */
        int best = 0;
        for (int r = 1; r < ranks; r++)
            if (share[r] > share[best]) best = r;
        images[best]++, share[best] = -1, given++;
    }
}

void balancer_describe_group(const Balancer *b, const RankLayout *layout, int group, char *text, size_t size) {
    int at = snprintf(text, size, "imbalance %.3f (busy ms/iteration", b->imbalance[group]);
    for (int r = 0; r < layout->ranks[group] && at > 0 && (size_t)at < size; r++)
        at += snprintf(text + at, size - at, " %.1f", 1e3 * b->busy[layout->first_rank[group] + r]);
    if (at > 0 && (size_t)at < size) snprintf(text + at, size - at, ")");
}

/* Tracks how long a value has been above the threshold; 1 when that has
 * lasted a whole window. */
static int stayed_above(const Balancer *b, double value, long *since, long window_start, long done) {
    if (value <= b->config.threshold) {
        *since = -1;
        return 0;
    }
    if (*since < 0) *since = window_start;
    return done - *since >= b->config.window;
}

/* New slices for a group that stayed imbalanced; NONE when they would not change. */
static BalancerDecision move_images(Balancer *b, const RankLayout *layout, int group, long done) {
    BalancerDecision d = {.action = BALANCER_NONE, .group = group};
    const int n = layout->ranks[group];
    double seconds_per_image[BALANCER_MAX_GROUP_RANKS] = {0};
    int current[BALANCER_MAX_GROUP_RANKS], changed = 0;
    for (int r = 0; r < n; r++) {
        int begin, end;
        rank_layout_slice(layout, group, r, &begin, &end);
        current[r] = end - begin;
        seconds_per_image[r] = b->busy[layout->first_rank[group] + r] / (current[r] > 0 ? current[r] : 1);
    }
    balancer_split_by_speed(d.images, seconds_per_image, n, layout->global_batch);
    for (int r = 0; r < n; r++) changed |= d.images[r] != current[r];
    b->above_since[group] = done;   /* whatever happens, wait another window */
    b->settled[group] = !changed;
    if (!changed) return d;
    d.action = BALANCER_MOVE_IMAGES;
    b->moves[group]++;
    char why[160];
    balancer_describe_group(b, layout, group, why, sizeof why);
    int at = snprintf(d.text, sizeof d.text, "iteration %ld: group %d %s: images per rank", done, group, why);
    for (int r = 0; r < n && at > 0 && (size_t)at < sizeof d.text; r++)
        at += snprintf(d.text + at, sizeof d.text - at, "%s%d->%d", r ? ", " : " ", current[r], d.images[r]);
    return d;
}

/* Ranks per group in proportion to each group's work; NONE when unchanged. */
static BalancerDecision replan(Balancer *b, const RankLayout *layout, long done) {
    BalancerDecision d = {.action = BALANCER_NONE};
    double work[LAYOUT_MAX_GROUPS];
    for (int g = 0; g < layout->group_count; g++) {
        double mean, slowest;
        group_times(b, layout, g, &mean, &slowest);
        work[g] = fmax(mean * layout->ranks[g], 1e-9);   /* rank-seconds per iteration */
    }
    DdError err;
    b->across_above_since = done;
    if (proportional_plan(d.ranks, work, layout->group_count, layout->world_size, layout->global_batch, &err) != 0)
        return d;
    int changed = 0;
    for (int g = 0; g < layout->group_count; g++) changed |= d.ranks[g] != layout->ranks[g];
    if (!changed) return d;
    d.action = BALANCER_REPLAN;
    b->replan_decided = 1;
    int at = snprintf(d.text, sizeof d.text, "iteration %ld: groups imbalance %.3f: ranks per group", done, b->across);
    for (int g = 0; g < layout->group_count && at > 0 && (size_t)at < sizeof d.text; g++)
        at += snprintf(d.text + at, sizeof d.text - at, "%s%d->%d", g ? ", " : " ", layout->ranks[g], d.ranks[g]);
    if (at > 0 && (size_t)at < sizeof d.text)
        snprintf(d.text + at, sizeof d.text - at, " at the next checkpoint");
    return d;
}

BalancerDecision balancer_observe(Balancer *b, const RankLayout *layout, const double *busy, long steps, long done) {
    const BalancerDecision none = {.action = BALANCER_NONE};
    if (layout->world_size > BALANCER_MAX_RANKS || steps < 1) return none;
    const double a = b->config.average;
    for (int w = 0; w < layout->world_size; w++) b->busy[w] = b->busy[w] < 0 ? busy[w] : a * busy[w] + (1 - a) * b->busy[w];
    double group_mean[LAYOUT_MAX_GROUPS], sum = 0, most = 0;
    for (int g = 0; g < layout->group_count; g++) {
        double slowest;
        group_times(b, layout, g, &group_mean[g], &slowest);
        b->imbalance[g] = imbalance_of(group_mean[g], slowest);
        sum += group_mean[g];
        if (group_mean[g] > most) most = group_mean[g];
    }
    b->across = imbalance_of(sum / layout->group_count, most);
    const long window_start = done - steps;
    /* in-group moves first: the most imbalanced group that stayed so */
    int worst = -1;
    double pending = 0;   /* the largest in-group imbalance still waiting for a move */
    for (int g = 0; g < layout->group_count; g++) {
        if (!moves_inside(layout, g)) continue;
        const int due = stayed_above(b, b->imbalance[g], &b->above_since[g], window_start, done);
        if (b->above_since[g] >= 0 && !b->settled[g] && b->imbalance[g] > pending) pending = b->imbalance[g];
        if (due && (worst < 0 || b->imbalance[g] > b->imbalance[worst])) worst = g;
    }
    if (worst >= 0) {
        BalancerDecision d = move_images(b, layout, worst, done);
        if (d.action != BALANCER_NONE) return d;
    }
    /* moves inside a group cannot fix an imbalance between groups larger
     * than the group's own: then re-plan without waiting for them */
    if (!b->config.replan || b->replan_decided || pending >= b->across) return none;
    if (stayed_above(b, b->across, &b->across_above_since, window_start, done)) return replan(b, layout, done);
    return none;
}

/* ---- the plan override ------------------------------------------------------ */

static void override_path(const char *run_dir, char *path, size_t size) {
    snprintf(path, size, "%s/plan_override", run_dir);
}

int balancer_write_override(const char *run_dir, const int *ranks, int group_count, DdError *err) {
    char path[1100], partial[1120];
    override_path(run_dir, path, sizeof path);
    snprintf(partial, sizeof partial, "%s.partial", path);
    FILE *out = fopen(partial, "w");
    if (!out) return dd_fail(err, "%s: cannot write: %s", partial, strerror(errno));
    fprintf(out, "ranks");
    for (int g = 0; g < group_count; g++) fprintf(out, " %d", ranks[g]);
    fprintf(out, "\n");
    if (fclose(out) != 0) return dd_fail(err, "%s: write failed", partial);
    if (rename(partial, path) != 0) return dd_fail(err, "%s: cannot rename to %s: %s", partial, path, strerror(errno));
    return 0;
}

int balancer_read_override(const char *run_dir, int *ranks, int group_count, int world_size) {
    char path[1100];
    override_path(run_dir, path, sizeof path);
    FILE *in = fopen(path, "r");
    if (!in) return 0;
    int found[LAYOUT_MAX_GROUPS], n = 0, sum = 0;
    char word[16];
    int fits = fscanf(in, "%15s", word) == 1 && strcmp(word, "ranks") == 0;
    while (fits && n < LAYOUT_MAX_GROUPS && fscanf(in, "%d", &found[n]) == 1) fits = found[n] >= 1, sum += found[n++];
    fclose(in);
    if (!fits || n != group_count || sum != world_size) return 0;
    memcpy(ranks, found, (size_t)n * sizeof *ranks);
    return 1;
}

/* ---- injected slowness ------------------------------------------------------ */

double balancer_injected_slowness(int world_rank) {
    const char *spec = getenv("DD_INJECT_SLOW");
    for (const char *p = spec; p && *p;) {
        char *end;
        long rank = strtol(p, &end, 10);
        if (end == p || *end != ':') return 1;
        double factor = strtod(end + 1, &end);
        if (rank == world_rank && factor >= 1) return factor;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return 1;
    }
    return 1;
}

double balancer_slow_down(double factor, double busy_seconds) {
    if (factor <= 1 || busy_seconds <= 0) return 0;
    const double seconds = (factor - 1) * busy_seconds;
    struct timespec ts = {(time_t)seconds, (long)((seconds - floor(seconds)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    return seconds;
}
