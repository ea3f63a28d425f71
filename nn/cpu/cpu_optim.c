/* nn/cpu/cpu_optim.c - placeholder, being written */
