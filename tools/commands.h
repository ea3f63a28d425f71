/*
 * commands.h - the subcommands of `distill`. Each lives in tools/cmd_NAME.c,
 * takes the arguments after its name (argv[0] is the subcommand name),
 * prints its own --help, and returns the process exit status.
 */
#ifndef DD_TOOLS_COMMANDS_H
#define DD_TOOLS_COMMANDS_H

#include "nn/error.h"

typedef struct Command {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv);
} Command;

int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_data(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_plan(int argc, char **argv);

/* The planner's view of a run's groups (teacher, then students), from
 * cmd_plan.c: `distill plan` and `distill run` plan with it. */
struct RunConfig;
struct PlanGroupInput;
void run_plan_inputs(const struct RunConfig *config, struct PlanGroupInput *groups);
/* count devices as the config's devices section describes them (H100 figures by default). */
struct PlanDevices;
struct PlanDevices run_plan_devices(const struct RunConfig *config, int count);
/* The plan of a run on world_size devices of the config's devices section
 * (fixed ranks kept, the teacher spread when the config allows it). */
struct Plan;
int plan_run(const struct RunConfig *config, int world_size, struct Plan *plan, DdError *err);
int cmd_top(int argc, char **argv);
int cmd_plot(int argc, char **argv);

/* 1 if argv holds -h or --help. */
int wants_help(int argc, char **argv);

#endif
