/*
 * cmd_pack.c - `distill pack SRC OUT [--shard-size N] [--no-verify]`: an
 * image folder SRC/CLASS/IMAGE.jpg|jpeg|png into HDF5 shards OUT/shard-NNNNN.h5
 * (data/pack.h), with a progress bar; unreadable files are named and
 * skipped; a second run after an interruption keeps the complete shards.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "data/pack.h"
#include "tools/commands.h"

enum { DEFAULT_SHARD_SIZE = 10000, BAR_WIDTH = 30 };

static void print_pack_help(FILE *out) {
    fprintf(out,
            "usage: distill pack SRC OUT [--shard-size N] [--no-verify]\n\n"
            "Packs the image folder SRC (SRC/CLASS/IMAGE.jpg|jpeg|png; the label is the\n"
            "position of CLASS in sorted order) into HDF5 shards OUT/shard-NNNNN.h5 of N\n"
            "files each, the encoded bytes unchanged, for the data source hdf5:OUT.\n"
            "Every file is decoded first; one that cannot be read or decoded is named\n"
            "and skipped. Shards are written under a temporary name and renamed when\n"
            "complete: run the same command again after an interruption and it keeps\n"
            "the shards already done.\n\n"
            "  --shard-size N   files per shard (default %d)\n"
            "  --no-verify      check only each image's header, not a full decode\n",
            DEFAULT_SHARD_SIZE);
}

typedef struct Bar {
    int tty;
    double start, last;
    int last_tenth;
    int drawn;         /* a bar is on the current line */
} Bar;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void draw(Bar *bar, const DataPackProgress *p, int final) {
    double t = now_seconds(), elapsed = t - bar->start;
    double fraction = p->files_total ? (double)p->files_done / p->files_total : 1.0;
    double rate = elapsed > 0 ? p->files_done / elapsed : 0;
    double eta = rate > 0 ? (p->files_total - p->files_done) / rate : 0;
    if (bar->tty) {
        if (!final && t - bar->last < 0.1) return;
        char cells[BAR_WIDTH + 1];
        int filled = (int)(fraction * BAR_WIDTH);
        for (int i = 0; i < BAR_WIDTH; i++) cells[i] = i < filled ? '#' : '.';
        cells[BAR_WIDTH] = 0;
        fprintf(stderr, "\r[%s] %5.1f%%  %llu/%llu files  shard %d/%d  %.0f files/s  %.1f MB  ETA %d:%02d:%02d  %llu skipped",
                cells, 100 * fraction, (unsigned long long)p->files_done, (unsigned long long)p->files_total,
                p->shard + 1, p->shard_count, rate, p->bytes / 1e6, (int)eta / 3600, (int)eta / 60 % 60, (int)eta % 60,
                (unsigned long long)p->skipped);
        bar->drawn = 1;
        if (final) {
            fprintf(stderr, "\n");
            bar->drawn = 0;
        }
    } else {
        int tenth = (int)(fraction * 10);
        if (tenth == bar->last_tenth) return;   /* a line per tenth; the last one only once */
        bar->last_tenth = tenth;
        fprintf(stderr, "pack: %3.0f%%  %llu/%llu files  %.0f files/s  %llu skipped\n", 100 * fraction,
                (unsigned long long)p->files_done, (unsigned long long)p->files_total, rate,
                (unsigned long long)p->skipped);
    }
    bar->last = t;
    fflush(stderr);
}

static void on_progress(void *context, const DataPackProgress *p) { draw(context, p, 0); }

static void on_log(void *context, const char *line) {
    Bar *bar = context;
    if (bar->drawn) fprintf(stderr, "\r\033[K");
    bar->drawn = 0;
    fprintf(stderr, "pack: %s\n", line);
}

int cmd_pack(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        print_pack_help(stdout);
        return 0;
    }
    static const struct option long_options[] = {
        {"shard-size", required_argument, 0, 's'}, {"no-verify", no_argument, 0, 'n'}, {0, 0, 0, 0}};
    unsigned long long shard_size = DEFAULT_SHARD_SIZE;
    int verify = 1, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (c == 's') {
            char *end = NULL;
            shard_size = strtoull(optarg, &end, 10);
            if (!*optarg || *end || shard_size < 1 || shard_size > 100000000ull) {
                fprintf(stderr, "distill pack: expected a positive integer for --shard-size, found '%s'\n", optarg);
                return 2;
            }
        } else if (c == 'n') {
            verify = 0;
        } else {
            print_pack_help(stderr);
            return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "distill pack: expected SRC and OUT, found %d arguments\n\n", argc - optind);
        print_pack_help(stderr);
        return 2;
    }
    Bar bar = {.tty = isatty(2), .start = now_seconds(), .last_tenth = -1};
    DataPackOptions options = {.source = argv[optind], .out = argv[optind + 1], .shard_size = shard_size,
                               .verify = verify, .progress = on_progress, .log = on_log, .context = &bar};
    DataPackResult result;
    DdError err;
    if (data_pack(&options, &result, &err)) {
        on_log(&bar, err.message);
        return 1;
    }
    DataPackProgress last = {.files_done = result.files, .files_total = result.files, .skipped = result.skipped,
                             .bytes = result.bytes, .shard = result.shards_written + result.shards_kept - 1,
                             .shard_count = result.shards_written + result.shards_kept};
    draw(&bar, &last, 1);
    printf("packed %llu of %llu files (%llu skipped) into %s: %d shards written, %d already complete\n",
           (unsigned long long)result.packed, (unsigned long long)result.files, (unsigned long long)result.skipped,
           options.out, result.shards_written, result.shards_kept);
    return 0;
}
