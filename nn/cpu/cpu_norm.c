/* nn/cpu/cpu_norm.c - placeholder, being written */
