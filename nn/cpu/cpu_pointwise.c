/* nn/cpu/cpu_pointwise.c - placeholder, being written */
