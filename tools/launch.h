/*
 * launch.h - `distill run` started by hand re-launches itself under mpirun
 * with the rank count the run needs, so one command starts the whole job.
 */
#ifndef DD_TOOLS_LAUNCH_H
#define DD_TOOLS_LAUNCH_H

/* 1 when this process was started by an MPI launcher (mpirun, srun, ...). */
int launched_under_mpi(void);

/* Runs `mpirun -n ranks <this executable> argv[1..]` (argv as main
 * received it) as a child process and waits for it; returns its exit
 * status (128 + signal when killed), or 1 with the reason on stderr when it
 * could not start. */
int run_under_mpirun(int ranks, int argc, char **argv);

#endif
