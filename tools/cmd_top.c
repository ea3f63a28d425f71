/*
 * cmd_top.c - `distill top RUN_DIR|URL`: a live table per group (images/s,
 * busy %, loss, ETA), from the newest records of RUN_DIR/metrics.jsonl or
 * from a scrape of the run's Prometheus endpoint. Plain text and two ANSI
 * escapes (home, clear), so it works over ssh; --once prints one table.
 */
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tools/commands.h"
#include "tools/metrics.h"

enum { TAIL_BYTES = 1 << 20, MAX_RESPONSE = 4 << 20 };

static void print_top_help(FILE *out) {
    fprintf(out, "usage: distill top RUN_DIR|URL [--once] [--interval SECONDS]\n\n"
                 "A table per group of a running (or finished) run: images/s, iteration time, busy %%,\n"
                 "loss, learning rate, data errors, ETA. RUN_DIR reads RUN_DIR/metrics.jsonl; a URL\n"
                 "such as http://127.0.0.1:9400/metrics scrapes the run's endpoint (monitor.port).\n\n"
                 "  --once            print one table and exit\n"
                 "  --interval S      seconds between refreshes (default 2)\n");
}

/* GET of an http://HOST:PORT/PATH URL into a malloc'd, NUL-terminated body. */
static int http_get(const char *url, char **body, DdError *err) {
    char host[256], port[16] = "80";
    const char *rest = url + strlen("http://"), *path = strchr(rest, '/');
    size_t host_length = path ? (size_t)(path - rest) : strlen(rest);
    if (host_length == 0 || host_length >= sizeof host) return dd_fail(err, "%s: expected http://HOST:PORT/PATH", url);
    memcpy(host, rest, host_length);
    host[host_length] = '\0';
    char *colon = strrchr(host, ':');
    if (colon) {
        snprintf(port, sizeof port, "%s", colon + 1);
        *colon = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found;
    int code = getaddrinfo(host, port, &hints, &found);
    if (code != 0) return dd_fail(err, "%s: cannot resolve %s: %s", url, host, gai_strerror(code));
    int fd = socket(found->ai_family, found->ai_socktype, found->ai_protocol);
    struct timeval timeout = {.tv_sec = 5};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    }
    int connected = fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0;
    freeaddrinfo(found);
    if (!connected) {
        if (fd >= 0) close(fd);
        return dd_fail(err, "%s: cannot connect (is the run up, with monitor.port set?)", url);
    }
    char request[512];
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path ? path : "/metrics", host);
    char *text = malloc(MAX_RESPONSE + 1);
    size_t length = 0;
    if (!text || write(fd, request, (size_t)n) != n) {
        close(fd);
        free(text);
        return dd_fail(err, "%s: cannot send the request", url);
    }
    for (ssize_t got; length < MAX_RESPONSE && (got = read(fd, text + length, MAX_RESPONSE - length)) > 0;)
        length += (size_t)got;
    close(fd);
    text[length] = '\0';
    char *start = strstr(text, "\r\n\r\n");
    if (strncmp(text, "HTTP/1.", 7) != 0 || !start || strncmp(text + 9, "200", 3) != 0) {
        free(text);
        return dd_fail(err, "%s: expected an HTTP 200 answer", url);
    }
    memmove(text, start + 4, length - (size_t)(start + 4 - text) + 1);
    *body = text;
    return 0;
}

static int read_board(const char *source, MetricsBoard *board, DdError *err) {
    if (strncmp(source, "http://", 7) == 0) {
        char *body = NULL;
        if (http_get(source, &body, err) != 0) return -1;
        metrics_read_prometheus(body, board);
        free(body);
        return 0;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", source);
    GroupMetrics *rows;
    int count;
    if (metrics_read_file(path, TAIL_BYTES, &rows, &count, err) != 0) return -1;
    metrics_board_from_rows(board, rows, count);
    free(rows);
    return 0;
}

static void format_duration(char *out, size_t size, double seconds) {
    long s = seconds > 0 && seconds < 1e9 ? (long)(seconds + 0.5) : 0;
    snprintf(out, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
}

static void print_table(FILE *out, const char *source, const MetricsBoard *board) {
    time_t now = time(NULL);
    char clock[32];
    strftime(clock, sizeof clock, "%H:%M:%S", localtime(&now));
    fprintf(out, "distill top  %s  %s  (%d groups)\n\n", source, clock, board->group_count);
    fprintf(out, "%-14s %-7s %5s %15s %9s %8s %6s %9s %9s %6s %10s\n", "GROUP", "ROLE", "RANKS", "ITERATION",
            "IMG/S", "ITER S", "BUSY%", "LOSS", "LR", "ERRORS", "ETA");
    for (int g = 0; g < board->group_count; g++) {
        const GroupMetrics *r = &board->groups[g];
        char iteration[32], eta[32], loss[16] = "-", lr[16] = "-";
        snprintf(iteration, sizeof iteration, "%.0f/%.0f", r->iteration, r->iterations_total);
        format_duration(eta, sizeof eta, r->eta_seconds);
        if (!r->teacher) {
            snprintf(loss, sizeof loss, "%.4f", r->loss);
            snprintf(lr, sizeof lr, "%.3g", r->lr);
        }
        fprintf(out, "%-14s %-7s %5.0f %15s %9.1f %8.3f %6.1f %9s %9s %6.0f %10s\n", r->group,
                r->teacher ? "teacher" : "student", r->ranks, iteration, r->images_per_second, r->iteration_seconds,
                100 * r->busy_fraction, loss, lr, r->data_errors_total, eta);
    }
    fflush(out);
}

int cmd_top(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        print_top_help(stdout);
        return 0;
    }
    static const struct option long_options[] = {
        {"once", no_argument, 0, 'o'}, {"interval", required_argument, 0, 'i'}, {0, 0, 0, 0}};
    int once = 0;
    double interval = 2;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        char *end = NULL;
        if (c == 'o') once = 1;
        else if (c == 'i' && (interval = strtod(optarg, &end), *end == '\0' && interval > 0)) continue;
        else {
            if (c == 'i') fprintf(stderr, "distill top: expected a positive number for --interval, found '%s'\n", optarg);
            else print_top_help(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "distill top: expected one RUN_DIR or URL, found %d\n", argc - optind);
        return 2;
    }
    const char *source = argv[optind];
    for (;;) {
        MetricsBoard board;
        DdError err;
        if (read_board(source, &board, &err) != 0) {
            fprintf(stderr, "distill top: %s\n", err.message);
            if (once) return 1;
        } else {
            if (!once) fputs("\033[H\033[2J", stdout);
            print_table(stdout, source, &board);
        }
        if (once) return 0;
        struct timespec pause = {(time_t)interval, (long)((interval - (time_t)interval) * 1e9)};
        nanosleep(&pause, NULL);
    }
}
