/* nn/cpu/cpu_attention.c - placeholder, being written */
