/* nn/vit.c - placeholder, being written */
