/* nn/cpu/cpu_memory.c - placeholder, being written */
