/*
 * cmd_plot.c - `distill plot RUN_DIR [OUT.svg]`: images/s per group over
 * iterations from RUN_DIR/metrics.jsonl, as an SVG (plot_svg.h).
 */
#include <stdio.h>

#include "tools/commands.h"
#include "tools/plot_svg.h"

int cmd_plot(int argc, char **argv) {
    if (wants_help(argc, argv) || argc < 2 || argc > 3) {
        fprintf(argc < 2 || argc > 3 ? stderr : stdout,
                "usage: distill plot RUN_DIR [OUT.svg]\n\n"
                "Plots images/s per group over iterations from RUN_DIR/metrics.jsonl into OUT.svg\n"
                "(default RUN_DIR/throughput.svg, which a run also writes when it ends).\n");
        return wants_help(argc, argv) ? 0 : 2;
    }
    DdError err;
    if (plot_run_folder(argv[1], argc == 3 ? argv[2] : NULL, &err) != 0) {
        fprintf(stderr, "distill plot: %s\n", err.message);
        return 1;
    }
    printf("distill plot: wrote %s%s\n", argc == 3 ? argv[2] : argv[1], argc == 3 ? "" : "/throughput.svg");
    return 0;
}
