/* nn/yaml_config.c - placeholder, being written */
