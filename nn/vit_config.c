/* nn/vit_config.c - placeholder, being written */
