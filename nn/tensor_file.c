/* nn/tensor_file.c - placeholder, being written */
