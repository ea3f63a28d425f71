/*
 * metrics.c - the per-group metrics rows (metrics.h): folding windows into
 * rows on rank 0, and the one table of fields that the JSONL writer and
 * reader and the Prometheus writer and reader all follow.
 */
#include "tools/metrics.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum FieldRole { FOR_ALL, FOR_STUDENTS, FOR_TEACHER } FieldRole;

typedef struct MetricField {
    const char *json;         /* key in metrics.jsonl */
    const char *family;       /* Prometheus metric name; NULL: JSONL only */
    const char *label;        /* a second label of the sample ("" none) */
    const char *type;         /* "counter" or "gauge" */
    const char *help;
    size_t offset;            /* of the double in GroupMetrics */
    FieldRole role;           /* groups the field applies to; null in JSON for the others */
} MetricField;

#define FIELD(name, family, label, type, help, role) {#name, family, label, type, help, offsetof(GroupMetrics, name), role}
static const MetricField fields[] = {
    FIELD(time, NULL, "", "gauge", "", FOR_ALL),
    FIELD(iteration, "distill_iteration", "", "gauge", "Iterations the group has done.", FOR_ALL),
    FIELD(iterations_total, "distill_schedule_iterations", "", "gauge",
          "Iterations of the whole schedule (main phase and cooldown).", FOR_ALL),
    FIELD(ranks, "distill_ranks", "", "gauge", "Ranks the plan gives the group.", FOR_ALL),
    FIELD(images_per_second, "distill_images_per_second", "", "gauge",
          "Images the group processed per second over the last window.", FOR_ALL),
    FIELD(iteration_seconds, "distill_iteration_seconds", "", "gauge",
          "Mean wall time of one iteration over the last window.", FOR_ALL),
    FIELD(busy_seconds, NULL, "", "gauge", "", FOR_ALL),
    FIELD(idle_seconds, NULL, "", "gauge", "", FOR_ALL),
    FIELD(busy_fraction, "distill_busy_fraction", "", "gauge",
          "Share of the last window the group leader spent computing.", FOR_ALL),
    FIELD(bytes_received, NULL, "", "gauge", "", FOR_STUDENTS),
    FIELD(bytes_sent, NULL, "", "gauge", "", FOR_TEACHER),
    FIELD(loss, "distill_loss", "term=\"total\"", "gauge", "Loss of the group's last step, by term.", FOR_STUDENTS),
    FIELD(dino_local, "distill_loss", "term=\"dino_local\"", "gauge", "", FOR_STUDENTS),
    FIELD(dino_global, "distill_loss", "term=\"dino_global\"", "gauge", "", FOR_STUDENTS),
    FIELD(ibot, "distill_loss", "term=\"ibot\"", "gauge", "", FOR_STUDENTS),
    FIELD(koleo, "distill_loss", "term=\"koleo\"", "gauge", "", FOR_STUDENTS),
    FIELD(lr, "distill_learning_rate", "", "gauge", "Learning rate of the group's last step.", FOR_STUDENTS),
    FIELD(eta_seconds, "distill_eta_seconds", "", "gauge",
          "Seconds until the group ends the schedule at the last window's pace.", FOR_ALL),
    FIELD(images_total, "distill_images_total", "", "counter", "Images the group has processed.", FOR_ALL),
    FIELD(busy_seconds_total, "distill_busy_seconds_total", "", "counter",
          "Seconds the group leader has spent computing.", FOR_ALL),
    FIELD(idle_seconds_total, "distill_idle_seconds_total", "", "counter",
          "Seconds the group leader has spent waiting (data, the teacher's rows, the other groups).", FOR_ALL),
    FIELD(bytes_received_total, "distill_bytes_received_total", "", "counter",
          "Bytes of teacher rows the student group leader has received.", FOR_STUDENTS),
    FIELD(bytes_sent_total, "distill_bytes_sent_total", "", "counter",
          "Bytes of rows the teacher group leader has sent.", FOR_TEACHER),
    FIELD(data_errors_total, "distill_data_errors_total", "", "counter",
          "Bad samples (unreadable, corrupt, too large) the group leader's loader has met and replaced.", FOR_ALL),
    FIELD(teacher_heads_random, "distill_teacher_heads_random", "", "gauge",
          "1 when the teacher's DINO and iBOT heads were drawn at random (its weights had no heads).", FOR_TEACHER),
    FIELD(imbalance, "distill_imbalance", "", "gauge",
          "The balancer's moving average of slowest rank / mean - 1 of the group's busy time (docs/balancer.md).",
          FOR_ALL),
    FIELD(balancer_moves_total, "distill_balancer_moves_total", "", "counter",
          "Times the balancer moved images between the group's ranks.", FOR_ALL),
};
#undef FIELD
enum { FIELD_COUNT = sizeof fields / sizeof fields[0] };

static double *field_of(GroupMetrics *row, const MetricField *f) { return (double *)((char *)row + f->offset); }
static double field_value(const GroupMetrics *row, const MetricField *f) {
    return *(const double *)((const char *)row + f->offset);
}
static int applies(const MetricField *f, const GroupMetrics *row) {
    return f->role == FOR_ALL || (f->role == FOR_TEACHER) == (row->teacher != 0);
}

/* ---- rank 0's board ------------------------------------------------------- */

void metrics_board_init(MetricsBoard *board, const char *const *names, const int *ranks, int count,
                        long iterations_total) {
    memset(board, 0, sizeof *board);
    board->group_count = count < METRICS_MAX_GROUPS ? count : METRICS_MAX_GROUPS;
    for (int g = 0; g < board->group_count; g++) {
        GroupMetrics *row = &board->groups[g];
        snprintf(row->group, sizeof row->group, "%s", names[g]);
        row->teacher = g == 0;
        row->ranks = ranks[g];
        row->iterations_total = (double)iterations_total;
    }
}

const GroupMetrics *metrics_board_add(MetricsBoard *board, const MetricsWindow *w) {
    int g = (int)w->group;
    if (g < 0 || g >= board->group_count) return NULL;
    GroupMetrics *row = &board->groups[g];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const double seconds = w->seconds > 0 ? w->seconds : 0;
    row->time = now.tv_sec + now.tv_nsec * 1e-9;
    row->iteration = w->iteration;
    row->images_per_second = seconds > 0 ? w->images / seconds : 0;
    row->iteration_seconds = w->steps > 0 ? seconds / w->steps : 0;
    row->busy_seconds = w->busy_seconds;
    row->idle_seconds = seconds > w->busy_seconds ? seconds - w->busy_seconds : 0;
    row->busy_fraction = seconds > 0 ? fmin(1.0, w->busy_seconds / seconds) : 0;
    row->bytes_received = row->teacher ? 0 : w->bytes;
    row->bytes_sent = row->teacher ? w->bytes : 0;
    row->loss = w->loss, row->dino_local = w->dino_local, row->dino_global = w->dino_global;
    row->ibot = w->ibot, row->koleo = w->koleo, row->lr = w->lr;
    double left = row->iterations_total - row->iteration;
    row->eta_seconds = left > 0 ? left * row->iteration_seconds : 0;
    row->images_total += w->images;
    row->busy_seconds_total += row->busy_seconds;
    row->idle_seconds_total += row->idle_seconds;
    row->bytes_received_total += row->bytes_received;
    row->bytes_sent_total += row->bytes_sent;
    row->data_errors_total = w->data_errors;
    return row;
}

/* ---- JSON lines ----------------------------------------------------------- */

/* Writes s as a JSON or Prometheus string body (both escape \ and "). */
static void write_escaped(FILE *out, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', out);
        if (*s == '\n') fputs("\\n", out);
        else fputc(*s, out);
    }
}

void metrics_write_json(FILE *out, const GroupMetrics *row) {
    fputs("{\"group\":\"", out);
    write_escaped(out, row->group);
    fprintf(out, "\",\"role\":\"%s\"", row->teacher ? "teacher" : "student");
    for (int i = 0; i < FIELD_COUNT; i++) {
        double v = field_value(row, &fields[i]);
        fprintf(out, ",\"%s\":", fields[i].json);
        if (!applies(&fields[i], row) || !isfinite(v)) fputs("null", out);
        else fprintf(out, "%.15g", v);
    }
    fputs("}\n", out);
}

/* The text after "key": in a one-level object, or NULL. */
static const char *json_value(const char *line, const char *key) {
    char pattern[96];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(line, pattern);
    return at ? at + strlen(pattern) : NULL;
}

int metrics_read_json(const char *line, GroupMetrics *row, DdError *err) {
    memset(row, 0, sizeof *row);
    if (line[0] != '{') return dd_fail(err, "expected a JSON object, found '%.20s'", line);
    const char *group = json_value(line, "group"), *role = json_value(line, "role");
    if (!group || *group != '"' || !role) return dd_fail(err, "expected \"group\" and \"role\" in the record");
    size_t n = 0;
    for (group++; *group && *group != '"' && n + 1 < sizeof row->group; group++) {
        if (*group == '\\' && group[1]) group++;
        row->group[n++] = *group;
    }
    row->teacher = strncmp(role, "\"teacher\"", 9) == 0;
    for (int i = 0; i < FIELD_COUNT; i++) {
        const char *v = json_value(line, fields[i].json);
        if (!v) return dd_fail(err, "expected \"%s\" in the record of group '%s'", fields[i].json, row->group);
        if (strncmp(v, "null", 4) == 0) continue;
        char *end;
        *field_of(row, &fields[i]) = strtod(v, &end);
        if (end == v) return dd_fail(err, "expected a number for \"%s\", found '%.12s'", fields[i].json, v);
    }
    return 0;
}

int metrics_read_file(const char *path, long tail_bytes, GroupMetrics **rows, int *count, DdError *err) {
    *rows = NULL;
    *count = 0;
    FILE *in = fopen(path, "r");
    if (!in) return dd_fail(err, "%s: cannot read: %s", path, strerror(errno));
    char line[4096];
    if (tail_bytes > 0 && fseek(in, 0, SEEK_END) == 0 && ftell(in) > tail_bytes) {
        fseek(in, -tail_bytes, SEEK_END);
        if (!fgets(line, sizeof line, in)) line[0] = '\0';   /* the partial first line */
    } else {
        rewind(in);
    }
    int capacity = 0;
    while (fgets(line, sizeof line, in)) {
        GroupMetrics row;
        DdError ignored;
        if (metrics_read_json(line, &row, &ignored) != 0) continue;
        if (*count == capacity) {
            int grown = capacity ? 2 * capacity : 256;
            GroupMetrics *more = realloc(*rows, (size_t)grown * sizeof *more);
            if (!more) {
                fclose(in);
                free(*rows);
                *rows = NULL;
                return dd_fail(err, "%s: out of memory reading %d records", path, *count);
            }
            *rows = more, capacity = grown;
        }
        (*rows)[(*count)++] = row;
    }
    fclose(in);
    return 0;
}

/* The row of the group named name, added when new; NULL when full. */
static GroupMetrics *board_row(MetricsBoard *board, const char *name) {
    for (int g = 0; g < board->group_count; g++)
        if (strcmp(board->groups[g].group, name) == 0) return &board->groups[g];
    if (board->group_count == METRICS_MAX_GROUPS) return NULL;
    GroupMetrics *row = &board->groups[board->group_count++];
    memset(row, 0, sizeof *row);
    snprintf(row->group, sizeof row->group, "%s", name);
    return row;
}

void metrics_board_from_rows(MetricsBoard *board, const GroupMetrics *rows, int count) {
    memset(board, 0, sizeof *board);
    for (int i = 0; i < count; i++) {
        GroupMetrics *row = board_row(board, rows[i].group);
        if (row) *row = rows[i];
    }
}

/* ---- Prometheus text format -------------------------------------------------- */

void metrics_write_prometheus(FILE *out, const MetricsBoard *board) {
    const char *family = "";
    for (int i = 0; i < FIELD_COUNT; i++) {
        const MetricField *f = &fields[i];
        if (!f->family) continue;
        if (strcmp(f->family, family) != 0) {
            fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", f->family, f->help, f->family, f->type);
            family = f->family;
        }
        for (int g = 0; g < board->group_count; g++) {
            const GroupMetrics *row = &board->groups[g];
            if (!applies(f, row)) continue;
            double v = field_value(row, f);
            fprintf(out, "%s{group=\"", f->family);
            write_escaped(out, row->group);
            fprintf(out, "\"%s%s} ", f->label[0] ? "," : "", f->label);
            if (isnan(v)) fputs("NaN\n", out);
            else if (isinf(v)) fputs(v > 0 ? "+Inf\n" : "-Inf\n", out);
            else fprintf(out, "%.15g\n", v);
        }
    }
}

/* One sample line: `family{group="g"[,label]} value`. */
static void read_sample(const char *line, size_t length, MetricsBoard *board) {
    const char *brace = memchr(line, '{', length), *close = brace ? memchr(brace, '}', length - (brace - line)) : NULL;
    if (!close) return;
    const char *group = strstr(brace, "group=\"");
    if (!group || group > close) return;
    group += 7;
    char name[METRICS_NAME_MAX];
    size_t n = 0;
    for (; group < close && *group != '"' && n + 1 < sizeof name; group++) {
        if (*group == '\\' && group + 1 < close) group++;
        name[n++] = *group;
    }
    name[n] = '\0';
    for (int i = 0; i < FIELD_COUNT; i++) {
        const MetricField *f = &fields[i];
        if (!f->family || strlen(f->family) != (size_t)(brace - line) || strncmp(line, f->family, brace - line) != 0)
            continue;
        if (f->label[0]) {
            const char *label = strstr(brace, f->label);
            if (!label || label > close) continue;
        }
        GroupMetrics *row = board_row(board, name);
        if (!row) return;
        if (f->role == FOR_TEACHER) row->teacher = 1;
        *field_of(row, f) = strtod(close + 1, NULL);
        return;
    }
}

void metrics_read_prometheus(const char *text, MetricsBoard *board) {
    memset(board, 0, sizeof *board);
    while (*text) {
        const char *end = strchr(text, '\n');
        size_t length = end ? (size_t)(end - text) : strlen(text);
        if (length > 0 && text[0] != '#') read_sample(text, length, board);
        text += length + (end != NULL);
    }
}
