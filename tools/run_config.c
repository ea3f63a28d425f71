/* tools/run_config.c - placeholder, being written */
