/* tools/cmd_bench.c - placeholder, being written */
