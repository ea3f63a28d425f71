/*
 * plot_svg.c - images/s per group over iterations as an SVG (plot_svg.h).
 */
#include "tools/plot_svg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WIDTH = 800, HEIGHT = 420, LEFT = 70, RIGHT = 150, TOP = 30, BOTTOM = 50, TICKS = 5 };

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static double x_of(double iteration, double max_x) { return LEFT + (WIDTH - LEFT - RIGHT) * iteration / max_x; }
static double y_of(double rate, double max_y) { return HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * rate / max_y; }

static void write_axes(FILE *out, double max_x, double max_y) {
    fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", LEFT, HEIGHT - BOTTOM,
            WIDTH - RIGHT, HEIGHT - BOTTOM);
    fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", LEFT, TOP, LEFT,
            HEIGHT - BOTTOM);
    for (int t = 0; t <= TICKS; t++) {
        double x = x_of(max_x * t / TICKS, max_x), y = y_of(max_y * t / TICKS, max_y);
        fprintf(out, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f</text>\n", x, HEIGHT - BOTTOM + 18,
                max_x * t / TICKS);
        fprintf(out, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", LEFT - 6, y + 4,
                max_y * t / TICKS);
        fprintf(out, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", LEFT + 1, y,
                WIDTH - RIGHT, y);
    }
    fprintf(out, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">iteration</text>\n", (LEFT + WIDTH - RIGHT) / 2,
            HEIGHT - 10);
    fprintf(out, "<text x=\"16\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">images/s</text>\n",
            (TOP + HEIGHT - BOTTOM) / 2, (TOP + HEIGHT - BOTTOM) / 2);
}

/* Writes text with XML's special characters escaped. */
static void write_xml_text(FILE *out, const char *text) {
    for (; *text; text++) {
        switch (*text) {
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '&': fputs("&amp;", out); break;
        case '"': fputs("&quot;", out); break;
        default: fputc(*text, out);
        }
    }
}

/* One group's series and its legend entry. */
static void write_series(FILE *out, const GroupMetrics *rows, int count, const char *group, int index, double max_x,
                         double max_y) {
    const char *colour = palette[index % (int)(sizeof palette / sizeof palette[0])];
    fputs("<polyline class=\"group\" data-group=\"", out);
    write_xml_text(out, group);
    fprintf(out, "\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colour);
    for (int i = 0; i < count; i++)
        if (strcmp(rows[i].group, group) == 0)
            fprintf(out, "%.1f,%.1f ", x_of(rows[i].iteration, max_x), y_of(rows[i].images_per_second, max_y));
    fprintf(out, "\"/>\n");
    int y = TOP + 10 + 20 * index;
    fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n",
            WIDTH - RIGHT + 12, y, WIDTH - RIGHT + 32, y, colour);
    fprintf(out, "<text x=\"%d\" y=\"%d\">", WIDTH - RIGHT + 38, y + 4);
    write_xml_text(out, group);
    fputs("</text>\n", out);
}

int plot_throughput_svg(const GroupMetrics *rows, int count, const char *path, DdError *err) {
    double max_x = 1, max_y = 0;
    for (int i = 0; i < count; i++) {
        if (rows[i].iteration > max_x) max_x = rows[i].iteration;
        if (isfinite(rows[i].images_per_second) && rows[i].images_per_second > max_y)
            max_y = rows[i].images_per_second;
    }
    max_y = max_y > 0 ? 1.1 * max_y : 1;
    char partial[4096];
    if (snprintf(partial, sizeof partial, "%s.partial", path) >= (int)sizeof partial)
        return dd_fail(err, "%s: path too long", path);
    FILE *out = fopen(partial, "w");
    if (!out) return dd_fail(err, "%s: cannot write: %s", partial, strerror(errno));
    fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                 "font-family=\"sans-serif\" font-size=\"12\">\n"
                 "<title>images/s per group</title>\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            WIDTH, HEIGHT, WIDTH, HEIGHT);
    write_axes(out, max_x, max_y);
    MetricsBoard groups;
    metrics_board_from_rows(&groups, rows, count);
    for (int g = 0; g < groups.group_count; g++) write_series(out, rows, count, groups.groups[g].group, g, max_x, max_y);
    fputs("</svg>\n", out);
    if (fclose(out) != 0) {
        remove(partial);
        return dd_fail(err, "%s: write failed (disk full?)", partial);
    }
    if (rename(partial, path) != 0) return dd_fail(err, "%s: cannot rename into place: %s", path, strerror(errno));
    return 0;
}

int plot_run_folder(const char *run_dir, const char *out_path, DdError *err) {
    char metrics[4096], svg[4096];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run_dir);
    snprintf(svg, sizeof svg, "%s/throughput.svg", run_dir);
    GroupMetrics *rows;
    int count;
    if (metrics_read_file(metrics, 0, &rows, &count, err) != 0) return -1;
    int status = plot_throughput_svg(rows, count, out_path ? out_path : svg, err);
    free(rows);
    return status;
}
