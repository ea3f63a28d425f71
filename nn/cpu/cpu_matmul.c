/* nn/cpu/cpu_matmul.c - placeholder, being written */
