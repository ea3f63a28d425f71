/*
 * problems.c - counting and reporting bad input (see problems.h).
 */
#include "data/problems.h"

#include <stdarg.h>
#include <stdio.h>

void data_problems_init(DataProblems *p, DataLogFunction log, void *log_context) {
    *p = (DataProblems){.log = log, .log_context = log_context};
    pthread_mutex_init(&p->lock, NULL);
}

void data_problems_destroy(DataProblems *p) { pthread_mutex_destroy(&p->lock); }

void data_problems_report(DataProblems *p, DataProblemKind kind, const char *format, ...) {
    char line[1280];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    pthread_mutex_lock(&p->lock);
    p->counts[kind]++;
    p->total++;
    int show = p->logged < DATA_PROBLEMS_LOGGED;
    if (show) p->logged++;
    int last = p->logged == DATA_PROBLEMS_LOGGED && show;
    /* reported under the lock, so lines of two threads never interleave */
    if (show) {
        if (p->log) p->log(p->log_context, line);
        else fprintf(stderr, "data: %s\n", line);
        if (last) {
            const char *quiet = "further bad input is counted, not reported";
            if (p->log) p->log(p->log_context, quiet);
            else fprintf(stderr, "data: %s\n", quiet);
        }
    }
    pthread_mutex_unlock(&p->lock);
}

void data_problems_note(DataProblems *p, const char *format, ...) {
    char line[1280];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    pthread_mutex_lock(&p->lock);
    if (p->log) p->log(p->log_context, line);
    else fprintf(stderr, "data: %s\n", line);
    pthread_mutex_unlock(&p->lock);
}

uint64_t data_problems_snapshot(DataProblems *p, uint64_t *counts) {
    pthread_mutex_lock(&p->lock);
    if (counts)
        for (int k = 0; k < DATA_PROBLEM_KIND_COUNT; k++) counts[k] = p->counts[k];
    uint64_t total = p->total;
    pthread_mutex_unlock(&p->lock);
    return total;
}

const char *data_problem_name(DataProblemKind kind) {
    static const char *const names[DATA_PROBLEM_KIND_COUNT] = {
        [DATA_PROBLEM_UNREADABLE] = "unreadable file",
        [DATA_PROBLEM_EMPTY] = "empty file",
        [DATA_PROBLEM_NOT_AN_IMAGE] = "not a JPEG or PNG",
        [DATA_PROBLEM_BAD_JPEG] = "truncated or corrupt JPEG",
        [DATA_PROBLEM_BAD_PNG] = "truncated or corrupt PNG",
        [DATA_PROBLEM_TOO_LARGE] = "image too large",
        [DATA_PROBLEM_BAD_SHARD] = "bad shard",
    };
    return kind >= 0 && kind < DATA_PROBLEM_KIND_COUNT ? names[kind] : "unknown problem";
}
