/* nn/cpu/cpu_backend.c - placeholder, being written */
