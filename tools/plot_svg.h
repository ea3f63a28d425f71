/*
 * plot_svg.h - a plot of images/s per group over iterations, as an SVG
 * written by hand: one polyline per group, axes with ticks, a legend.
 * Written to RUN_DIR/throughput.svg at the end of a run and by
 * `distill plot RUN_DIR [OUT.svg]`.
 */
#ifndef DD_TOOLS_PLOT_SVG_H
#define DD_TOOLS_PLOT_SVG_H

#include "nn/error.h"
#include "tools/metrics.h"

/* Plots the records (metrics.jsonl order) into path (written to a
 * temporary name, then renamed). */
int plot_throughput_svg(const GroupMetrics *rows, int count, const char *path, DdError *err);
/* Plots RUN_DIR/metrics.jsonl into out_path (NULL: RUN_DIR/throughput.svg). */
int plot_run_folder(const char *run_dir, const char *out_path, DdError *err);

#endif
